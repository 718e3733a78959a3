"""`status.progress`: how far the job is, and when it will be done at its recent rate. Pure: the
caller passes the clock.

The program tells its total number of iterations (``worker_sdk.set_total_iterations``, which
the framework callbacks call from ``max_steps`` / ``max_epochs``); every report carries it. The
percentage is the job iteration over that total. Iterations count across attempts (a resumed
attempt goes on from its checkpoint's iteration), so a restart keeps the percentage right.

The estimated time remaining is the iterations left over the *recent* rate: the iterations the
job advanced per second between the oldest and the newest of its recent advances, where recent
means the advances of the last :data:`RECENT_SECONDS` seconds, at most :data:`RECENT_ADVANCES`
of them, and always at least the last two. Why not the average since the start: the start of an
attempt (pods scheduled, data loaded, a model compiled, a checkpoint downloaded) and the pause
of a restart are not what the rest of the run costs, and a run's speed changes (a slower node,
an evaluation phase, a larger sequence length), which an average over the whole run follows
only slowly. Why not the last interval alone: reports reach the coordinator in batches (the SDK
sends a few times a second), so one interval is jittery. A couple of minutes is long enough to
average that out and short enough to follow a change in speed; a job slower than that (an epoch
per report, say) gets the rate of its last two advances. The samples are taken in this
coordinator process only: the first advance of an attempt starts the measure (no ETA before the
second), so the start-up never enters it.

The ETA is computed at the latest advance: it does not count down between reports (a stalled
job keeps its last estimate; `lastReportTime` and the Stalled condition say that it stalls).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

# The window of the recent rate (see the module docstring).
RECENT_SECONDS = 120.0
RECENT_ADVANCES = 64


@dataclass(frozen=True)
class Progress:
    """`status.progress`, as the coordinator publishes it."""

    total_iterations: int
    percentage: int
    # None until the rate is known (two advances in this attempt).
    iterations_per_second: float | None = None
    estimated_remaining_seconds: int | None = None

    def to_wire(self) -> dict[str, int | float | str]:
        """Every known field, so that a merge patch replaces the whole estimate."""
        wire: dict[str, int | float | str] = {
            "totalIterations": self.total_iterations,
            "percentage": self.percentage,
        }
        if self.iterations_per_second is not None:
            wire["iterationsPerSecond"] = self.iterations_per_second
        if self.estimated_remaining_seconds is not None:
            wire["estimatedRemainingSeconds"] = self.estimated_remaining_seconds
            wire["eta"] = human_duration(self.estimated_remaining_seconds)
        return wire


class RecentRate:
    """The job's recent advances, (monotonic time, iteration), and the rate over them."""

    def __init__(self, window_seconds: float = RECENT_SECONDS, max_advances: int = RECENT_ADVANCES) -> None:
        if max_advances < 2:
            raise ValueError("a rate needs at least two advances")
        self.window_seconds = window_seconds
        self._advances: deque[tuple[float, int]] = deque(maxlen=max_advances)

    def observe(self, iteration: int, now: float) -> None:
        """The job iteration is `iteration` at `now`; only an advance is recorded."""
        if self._advances and iteration <= self._advances[-1][1]:
            return
        self._advances.append((now, iteration))
        newest = now
        while len(self._advances) > 2 and self._advances[0][0] < newest - self.window_seconds:
            self._advances.popleft()

    def per_second(self) -> float | None:
        """Iterations per second over the recent advances; None before the second one."""
        if len(self._advances) < 2:
            return None
        (first_at, first), (last_at, last) = self._advances[0], self._advances[-1]
        if last_at <= first_at:
            return None
        return (last - first) / (last_at - first_at)


def estimate(iteration: int, total: int, rate: float | None, *, finished: bool = False) -> Progress:
    """The progress of a job at `iteration` of `total` at `rate` iterations per second.

    The percentage is rounded down (100 only once the total is reached) and capped at 100 (a
    program that reports more than it said). `finished` (every rank's function returned): nothing
    remains, whatever the count says (a run that stopped early, at its own criterion)."""
    percentage = min(100, max(0, iteration) * 100 // total)
    remaining_iterations = max(0, total - iteration)
    if finished or remaining_iterations == 0:
        remaining: int | None = 0
    elif rate is None or rate <= 0:
        remaining = None
    else:
        remaining = round(remaining_iterations / rate)
    return Progress(
        total_iterations=total,
        percentage=percentage,
        iterations_per_second=None if rate is None else float(f"{rate:.3g}"),
        estimated_remaining_seconds=remaining,
    )


def human_duration(seconds: int) -> str:
    """``45s``, ``5m12s``, ``42m``, ``3h4m``, ``20h``, ``2d5h``, ``30d``: the rules kubectl's ages
    follow (Kubernetes' ``duration.HumanDuration``), so the ETA column reads like the Age column."""
    if seconds < 120:
        return f"{max(0, seconds)}s"
    minutes = seconds // 60
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d{hours % 24}h" if hours % 24 else f"{hours // 24}d"
    return f"{hours // 24}d"
