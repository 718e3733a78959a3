"""Ranks that report different numbers of times: once all have finalized, the coordinator names
the ranks and iterations, gives up the iterations not every rank reported, and settles at once."""

from __future__ import annotations

from coordinator_harness import StartCoordinator, upload

from trainjob_operator.api.types import COORDINATOR_STATUS_FIELDS, TrainJobStatus
from worker_sdk._contract import CoordinatorState


async def test_a_rank_reporting_one_time_fewer_is_named_and_the_attempt_settles(
    start_coordinator: StartCoordinator,
) -> None:
    harness = await start_coordinator(world_size=2)
    for iteration in (1, 2, 3):
        upload(harness.storage, iteration, {"model.pt": 2})
        await harness.report(0, iteration, files={"model.pt": 2})
        if iteration < 3:
            await harness.report(1, iteration)
    await harness.finalize(0, 3)
    await harness.finalize(1, 2)

    state = await harness.wait_for(lambda s: bool(s["settled"]))
    parsed = CoordinatorState.from_json(state)  # what the SDK reads of it
    assert parsed.settled and parsed.recovered and parsed.coordinator_id == harness.coordinator.id
    assert parsed.latest_checkpoint is not None and parsed.latest_checkpoint.iteration == 2
    message = (
        "rank 1 finalized after 2 reports but rank 0 after 3: iteration 3 was not reported by every rank"
    )
    assert state["message"] == message
    assert state["iteration"] == 2
    assert state["latestCheckpoint"]["iteration"] == 2
    assert state["pendingCommits"] == 0
    await harness.wait_for(lambda s: "reportCountMismatch" in harness.sink.status)
    assert harness.sink.status["reportCountMismatch"] == {
        "attempt": 0,
        "shortRanks": [1],
        "reports": 2,
        "longestRank": 0,
        "mostReports": 3,
        "message": message,
    }
    assert "message" not in harness.sink.status  # the operator's: it turns the field into a condition


async def test_the_published_status_holds_only_coordinator_owned_fields(
    start_coordinator: StartCoordinator,
) -> None:
    """One writer per status field: everything the coordinator can publish, with every problem it
    can have at once (a checkpoint that cannot commit, a report-count mismatch, storage state), is exactly the
    coordinator-owned list next to the API types; `message` and the rest are the operator's."""
    harness = await start_coordinator(world_size=2)
    upload(harness.storage, 1, {"model.pt": 3})
    await harness.report(0, 1, files={"model.pt": 8})  # 3 bytes stored: iteration 1 cannot commit
    await harness.report(1, 1)
    await harness.report(0, 2)
    await harness.finalize(0, 2)
    await harness.finalize(1, 1)
    await harness.wait_for(lambda s: "reportCountMismatch" in harness.sink.status)
    await harness.wait_for(lambda s: {"coordinatorMessage", "storage"} <= set(harness.sink.status))

    owned = {TrainJobStatus.model_fields[name].alias for name in COORDINATOR_STATUS_FIELDS}
    built = harness.coordinator.status()
    assert set(built) == owned
    published = {key for patch in harness.sink.patches for key in patch}
    assert published <= owned
    assert {"reportCountMismatch", "coordinatorMessage", "storage"} <= published
    assert "model.pt has 3 bytes, the report listed 8" in harness.sink.status["coordinatorMessage"]
    TrainJobStatus.from_wire(harness.sink.status)  # and it parses as the API type
