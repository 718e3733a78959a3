"""A coordinator replaced mid-run (a restarted sidecar, same port, same storage) and the SDK's
link to it: what was in flight is committed in order, and a request addressed to the old one is
refused before anything is recorded."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.support.coordinator import StartCoordinator, report_body, upload
from worker_sdk.coordinator import CoordinatorLink
from worker_sdk.protocol import CheckpointFile, Finalize, Report, ReportedCheckpoint

FILES = {"model.pt": 7}


def checkpoint_report(iteration: int) -> Report:
    """Rank 0's report with its checkpoint (the only rank that writes one here)."""
    files = tuple(CheckpointFile(path, size) for path, size in FILES.items())
    return Report(
        0, 0, iteration, {"loss": 1.0 / iteration}, ReportedCheckpoint(f"checkpoint_{iteration:06d}", files)
    )


async def test_a_request_addressed_to_a_replaced_coordinator_records_nothing(
    start_coordinator: StartCoordinator,
) -> None:
    harness = await start_coordinator(world_size=2)
    this = harness.coordinator.id
    batch = {"coordinatorId": "gone-0123", "reports": [report_body(0, 1), report_body(0, 2)]}
    status, body = await harness.post("/v1/reports", batch)
    assert status == 409
    assert body == {
        "error": "this request was sent to coordinator gone-0123, which is gone; this is coordinator "
        f"{this}: send again the checkpoint reports it did not commit, then this request",
        "coordinatorId": this,
        "addressedTo": "gone-0123",
    }
    status, body = await harness.post(
        "/v1/finalize", {"rank": 1, "attempt": 0, "iteration": 0, "coordinatorId": "gone-0123"}
    )
    assert (status, body["addressedTo"]) == (409, "gone-0123")
    state = await harness.state()
    assert state["ranks"] == {} and state["finalized"] == []  # nothing recorded

    # Addressed to this one, or to no one in particular (an older SDK): recorded.
    status, body = await harness.post("/v1/reports", {**batch, "coordinatorId": this})
    assert status == 200 and body["accepted"] == 2
    status, _ = await harness.post("/v1/reports", {"reports": [report_body(0, 3)]})
    assert status == 200
    status, body = await harness.post("/v1/reports", {**batch, "coordinatorId": ""})
    assert (status, body["error"]) == (400, "batch.coordinatorId must not be empty")
    assert (await harness.state())["ranks"] == {"0": 3}


async def test_the_report_in_flight_at_a_restart_commits_before_a_newer_one(
    start_coordinator: StartCoordinator,
) -> None:
    """Rank 0's checkpoint of iteration 7 reached the old coordinator, which died before rank 1
    got there. Rank 1 then reports 7 and 8 to the new one. Rank 0's next batch (8) is refused
    as addressed to the old one, so its link re-sends 7 first: the new coordinator hears of 7
    from rank 0 before 8, and commits both. (Sent in the other order, 8 could commit first and
    give up 7, as a commit gives up every older pending checkpoint: the report lost.)"""
    old = await start_coordinator(world_size=2)
    port = old.client.port
    assert port is not None
    link = CoordinatorLink(old.url, "job-token-0123456789", timeout_seconds=5)
    try:
        for iteration in range(1, 7):
            assert await asyncio.to_thread(link.send_reports, [Report(0, 0, iteration, {"loss": 1.0})]) == []
            await old.report(1, iteration)
        upload(old.storage, 7, FILES)
        assert await asyncio.to_thread(link.send_reports, [checkpoint_report(7)]) == []
        first_id = old.coordinator.id
        await old.stop()

        new = await start_coordinator(world_size=2, port=port)
        assert new.coordinator.id != first_id
        await new.report(1, 7)
        await new.report(1, 8)
        upload(new.storage, 8, FILES)
        assert await asyncio.to_thread(link.send_reports, [checkpoint_report(8)]) == []

        progress = new.coordinator.aggregator.ranks[0]
        assert progress.first_iteration == 7, "rank 0's batch overtook its re-sent report of iteration 7"
        state = await new.wait_for(lambda s: (s["latestCheckpoint"] or {}).get("iteration") == 8)
        assert [c["iteration"] for c in state["checkpoints"]] == [7, 8]

        await asyncio.to_thread(link.send_finalize, Finalize(0, 0, 8))
        await new.finalize(1, 8)
        settled: dict[str, Any] = await new.wait_for(lambda s: s["settled"])
        assert settled["finalized"] == [0, 1]
    finally:
        link.close()


@pytest.mark.parametrize(("attempt_now", "published"), [(1, False), (0, True)], ids=["restarted", "same"])
async def test_a_coordinator_stopped_for_a_restart_leaves_the_new_attempt_s_status_alone(
    start_coordinator: StartCoordinator, attempt_now: int, published: bool
) -> None:
    """A gang restart: the operator sets status.attempt to the next attempt, then stops this
    attempt's pods. This coordinator's last publish at its SIGTERM would put its reported but
    uncommitted iteration under the new attempt, which then goes back to the iteration it
    resumed from (seen once in tests/chaos/test_worker_kills.py). It stays silent instead; at
    the same attempt it publishes what it has, as before."""
    harness = await start_coordinator(world_size=2)
    await harness.coordinator.start()
    try:
        for rank in (0, 1):
            await harness.report(rank, 1)
        await harness.wait_for(lambda _: harness.sink.status.get("iteration") == 1)
        harness.coordinator.publisher.interval = 30.0  # the next change is not out before stop()
        for rank in (0, 1):
            await harness.report(rank, 2)
        await harness.wait_for(lambda state: state["iteration"] == 2)
        assert harness.sink.status["iteration"] == 1
        harness.sink.status["attempt"] = attempt_now  # the operator's field, playing it
    finally:
        await harness.coordinator.stop()
    assert harness.sink.status["iteration"] == (2 if published else 1), harness.sink.status
