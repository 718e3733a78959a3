"""What a coordinator learns from storage when it starts: the job's committed checkpoints (as
every reader sees them: `worker_sdk._layout`) and
where the metric history of this attempt left off. One listing of the job's prefix, then one
read per manifest and one of the last history part. Blocking: run it in a thread."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from trainjob_operator.coordinator.committing import Committer
from trainjob_operator.coordinator.history import history_dir, part_number, read_last_line
from worker_sdk._layout import CommittedCheckpoint, read_committed
from worker_sdk.protocol import MetricValue, job_prefix

log = logging.getLogger(__name__)


@dataclass
class RecoveredState:
    checkpoints: list[CommittedCheckpoint] = field(default_factory=list)  # oldest first
    next_history_part: int = 0
    # The last job iteration this attempt's history recorded, and rank 0's metrics there.
    iteration: int = 0
    metrics: dict[str, MetricValue] = field(default_factory=dict)


def recover(committer: Committer) -> RecoveredState:
    storage = committer.storage
    prefix = job_prefix(committer.namespace, committer.job)
    objects = storage.list_objects(prefix)
    state = RecoveredState()

    state.checkpoints = read_committed(storage, prefix, objects)

    history = history_dir(committer.namespace, committer.job, committer.attempt)
    parts = sorted(
        (number, obj.key)
        for obj in objects
        if obj.key.startswith(f"{history}/") and (number := part_number(obj.key)) is not None
    )
    if parts:
        last_number, last_key = parts[-1]
        state.next_history_part = last_number + 1
        line: dict[str, Any] | None = read_last_line(storage, last_key)
        if line is not None and isinstance(line.get("iteration"), int):
            state.iteration = line["iteration"]
            metrics = line.get("metrics")
            state.metrics = metrics if isinstance(metrics, dict) else {}
    return state
