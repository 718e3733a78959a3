"""The coordinator's stop iteration: every rank stops after the same iteration, however their
should-stop questions interleave with the notice (no barrier)."""

from __future__ import annotations

import itertools

import pytest

from trainjob_operator.coordinator.notice import NoticeState

NOTICE = {"reason": "EvictionByEvictionAPI", "message": "drain", "ranks": [1], "attempt": 0}


def run(schedule: list[tuple[int, int]], notice_after: int, ranks: int = 2) -> dict[int, int]:
    """Each rank asks after every report (iterations 1, 2, ...) in the order `schedule` gives
    (rank, how many questions it asks in a row); the notice comes after `notice_after` questions.
    Returns the iteration at which each rank stopped."""
    state = NoticeState()
    next_iteration = dict.fromkeys(range(ranks), 1)
    stopped: dict[int, int] = {}
    asked = 0
    for rank, count in itertools.cycle(schedule):
        for _ in range(count):
            if rank in stopped:
                break
            if asked == notice_after:
                state.raise_notice(NOTICE)
            asked += 1
            iteration = next_iteration[rank]
            if state.should_stop(iteration)["stop"]:
                stopped[rank] = iteration
            next_iteration[rank] += 1
        if len(stopped) == ranks:
            return stopped
        if asked > 1000:
            raise AssertionError(f"ranks never all stopped: {stopped}")
    raise AssertionError("unreachable")


@pytest.mark.parametrize("notice_after", [0, 1, 2, 3, 5, 8, 13])
@pytest.mark.parametrize(
    "schedule", [[(0, 1), (1, 1)], [(0, 3), (1, 1)], [(1, 4), (0, 1)], [(0, 1), (1, 2), (2, 5)]]
)
def test_every_rank_stops_at_the_same_iteration(schedule: list[tuple[int, int]], notice_after: int) -> None:
    ranks = 1 + max(rank for rank, _ in schedule)
    stopped = run(schedule, notice_after, ranks)
    assert len(set(stopped.values())) == 1, stopped


def test_the_stop_iteration_is_the_first_nobody_passed() -> None:
    state = NoticeState()
    assert state.should_stop(4) == {"stop": False}  # rank 0 went on to 5
    assert state.should_stop(3) == {"stop": False}
    state.raise_notice(NOTICE)
    answer = state.should_stop(4)  # rank 1, one behind
    assert answer["stop"] is False and answer["stopIteration"] == 5
    assert state.should_stop(5)["stop"] is True
    assert state.should_stop(6)["stop"] is True
    assert answer["notice"]["reason"] == "EvictionByEvictionAPI"


def test_a_sigterm_of_one_rank_is_a_notice_for_all_and_names_the_ranks() -> None:
    state = NoticeState()
    assert state.rank_signalled(1, "2026-12-01T10:00:30Z") is True
    assert state.rank_signalled(0, None) is False
    assert state.notice is not None and state.notice["ranks"] == [0, 1]
    assert state.notice["reason"] == "SIGTERM"
    # the first notice decides; the operator's later one is not taken over it
    assert state.raise_notice(NOTICE) is False
