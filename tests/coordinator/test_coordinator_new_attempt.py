"""A new attempt's coordinator starts where the job is: at the latest committed checkpoint (the
workers resume from it), not at iteration 0 with no metrics until the first report."""

from __future__ import annotations

from coordinator_harness import StartCoordinator, upload


async def test_a_new_attempt_starts_at_the_latest_committed_checkpoint(
    start_coordinator: StartCoordinator,
) -> None:
    first = await start_coordinator(world_size=1)
    for iteration in (1, 2):
        upload(first.storage, iteration, {"model.pt": 3})
        await first.report(0, iteration, files={"model.pt": 3}, metrics={"loss": 1.0 / iteration})
    await first.wait_for(lambda s: (s.get("latestCheckpoint") or {}).get("iteration") == 2)

    second = await start_coordinator(world_size=1, attempt=1, storage=first.storage)
    state = await second.wait_for(lambda s: bool(s["recovered"]))
    assert state["iteration"] == 2
    assert state["metrics"] == {"loss": 0.5}
    await second.wait_for(lambda s: bool(second.sink.patches))
    assert all(patch.get("iteration", 2) == 2 for patch in second.sink.patches), second.sink.patches

    await second.report(0, 3, attempt=1, metrics={"loss": 0.25})
    state = await second.wait_for(lambda s: s["iteration"] == 3)
    assert state["metrics"] == {"loss": 0.25}
