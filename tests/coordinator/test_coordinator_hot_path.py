"""What the coordinator's per-report path skips must not change what it does: the JSON parsing
without a per-call decoder, the body read without a timer when the body came with the headers
(and with one when it did not), and the status publisher woken only when its due time moves."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tests.support.coordinator import TOKEN, RecordingSink, StartCoordinator, report_body
from trainjob_operator.coordinator.publishing import StatusPublisher
from trainjob_operator.coordinator.server import _loads


@pytest.mark.parametrize(
    "body",
    [
        b'{"rank": 0, "metrics": {"loss": 0.5}}',
        '\ufeff{"a": [1, 2.5, null, true]}'.encode(),  # UTF-8 with a byte order mark
        '{"a": "\u00e9\u4e2d"}'.encode("utf-16"),
        '{"a": "\u00e9"}'.encode("utf-32-le"),
        b'"\\ud800"',  # a lone surrogate escape, as json.loads allows it
    ],
)
def test_body_parsing_matches_json_loads(body: bytes) -> None:
    assert _loads(body) == json.loads(body)


@pytest.mark.parametrize("body", [b'{"loss": NaN}', b"[Infinity]", b"-Infinity", b"{", b"\xff\xfe\x00"])
def test_body_parsing_refuses_what_it_refused_before(body: bytes) -> None:
    with pytest.raises((ValueError, UnicodeDecodeError)):
        _loads(body)


async def test_a_body_that_arrives_after_its_headers_is_read(start_coordinator: StartCoordinator) -> None:
    harness = await start_coordinator(world_size=2)
    port = harness.client.server.port
    assert port is not None
    body = json.dumps(report_body(1, 1)).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        head_lines = [
            "POST /v1/reports HTTP/1.1",
            "Host: x",
            f"Authorization: Bearer {TOKEN}",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
        ]
        writer.write(("\r\n".join(head_lines) + "\r\n\r\n").encode() + body[:5])
        await writer.drain()
        await asyncio.sleep(0.2)  # the handler is waiting for the rest by now
        writer.write(body[5:])
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
    finally:
        writer.close()
    assert head.startswith(b"HTTP/1.1 200"), head
    assert (await harness.state())["ranks"] == {"1": 1}


class _Sink(RecordingSink):
    def __init__(self) -> None:
        super().__init__()
        self.published = asyncio.Event()

    async def publish(self, patch: dict[str, Any]) -> None:
        await super().publish(patch)
        self.published.set()


async def test_an_urgent_change_after_ordinary_ones_is_published_without_waiting() -> None:
    """Ordinary changes wait an interval (an hour here); an urgent one that follows them must
    still wake the publisher, although the ordinary ones no longer do."""
    sink = _Sink()
    status = {"iteration": 0}
    now = [1000.0]
    publisher = StatusPublisher(sink, lambda: dict(status), interval=3600.0, clock=lambda: now[0])
    await publisher.publish_now()  # as after recovery: the next publish is an interval away
    sink.published.clear()
    task = asyncio.create_task(publisher.run())
    try:
        for iteration in range(1, 4):
            status["iteration"] = iteration
            publisher.changed()
            await asyncio.sleep(0)
        await asyncio.sleep(0.05)
        assert not sink.published.is_set()  # coalescing: nothing before the interval
        now[0] += 3600.0  # the interval since the last publish has passed (the loop still sleeps)
        publisher.changed(urgent=True)
        await asyncio.wait_for(sink.published.wait(), timeout=10)
        assert sink.status == {"iteration": 3}
        assert publisher.up_to_date
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
