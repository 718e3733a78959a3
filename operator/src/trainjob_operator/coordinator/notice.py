"""Disruption notices, and the one iteration from which every rank stops (``should_stop()``).

A notice reaches the coordinator from the operator (``status.notice``, read with the job's
status) or from a rank whose trainer got SIGTERM (``POST /v1/notice``). Ranks ask
``POST /v1/should-stop`` with the iteration they have just reported. Without a notice the answer
is no, and the coordinator remembers the highest iteration it said no to. With one, it fixes the
stop iteration once, one past everything it has seen: every rank has then been told "no" for
every iteration below it and will be told "yes" from it on, so all ranks leave their loop after
the same iteration and their collectives stay in step (no barrier, one small request per check).
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

    def should_stop(self, iteration: int) -> dict[str, Any]:
        """The answer to a rank that has just reported `iteration`."""
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
