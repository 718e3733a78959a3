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

from tests.support.coordinator import TOKEN as HARNESS_TOKEN
from tests.support.coordinator import StartCoordinator, keys, report_body, upload
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


# ---- the report endpoint's refusals: a 4xx with a message, and nothing written --------------------


def refusal_cases() -> list[tuple[str, dict[str, Any], int, str]]:
    good = report_body(0, 2, files={"model.pt": 1})
    traversal = report_body(0, 2)
    traversal["checkpoint"] = {"dirName": "checkpoint_000002", "files": [{"path": "../../escape", "size": 1}]}
    bad_dir = report_body(0, 2)
    bad_dir["checkpoint"] = {"dirName": "..", "files": []}
    no_rank = {k: v for k, v in good.items() if k != "rank"}
    return [
        ("wrong token", {"token": "nope", "json": good}, 401, "wrong token"),
        ("missing token", {"token": None, "json": good}, 401, "missing bearer token"),
        ("other attempt", {"json": {**good, "attempt": 7}}, 409, "serves attempt 0"),
        ("rank out of range", {"json": {**good, "rank": 2}}, 422, "world size is 2"),
        ("path traversal", {"json": traversal}, 400, "'.' and '..' are not allowed"),
        ("bad dir name", {"json": bad_dir}, 400, "checkpoint.dirName"),
        ("10 MB body", {"data": b'{"rank": 0, "pad": "' + b"x" * 10_000_000 + b'"}'}, 413, "byte limit"),
        ("malformed JSON", {"data": b'{"rank": 0,'}, 400, "malformed JSON"),
        ("NaN", {"data": b'{"rank": 0, "attempt": 0, "iteration": 2, "metrics": {"loss": NaN}}'}, 400, "NaN"),
        ("missing field", {"json": no_rank}, 400, "report.rank is required"),
        ("wrong type", {"json": {**good, "iteration": "2"}}, 400, "report.iteration must be an integer"),
        ("skips ahead", {"json": {**good, "iteration": 5}}, 409, "next expected: 2"),
        ("not an object", {"json": [1, 2]}, 400, "report must be a JSON object"),
    ]


@pytest.mark.parametrize(("case", "request_args", "status", "message"), refusal_cases(), ids=lambda v: v)
async def test_refusals_answer_4xx_with_a_message_and_write_nothing(
    start_coordinator: StartCoordinator,
    case: str,
    request_args: dict[str, Any],
    status: int,
    message: str,
) -> None:
    harness = await start_coordinator(world_size=2)
    await harness.report(0, 1)
    upload(harness.storage, 2, {"model.pt": 1})
    before_keys = keys(harness.storage)
    before_state = await harness.state()

    token = request_args.get("token", HARNESS_TOKEN)
    headers = harness.headers(token)
    if "data" in request_args:
        headers["Content-Type"] = "application/json"
        response = await harness.client.post("/v1/reports", data=request_args["data"], headers=headers)
    else:
        response = await harness.client.post("/v1/reports", json=request_args["json"], headers=headers)
    assert response.status == status, case
    body = await response.json()
    assert message in body["error"], body
    assert "coordinatorId" not in body  # only 2xx bodies carry it

    await asyncio.sleep(0.3)
    assert keys(harness.storage) == before_keys
    after_state = await harness.state()
    assert after_state["ranks"] == before_state["ranks"]
    assert after_state["pendingCommits"] == 0
    refused = await harness.client.get("/metrics")
    assert "trainjob_coordinator_reports_refused_total{" in await refused.text()
