"""The coordinator's stop iteration: every rank stops after the same iteration, however their
should-stop questions interleave with the notice (no barrier)."""

from __future__ import annotations

import itertools
from typing import Any

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


# Whether the gang acts on the notice, judged from what the coordinator sees. Events, in the
# order they reach the coordinator: ("report", rank, iteration), ("ask", rank, iteration),
# ("notice",) from the operator, ("sigterm", rank) from a rank's trainer. `ignored_at` is the
# index of the event after which the gang is judged not to act on the notice (None: never).
Event = tuple[Any, ...]


def readme_loop(ranks: int, iterations: range, ask_every: int = 1) -> list[Event]:
    """Each rank reports, then (every `ask_every` iterations) asks, in step with the others."""
    events: list[Event] = []
    for i in iterations:
        for rank in range(ranks):
            events.append(("report", rank, i))
            if i % ask_every == 0:
                events.append(("ask", rank, i))
    return events


def never_asks(ranks: int, iterations: range) -> list[Event]:
    return [("report", rank, i) for i in iterations for rank in range(ranks)]


NOTICE_EVENT: Event = ("notice",)

JUDGED: list[tuple[str, list[Event], int | None]] = [
    (
        "a notice before the first iteration, the README loop: it listens from its first ask",
        [NOTICE_EVENT, *readme_loop(2, range(1, 6))],
        None,
    ),
    (
        "a notice before the first iteration, a program that never asks: two reports of one rank",
        [NOTICE_EVENT, *never_asks(2, range(1, 6))],
        # notice, r0@1, r1@1, r0@2 <- the second iteration rank 0 reported since the notice
        3,
    ),
    (
        "mid-run, a program that never asks: at the notice (rank 0 reported 1 and 2 unasked)",
        [*never_asks(2, range(1, 4)), NOTICE_EVENT, *never_asks(2, range(4, 8))],
        6,
    ),
    (
        "a report delivered again (the same iteration) is not a second iteration",
        [NOTICE_EVENT, ("report", 0, 1), ("report", 0, 1), ("report", 1, 1)],
        None,
    ),
    (
        "a report of the iteration the notice met arrives after it, then the rank asks",
        [("report", 0, 1), ("ask", 0, 1), ("report", 0, 2), NOTICE_EVENT, ("ask", 0, 2), ("report", 0, 3)],
        None,
    ),
    (
        "asks every 5 iterations, asked once before the notice: it listens",
        [*readme_loop(2, range(1, 7), ask_every=5), NOTICE_EVENT, *readme_loop(2, range(7, 20), 5)],
        None,
    ),
    (
        "asks every 5 iterations, the notice before its first ask: taken for one that ignores",
        [*readme_loop(2, range(1, 3), ask_every=5), NOTICE_EVENT, *readme_loop(2, range(3, 10), 5)],
        # r0@1 r1@1 r0@2 r1@2, the notice at index 4
        4,
    ),
    (
        "asks after every report but never checkpoints: it listens (the operator's grace bounds it)",
        [*readme_loop(1, range(1, 3)), NOTICE_EVENT, *readme_loop(1, range(3, 30))],
        None,
    ),
    (
        "a SIGTERM of a rank whose program never asked: at once",
        [*never_asks(2, range(1, 4)), ("sigterm", 1)],
        6,
    ),
    (
        "a SIGTERM before any report (an old SDK, or nothing reported yet): at once",
        [("sigterm", 0)],
        0,
    ),
    (
        "a SIGTERM of a rank of a program that asks: it listens",
        [*readme_loop(2, range(1, 3)), ("sigterm", 1), *readme_loop(2, range(3, 6))],
        None,
    ),
    (
        "nothing is found without a notice, however many reports",
        never_asks(2, range(1, 50)),
        None,
    ),
]


@pytest.mark.parametrize(
    ("events", "ignored_at"), [row[1:] for row in JUDGED], ids=[row[0] for row in JUDGED]
)
def test_whether_the_gang_acts_on_the_notice(events: list[Event], ignored_at: int | None) -> None:
    state = NoticeState()
    decided: list[int] = []
    for index, event in enumerate(events):
        match event:
            case ("report", rank, iteration):
                newly = state.reported(rank, iteration)
            case ("ask", rank, iteration):
                state.should_stop(iteration, rank)
                newly = False
            case ("notice",):
                state.raise_notice(NOTICE)
                newly = state.judge()
            case ("sigterm", rank):
                state.rank_signalled(rank, None)
                newly = state.judge_sigterm(rank)
        if newly:
            decided.append(index)
    assert decided == ([] if ignored_at is None else [ignored_at]), (decided, state.ignored)
    assert (state.ignored is None) == (ignored_at is None)


def test_the_finding_says_why() -> None:
    state = NoticeState()
    state.raise_notice(NOTICE)
    state.reported(1, 4)
    assert state.reported(1, 5) is True
    assert state.ignored == (
        "rank 1 reported iterations 4 and 5 and no rank has asked should_stop() in this attempt"
    )
    assert state.reported(1, 6) is False, "decided once"
