"""status.progress: the recent rate, the estimate made from it, and the coordinator publishing it
from what the reports carry (``totalIterations``, which ``worker_sdk.set_total_iterations`` sets)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.support.coordinator import RecordingSink, StartCoordinator, report_body
from trainjob_operator.api.types import TrainJobStatus
from trainjob_operator.coordinator.progress import (
    RECENT_SECONDS,
    Progress,
    RecentRate,
    estimate,
    human_duration,
)
from trainjob_operator.coordinator.publishing import StatusPublisher
from worker_sdk.protocol import Report

# -- the recent rate ------------------------------------------------------------------------


def test_no_rate_before_the_second_advance() -> None:
    rate = RecentRate()
    assert rate.per_second() is None
    rate.observe(5, now=100.0)  # the first advance of an attempt (resumed at 4): start-up excluded
    assert rate.per_second() is None
    rate.observe(5, now=130.0)  # not an advance: ignored
    assert rate.per_second() is None
    rate.observe(7, now=110.0 + 0.0)
    assert rate.per_second() == pytest.approx(2 / 10)


def test_the_rate_follows_a_change_of_speed_within_the_window() -> None:
    rate = RecentRate()
    now = 0.0
    for iteration in range(1, 101):  # one iteration a second for 100 s
        now += 1.0
        rate.observe(iteration, now)
    assert rate.per_second() == pytest.approx(1.0)
    for iteration in range(101, 401):  # then ten a second: after the window, only the new speed
        now += 0.1
        rate.observe(iteration, now)
    assert rate.per_second() == pytest.approx(10.0)


def test_old_advances_leave_the_window_but_the_last_two_always_count() -> None:
    rate = RecentRate()
    rate.observe(1, now=0.0)
    rate.observe(2, now=10.0)
    rate.observe(3, now=10.0 + RECENT_SECONDS + 50)  # an epoch per report, slower than the window
    assert rate.per_second() == pytest.approx(1 / (RECENT_SECONDS + 50))
    rate.observe(5, now=10.0 + RECENT_SECONDS + 60)  # older ones out, the last interval stays
    assert rate.per_second() == pytest.approx(2 / 10)


def test_the_window_holds_at_most_its_number_of_advances() -> None:
    rate = RecentRate(window_seconds=1000.0, max_advances=4)
    for iteration, at in enumerate([0.0, 100.0, 101.0, 102.0, 103.0], start=1):
        rate.observe(iteration, at)
    assert rate.per_second() == pytest.approx(3 / 3)  # advances 2..5: the first fell out
    with pytest.raises(ValueError, match="at least two advances"):
        RecentRate(max_advances=1)


# -- the estimate ---------------------------------------------------------------------------


def test_estimate_from_the_rate() -> None:
    assert estimate(30, 120, 0.5) == Progress(120, 25, 0.5, 180)
    assert estimate(30, 120, 0.5).to_wire() == {
        "totalIterations": 120,
        "percentage": 25,
        "iterationsPerSecond": 0.5,
        "estimatedRemainingSeconds": 180,
        "eta": "3m",
    }
    # Without a rate yet: the percentage only, the estimate left out rather than guessed.
    assert estimate(3, 7, None).to_wire() == {"totalIterations": 7, "percentage": 42}
    # Rounded down: 100 only once done; more reports than said stay at 100.
    assert estimate(199, 200, 1.0).percentage == 99
    assert estimate(250, 200, 1.0) == Progress(200, 100, 1.0, 0)
    # Every rank's function returned: nothing remains, even short of the total (it stopped early).
    assert estimate(50, 200, 1.0, finished=True).estimated_remaining_seconds == 0
    # A resumed attempt counts from its checkpoint's iteration, not from 0.
    assert estimate(150, 200, None).percentage == 75


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"), (45, "45s"), (119, "119s"), (312, "5m12s"), (300, "5m"), (2520, "42m"),
        (11040, "3h4m"), (72000, "20h"), (190800, "2d5h"), (2592000, "30d"),
    ],
)  # fmt: skip
def test_the_eta_reads_like_kubectls_ages(seconds: int, text: str) -> None:
    assert human_duration(seconds) == text


# -- publishing -----------------------------------------------------------------------------


async def test_an_earlier_coordinators_estimate_is_cleared_at_the_first_publish() -> None:
    """A new attempt's coordinator has no rate yet: the previous attempt's ETA must not stay."""
    sink = RecordingSink()
    sink.status = {"iteration": 40, "progress": {"totalIterations": 100, "percentage": 40, "eta": "5m"}}
    status: dict[str, Any] = {"iteration": 40, "progress": None}
    publisher = StatusPublisher(sink, lambda: dict(status), cleared_at_start=("progress",))
    await publisher.publish_now()
    assert sink.status == {"iteration": 40}
    status["progress"] = {"totalIterations": 100, "percentage": 41}
    await publisher.publish_now()
    assert sink.status["progress"] == {"totalIterations": 100, "percentage": 41}


async def _report_all(harness: Any, iteration: int, **extra: Any) -> None:
    for rank in (0, 1):
        status, body = await harness.post("/v1/reports", {**report_body(rank, iteration), **extra})
        assert status == 200, body


@pytest.mark.parametrize("storage_uri", ["file"], indirect=True)  # storage is not the point
async def test_the_coordinator_publishes_progress_from_the_reports(
    start_coordinator: StartCoordinator,
) -> None:
    harness = await start_coordinator(world_size=2)
    await _report_all(harness, 1, totalIterations=10)
    state = await harness.wait_for(lambda s: s["progress"] is not None)
    assert state["progress"] == {"totalIterations": 10, "percentage": 10}  # one advance: no rate yet
    await asyncio.sleep(0.3)
    await _report_all(harness, 2, totalIterations=10)
    state = await harness.wait_for(lambda s: s["iteration"] == 2)
    progress = state["progress"]
    assert progress["percentage"] == 20 and 0 < progress["iterationsPerSecond"] <= 1 / 0.3
    assert abs(progress["estimatedRemainingSeconds"] - 8 / progress["iterationsPerSecond"]) <= 1
    assert progress["eta"] == human_duration(progress["estimatedRemainingSeconds"])

    # The last value told counts (a program that changed its mind).
    await _report_all(harness, 3, totalIterations=6)
    await harness.wait_for(lambda s: s["progress"]["percentage"] == 50)
    await harness.finalize(0, 3)
    await harness.finalize(1, 3)
    await harness.wait_for(lambda s: s["settled"])
    published = harness.sink.status["progress"]
    assert published["totalIterations"] == 6 and published["percentage"] == 50
    assert published["estimatedRemainingSeconds"] == 0 and published["eta"] == "0s"  # it returned
    assert TrainJobStatus.from_wire(harness.sink.status).progress is not None  # the API type parses it


@pytest.mark.parametrize("storage_uri", ["file"], indirect=True)  # storage is not the point
async def test_reports_without_a_total_publish_no_progress(start_coordinator: StartCoordinator) -> None:
    """A program that never calls set_total_iterations, or an SDK older than it."""
    harness = await start_coordinator(world_size=1)
    await harness.report(0, 1)
    await harness.report(0, 2)
    await harness.finalize(0, 2)
    state = await harness.wait_for(lambda s: s["settled"])
    assert state["progress"] is None and harness.sink.status["iteration"] == 2
    assert "progress" not in harness.sink.status


@pytest.mark.parametrize(
    ("total", "message"),
    [
        (0, "report.totalIterations must be >= 1, got 0"),
        ("10", "report.totalIterations must be an integer (the number of report() calls), got '10'"),
        (True, "report.totalIterations must be an integer (the number of report() calls), got True"),
    ],
)
@pytest.mark.parametrize("storage_uri", ["file"], indirect=True)  # storage is not the point
async def test_a_bad_total_is_refused_and_records_nothing(
    start_coordinator: StartCoordinator, total: object, message: str
) -> None:
    harness = await start_coordinator(world_size=1)
    status, body = await harness.post("/v1/reports", {**report_body(0, 1), "totalIterations": total})
    assert status == 400 and body["error"] == message
    state = await harness.state()
    assert state["iteration"] == 0 and state["ranks"] == {} and state["progress"] is None


def test_the_total_is_optional_on_the_wire_both_ways() -> None:
    """Older coordinators get the bodies they always got from reports without a total (and ignore
    the key otherwise); an older SDK's report, without it, reads as no total."""
    plain = Report(rank=0, attempt=0, iteration=3, metrics={"loss": 0.5}, time=1.0)
    assert "totalIterations" not in plain.to_json()
    assert Report.from_json(plain.to_json()).total_iterations is None
    told = Report(rank=0, attempt=0, iteration=3, metrics={"loss": 0.5}, time=1.0, total_iterations=40)
    assert told.to_json()["totalIterations"] == 40
    assert Report.from_json(told.to_json()) == told
