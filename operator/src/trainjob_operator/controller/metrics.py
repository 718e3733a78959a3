"""The operator's own Prometheus metrics (served by `trainjob operator --metrics-port`)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Hashable, Mapping
from typing import Generic, TypeVar

from prometheus_client import Counter, Gauge, Histogram

from trainjob_operator.controller.writing import Lane

RECONCILES = Counter("trainjob_operator_reconciles_total", "Reconcile passes, by outcome", ["outcome"])
RECONCILE_SECONDS = Histogram(
    "trainjob_operator_reconcile_seconds", "Time of one reconcile pass including the API calls it made"
)
API_WRITES = Counter(
    "trainjob_operator_api_writes_total", "Writes the operator sent to the API, by verb", ["verb"]
)
JOBS_BY_PHASE = Gauge("trainjob_operator_jobs", "TrainJobs this operator handles, by phase", ["phase"])
WRITES_QUEUED = Gauge(
    "trainjob_operator_writes_queued",
    "API writes waiting for a write thread, by lane (create: new gangs; progress: the rest)",
    ["lane"],
)

Key = TypeVar("Key", bound=Hashable)


class PhaseGauge(Generic[Key]):
    """Keeps JOBS_BY_PHASE true by moving a job between phases when its phase changes."""

    def __init__(self) -> None:
        self.phases: dict[Key, str] = {}

    def record(self, job: Key, phase: str | None) -> None:
        """The job's phase now (None: the job is gone)."""
        previous = self.phases.pop(job, None) if phase is None else self.phases.get(job)
        if previous == phase:
            return
        if previous is not None:
            JOBS_BY_PHASE.labels(previous).dec()
        if phase is not None:
            self.phases[job] = phase
            JOBS_BY_PHASE.labels(phase).inc()


def watch_write_queues(queued: Callable[[], Mapping[Lane, int]]) -> None:
    """Have WRITES_QUEUED read ``queued`` (the write threads' queues) when it is scraped: nothing is
    counted on the write path. A steady ``create`` count is the operator falling behind the
    submissions; a ``progress`` count that grows while ``create`` is non-zero is running gangs
    waiting for new ones (they get one write in ``writing.PROGRESS_SHARE`` meanwhile)."""
    for lane in Lane:
        WRITES_QUEUED.labels(lane.value).set_function(functools.partial(_queued_in, queued, lane))


def _queued_in(queued: Callable[[], Mapping[Lane, int]], lane: Lane) -> float:
    return float(queued()[lane])
