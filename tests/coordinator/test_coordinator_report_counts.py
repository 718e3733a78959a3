"""Ranks that report different numbers of times: once all have finalized, the coordinator names
the ranks and iterations, gives up the iterations not every rank reported, and settles at once."""

from __future__ import annotations

from coordinator_harness import StartCoordinator, upload


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
    message = (
        "rank 1 finalized after 2 reports but rank 0 after 3: iteration 3 was not reported by every rank"
    )
    assert state["message"] == message
    assert state["iteration"] == 2
    assert state["latestCheckpoint"]["iteration"] == 2
    assert state["pendingCommits"] == 0
    await harness.wait_for(lambda s: harness.sink.status.get("message") == message)
