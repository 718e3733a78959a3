"""The coordinator's finding that the gang will not act on a notice reaches the status it owns
(status.noticeIgnored), through its HTTP API as the SDK speaks it: what the operator reads to
stop a program that never asks should_stop() at once instead of after the grace."""

from __future__ import annotations

from tests.support.coordinator import StartCoordinator

NOTICE = {
    "reason": "EvictionByEvictionAPI",
    "message": "rank 1 (pod digits-0-1) disrupted: EvictionByEvictionAPI",
    "ranks": [1],
    "attempt": 0,
}


async def test_a_program_that_never_asks_is_found_and_published(start_coordinator: StartCoordinator) -> None:
    harness = await start_coordinator(world_size=2)
    await harness.coordinator.start()
    try:
        for rank in (0, 1):
            await harness.report(rank, 1)
        harness.coordinator.observe_job_status({"notice": NOTICE})
        assert (await harness.state())["noticeIgnored"] is None, "one iteration each: not yet"
        await harness.report(0, 2)
        state = await harness.wait_for(lambda s: s["noticeIgnored"] is not None)
        assert "rank 0 reported iterations 1 and 2" in state["noticeIgnored"]
        assert state["stopIteration"] is None, "nobody asked: no stop iteration"
        await harness.wait_for(lambda _: "noticeIgnored" in harness.sink.status)
        assert harness.sink.status["noticeIgnored"] == {"attempt": 0, "message": state["noticeIgnored"]}
        assert "stopAt" not in harness.sink.status
    finally:
        await harness.coordinator.stop()


async def test_a_notice_after_two_unasked_iterations_is_found_at_once(
    start_coordinator: StartCoordinator,
) -> None:
    harness = await start_coordinator(world_size=1)
    await harness.coordinator.start()
    try:
        for iteration in (1, 2, 3):
            await harness.report(0, iteration)
        assert (await harness.state())["noticeIgnored"] is None, "no notice: nothing to ignore"
        harness.coordinator.observe_job_status({"notice": {**NOTICE, "attempt": 1}})
        assert (await harness.state())["notice"] is None, "another attempt's notice is not taken"
        harness.coordinator.observe_job_status({"notice": NOTICE})
        state = await harness.state()
        assert state["noticeIgnored"] == (
            "rank 0 reported iterations 1 and 2 and no rank has asked should_stop() in this attempt"
        )
    finally:
        await harness.coordinator.stop()


async def test_a_program_that_asks_is_never_found_ignoring(start_coordinator: StartCoordinator) -> None:
    harness = await start_coordinator(world_size=2, attempt=3)
    await harness.coordinator.start()
    try:
        await harness.report(1, 1, attempt=3)
        code, answer = await harness.post("/v1/should-stop", {"rank": 1, "iteration": 1})
        assert (code, answer) == (200, {"stop": False})
        harness.coordinator.observe_job_status({"notice": {**NOTICE, "attempt": 3}})
        for iteration in range(2, 6):
            await harness.report(0, iteration, attempt=3)  # rank 0 never asks; rank 1 did
        code, sigterm = await harness.post("/v1/notice", {"rank": 0})
        assert code == 200 and sigterm["accepted"] is True
        await harness.wait_for(lambda _: "iteration" in harness.sink.status)
        state = await harness.state()
        assert state["noticeIgnored"] is None
        assert harness.sink.status.get("noticeIgnored") is None
    finally:
        await harness.coordinator.stop()


async def test_a_sigterm_without_any_question_is_found_at_once(start_coordinator: StartCoordinator) -> None:
    harness = await start_coordinator(world_size=2)
    await harness.coordinator.start()
    try:
        await harness.report(0, 1)
        code, _ = await harness.post("/v1/notice", {"rank": 1, "deadline": "2026-12-01T10:00:30Z"})
        assert code == 200
        state = await harness.state()
        assert state["notice"]["reason"] == "SIGTERM"
        assert state["noticeIgnored"] == (
            "rank 1 got SIGTERM and no rank has asked should_stop() in this attempt"
        )
        await harness.wait_for(lambda _: "noticeIgnored" in harness.sink.status)
    finally:
        await harness.coordinator.stop()
