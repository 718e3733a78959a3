"""Disruption notices on the worker side: ``should_stop()`` and ``get_preemption_info()``.

The cluster is about to take a pod of the gang (an eviction, a drain, a preemption, a suspend,
or this trainer got SIGTERM). The operator and the coordinator turn that into a notice; every
rank asks the coordinator after each report whether to stop, and the coordinator answers "stop"
to every rank from one and the same iteration on, so collectives stay in step. The pattern::

    for epoch in range(start, epochs):
        ...
        train.report(metrics, checkpoint=checkpoint)   # commits before the pods go
        if train.should_stop():
            break

A checkpoint reported at or after the notice's iteration is committed before the gang stops;
the next attempt resumes from it, so a preemption costs seconds of work, not hours. Programs
that never ask lose no more than they did without notices.

A SIGTERM of this process (its pod is being deleted) raises the notice for the gang. If the
program has asked ``should_stop()`` before, the SDK lets it run on to its next report and
checkpoint (until ``TRAINJOB_TERMINATION_GRACE_SECONDS`` less a safety margin, then it flushes and
exits as without notices); if it never asked, SIGTERM flushes and exits at once, as before.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from worker_sdk import _contract

log = logging.getLogger("worker_sdk")

ENV_TERMINATION_GRACE = _contract.ENV_TERMINATION_GRACE_SECONDS
# Kubernetes' default terminationGracePeriodSeconds.
DEFAULT_TERMINATION_GRACE_SECONDS = 30.0
# Time kept, after a SIGTERM, for the flush of what is pending before the kubelet's SIGKILL.
FLUSH_MARGIN_SECONDS = 8.0


@dataclass(frozen=True)
class PreemptionInfo:
    """An imminent disruption of the gang, in Ray Train's shape (``ray.train.PreemptionInfo``),
    with what this project adds: why, and the iteration from which every rank stops."""

    deadline_ms: int | None
    preempted_node_to_ranks: dict[str, list[int]] = field(default_factory=dict)
    reason: str = ""
    message: str | None = None
    stop_iteration: int | None = None

    @property
    def preempted_node_ids(self) -> list[str]:
        return sorted(self.preempted_node_to_ranks)

    @property
    def preempted_ranks(self) -> list[int]:
        return sorted({rank for ranks in self.preempted_node_to_ranks.values() for rank in ranks})

    @classmethod
    def from_answer(cls, answer: dict[str, Any]) -> PreemptionInfo | None:
        notice = answer.get("notice")
        if not isinstance(notice, dict):
            return None
        deadline = notice.get("deadline")
        deadline_ms = None
        if isinstance(deadline, str):
            try:
                deadline_ms = int(datetime.fromisoformat(deadline.replace("Z", "+00:00")).timestamp() * 1000)
            except ValueError:
                deadline_ms = None
        nodes = notice.get("nodes")
        ranks = [int(rank) for rank in notice.get("ranks") or [] if isinstance(rank, int)]
        mapping = (
            {str(node): [int(r) for r in node_ranks] for node, node_ranks in nodes.items()}
            if isinstance(nodes, dict)
            else ({"": ranks} if ranks else {})
        )
        stop = answer.get("stopIteration")
        return cls(
            deadline_ms=deadline_ms,
            preempted_node_to_ranks=mapping,
            reason=str(notice.get("reason") or ""),
            message=notice.get("message"),
            stop_iteration=stop if isinstance(stop, int) else None,
        )


class StopSignal:
    """What this process knows of the notice: the last answer, whether it asked, a SIGTERM."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.asked = False
        self.stop = False
        self.info: PreemptionInfo | None = None
        self.sigterm = False

    def answered(self, answer: dict[str, Any]) -> bool:
        with self._lock:
            self.asked = True
            self.info = PreemptionInfo.from_answer(answer) or self.info
            self.stop = self.stop or bool(answer.get("stop"))
            return self.stop


def termination_grace_seconds() -> float:
    try:
        return float(os.environ.get(ENV_TERMINATION_GRACE) or DEFAULT_TERMINATION_GRACE_SECONDS)
    except ValueError:
        return DEFAULT_TERMINATION_GRACE_SECONDS
