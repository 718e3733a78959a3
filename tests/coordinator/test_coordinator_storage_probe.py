"""A storage outage while the coordinator has nothing to write: its probe notices it within
seconds and `status.storage` says so (the operator's StorageUnavailable condition comes from
it); once SeaweedFS is back on the same port and data, the status says so again, and a
checkpoint reported meanwhile is committed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from tests.support.coordinator import JOB, NS, TOKEN, Harness, RecordingSink, upload
from trainjob_operator.coordinator.server import create_app
from trainjob_operator.coordinator.service import Coordinator, CoordinatorConfig
from trainjob_operator.local.seaweedfs import SeaweedFS
from worker_sdk.storage import open_storage

PROBE_SECONDS = 0.5


@pytest.fixture
def own_seaweedfs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SeaweedFS]:
    """A SeaweedFS of this test alone: the shared one must not go down under other tests."""
    server = SeaweedFS(tmp_path / "seaweedfs").start()
    try:
        for key, value in server.credentials_env.items():
            monkeypatch.setenv(key, value)
        yield server
    finally:
        server.stop()


async def wait_for_status(
    harness: Harness, predicate: Callable[[dict[str, Any]], bool], timeout: float
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while not predicate(harness.sink.status):
        assert time.monotonic() < deadline, f"status never matched: {harness.sink.status}"
        await asyncio.sleep(0.05)
    return harness.sink.status


def since(status: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(status["storage"]["since"])


async def test_an_idle_coordinator_notices_an_outage_and_its_end(own_seaweedfs: SeaweedFS) -> None:
    storage = open_storage(f"s3://{own_seaweedfs.bucket}/jobs", retry_budget_seconds=2.0)
    config = CoordinatorConfig(
        job=JOB,
        namespace=NS,
        world_size=1,
        attempt=0,
        status_interval=0.2,
        storage_probe_seconds=PROBE_SECONDS,
    )
    sink = RecordingSink()
    coordinator = Coordinator(config, storage, sink)
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(coordinator, TOKEN)))
    await client.start_server()
    try:
        harness = Harness(coordinator, client, storage, sink)
        up = await wait_for_status(harness, lambda s: (s.get("storage") or {}).get("available") is True, 15)
        assert up["storage"]["message"] == "reachable"
        upload(storage, 1, {"model.pt": 3})
        await harness.report(0, 1, files={"model.pt": 3})
        await harness.wait_for(lambda s: s["latestCheckpoint"] is not None)

        await asyncio.to_thread(own_seaweedfs.stop)
        stopped_at = time.monotonic()
        # Nothing is reported: only the probe can notice, well before any retry budget runs out.
        down = await wait_for_status(harness, lambda s: s["storage"]["available"] is False, 10)
        noticed_after = time.monotonic() - stopped_at
        assert noticed_after < 6, noticed_after
        assert "cannot reach s3://" in down["storage"]["message"]
        assert "message" not in down  # the operator's field: its condition says it (test_storage_condition)
        assert since(down) > since(up)
        state = await harness.state()
        assert state["storageAvailable"] is False
        # Reports are still accepted; this one's checkpoint waits for storage.
        await harness.report(0, 2, files={"model.pt": 4})

        await asyncio.to_thread(own_seaweedfs.start)  # same port, same data directory
        upload(storage, 2, {"model.pt": 4})
        back = await wait_for_status(harness, lambda s: s["storage"]["available"] is True, 20)
        assert back["storage"]["message"] == "reachable"
        assert since(back) > since(down)
        state = await harness.wait_for(
            lambda s: (s["latestCheckpoint"] or {}).get("iteration") == 2, timeout=30
        )
        assert state["storageAvailable"] is True
        # The checkpoint committed before the outage survived the restart of SeaweedFS.
        assert [c["iteration"] for c in state["checkpoints"]] == [1, 2]
        await wait_for_status(harness, lambda s: "message" not in s, 5)
    finally:
        await client.close()
