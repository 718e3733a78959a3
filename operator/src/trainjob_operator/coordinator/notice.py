"""Disruption notices, and the one iteration from which every rank stops (``should_stop()``).

A notice reaches the coordinator from the operator (``status.notice``, read with the job's
status) or from a rank whose trainer got SIGTERM (``POST /v1/notice``). Ranks ask
``POST /v1/should-stop`` with the iteration they have just reported. Without a notice the answer
is no, and the coordinator remembers the highest iteration it said no to. With one, it fixes the
stop iteration once, one past everything it has seen: every rank has then been told "no" for
every iteration below it and will be told "yes" from it on, so all ranks leave their loop after
the same iteration and their collectives stay in step (no barrier, one small request per check).

A program that never asks cannot act on a notice, and waiting out the grace for it would only
throw away what its ranks compute meanwhile. The coordinator tells the two apart from what it
sees, not from a guess at the program: a rank that asks during the attempt listens (certain; the
first ``should_stop()`` is the announcement, so old SDKs need nothing new). Under a notice that
no rank has asked about, the gang is judged not to act on it (``ignored``, published as
``status.noticeIgnored`` so that the operator stops it at once) when

- a rank has reported two different iterations in the attempt (before the notice or after it):
  the SDK asks synchronously after a report, so a rank of a listening program asks before its
  next report goes out. A notice before the second iteration waits for it; or
- a rank's trainer gets SIGTERM: its SDK exits at once when its program never asked.

A program that asks only every N iterations and had not asked yet in this attempt is taken for
one that ignores notices: it loses what it lost before notices, never more.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class NoticeState:
    """The notice the gang acts on (None: none yet), and the stop iteration once fixed."""

    notice: dict[str, Any] | None = None
    stop_iteration: int | None = None
    # The highest iteration any rank was told not to stop at.
    highest_seen: int = -1
    # Ranks that announced a SIGTERM of their own.
    signalled: set[int] = field(default_factory=set)
    # Ranks that asked should-stop during this attempt: the program acts on notices.
    asked: set[int] = field(default_factory=set)
    # While nobody has asked: each rank's first iteration reported in this attempt, and the
    # first rank seen at a second one (rank, first, second), which then does not ask per report.
    first_reported: dict[int, int] = field(default_factory=dict)
    passed: tuple[int, int, int] | None = None
    # Why the gang will not act on the notice (None: it may). Once set, it stays.
    ignored: str | None = None

    def saw(self, iteration: int) -> None:
        self.highest_seen = max(self.highest_seen, iteration)

    def raise_notice(self, notice: dict[str, Any]) -> bool:
        """Take `notice` unless one is already held (the first one decides); True when new."""
        if self.notice is not None:
            return False
        self.notice = dict(notice)
        return True

    def rank_signalled(self, rank: int, deadline: str | None) -> bool:
        """A rank's trainer got SIGTERM: a notice for the gang, naming that rank."""
        self.signalled.add(rank)
        if self.notice is None:
            self.notice = {
                "reason": "SIGTERM",
                "message": f"the trainer of rank {rank} got SIGTERM",
                "ranks": [rank],
                "deadline": deadline,
            }
            return True
        ranks = set(self.notice.get("ranks") or []) | {rank}
        self.notice["ranks"] = sorted(ranks)
        return False

    def judge_sigterm(self, rank: int) -> bool:
        """After `rank_signalled`: with no rank ever asking, the signalled rank's SDK flushes and
        exits at once, so no checkpoint at a stop iteration will come. True when newly ignored."""
        if self.ignored is not None or self.asked:
            return False
        self.ignored = f"rank {rank} got SIGTERM and no rank has asked should_stop() in this attempt"
        return True

    def reported(self, rank: int, iteration: int) -> bool:
        """`rank` reported `iteration`: True when that shows, for the first time, that the gang
        will not act on a notice it holds (see `judge`)."""
        if self.asked or self.passed is not None:
            return self.judge()
        first = self.first_reported.setdefault(rank, iteration)
        if iteration != first:
            self.passed = (rank, first, iteration)
        return self.judge()

    def judge(self) -> bool:
        """Under a notice, with no rank asking in this attempt and one rank at two iterations:
        nobody will act on it. True when newly found (the finding stays)."""
        if self.notice is None or self.ignored is not None or self.asked or self.passed is None:
            return False
        rank, first, second = self.passed
        self.ignored = (
            f"rank {rank} reported iterations {first} and {second} and no rank has asked "
            "should_stop() in this attempt"
        )
        return True

    def should_stop(self, iteration: int, rank: int = 0) -> dict[str, Any]:
        """The answer to `rank`, which has just reported `iteration` (and so listens)."""
        self.asked.add(rank)
        if self.notice is None:
            self.saw(iteration)
            return {"stop": False}
        if self.stop_iteration is None:
            # Nobody has been told "no" at or past it: this iteration when it is new, else one
            # past the highest "no" (a rank already went on to that one).
            self.stop_iteration = iteration if iteration > self.highest_seen else self.highest_seen + 1
        return {
            "stop": iteration >= self.stop_iteration,
            "stopIteration": self.stop_iteration,
            "notice": self.notice,
        }
