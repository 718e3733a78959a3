"""The coordinator's HTTP API against hostile clients: a slow client that sends its headers and
stalls, and hypothesis-generated requests (bodies, headers, paths) that must never get a 5xx,
never write to storage when refused, and leave ``/healthz`` answering."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession, ClientTimeout
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trainjob_operator.coordinator.committing import RetentionPolicy
from trainjob_operator.coordinator.server import create_app
from trainjob_operator.coordinator.service import Coordinator, CoordinatorConfig
from trainjob_operator.coordinator.sinks import StatusSink
from worker_sdk.storage import open_storage

TOKEN = "fuzz-token-0123456789"


class _NullSink(StatusSink):
    async def publish(self, patch: dict[str, Any]) -> None:
        return None


async def _client(storage_root: Path, body_timeout: float = 30.0) -> TestClient[Any, Any]:
    storage = open_storage(storage_root.as_uri(), retry_budget_seconds=1.0)
    config = CoordinatorConfig(
        job="fuzz", namespace="ml", world_size=2, attempt=0, retention=RetentionPolicy(), status_interval=0.2
    )
    app = create_app(Coordinator(config, storage, _NullSink()), TOKEN, body_timeout=body_timeout)
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    return client


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


async def test_a_client_that_stalls_after_its_headers_is_timed_out_and_others_are_served(
    tmp_path: Path,
) -> None:
    client = await _client(tmp_path, body_timeout=1.0)
    try:
        port = client.server.port
        assert port is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"POST /v1/reports HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode() + b"\r\n"
            b'Content-Type: application/json\r\nContent-Length: 200\r\n\r\n{"rank": 0'
        )
        await writer.drain()
        started = time.monotonic()
        # Meanwhile, everyone else is served at once.
        for _ in range(3):
            health = await client.get("/healthz")
            assert health.status == 200
        assert time.monotonic() - started < 0.9
        answer = await asyncio.wait_for(reader.read(4096), timeout=10)
        elapsed = time.monotonic() - started
        writer.close()
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408"), answer
        assert json.loads(body) == {"error": "request body not received within 1s"}
        assert 0.9 < elapsed < 5, elapsed
        assert _files(tmp_path) == set()
        assert (await client.get("/healthz")).status == 200
    finally:
        await client.close()


# ---- fuzzing --------------------------------------------------------------------------------------

_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
_file = st.fixed_dictionaries(
    {
        "path": st.sampled_from(
            ["model.pt", "../x", "/abs", "a/../../b", ".trainjob-checkpoint.json", "", "ok/f"]
        )
        | st.text(max_size=12),
        "size": st.integers(-5, 10**12) | st.text(max_size=3),
    }
)
_report = st.fixed_dictionaries(
    {
        "rank": st.integers(-2, 4) | _json,
        "attempt": st.integers(-1, 2) | _json,
        "iteration": st.integers(-1, 4) | _json,
    },
    optional={
        "metrics": st.dictionaries(st.text(max_size=8), _json, max_size=3) | _json,
        "checkpoint": st.fixed_dictionaries(
            {"dirName": st.sampled_from(["checkpoint_000001", "..", "a/b", ""]) | st.text(max_size=10)},
            optional={"files": st.lists(_file, max_size=3) | _json},
        )
        | _json,
        "time": _json,
    },
)
_paths = st.sampled_from(
    ["/v1/reports", "/v1/finalize", "/v1/state", "/healthz", "/metrics", "/v1/../v1/reports", "/v1/", "/x"]
) | st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=20).map(lambda s: "/" + s)
_header_text = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
_auth = st.sampled_from([f"Bearer {TOKEN}", "Bearer wrong", "bearer", "", f"Basic {TOKEN}"]) | _header_text
_body = (
    _report.map(lambda r: json.dumps(r).encode())
    | _json.map(lambda j: json.dumps(j).encode())
    | st.binary(max_size=200)
)


@pytest.fixture
async def fuzz_target(tmp_path: Path) -> AsyncIterator[tuple[TestClient[Any, Any], Path]]:
    client = await _client(tmp_path)
    try:
        yield client, tmp_path
    finally:
        await client.close()


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE"]),
    path=_paths,
    authorization=_auth,
    content_type=st.sampled_from(["application/json", "text/plain", "", "application/json; charset=latin-1"]),
    extra=st.dictionaries(
        st.text(alphabet=st.characters(min_codepoint=65, max_codepoint=90), min_size=1, max_size=8).map(
            lambda s: "X-" + s
        ),
        _header_text,
        max_size=3,
    ),
    body=_body,
)
async def test_arbitrary_requests_never_get_a_5xx_or_write_when_refused(
    fuzz_target: tuple[TestClient[Any, Any], Path],
    method: str,
    path: str,
    authorization: str,
    content_type: str,
    extra: dict[str, str],
    body: bytes,
) -> None:
    client, root = fuzz_target
    before = _files(root)
    headers = {**extra, "Authorization": authorization}
    if content_type:
        headers["Content-Type"] = content_type
    url = f"http://127.0.0.1:{client.server.port}{path}"
    # A raw session: TestClient would normalise the path.
    async with ClientSession(timeout=ClientTimeout(total=10)) as raw:
        try:
            async with raw.request(
                method, url, data=body, headers=headers, skip_auto_headers=["Content-Type"]
            ) as r:
                status = r.status
                await r.read()
        except ValueError:  # a header the client itself refuses to send
            return
    assert status < 500, (method, path, headers, body[:100])
    if status >= 400:
        # Only metric history may appear later; a refused request writes nothing at all.
        assert _files(root) == before, (method, path, body[:100])
    health = await client.get("/healthz")
    assert health.status == 200
