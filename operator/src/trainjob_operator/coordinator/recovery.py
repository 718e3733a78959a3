"""What a coordinator learns from storage when it starts: the job's committed checkpoints and
where the metric history of this attempt left off. One listing of the job's prefix, then one
read per manifest and one of the last history part. Blocking: run it in a thread."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from trainjob_operator.coordinator.committing import CommittedCheckpoint, Committer
from trainjob_operator.coordinator.history import history_dir, part_number, read_last_line
from worker_sdk.protocol import MANIFEST_NAME, CheckpointManifest, MetricValue, ProtocolError, job_prefix

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

    manifests = sorted(
        obj.key[len(prefix) + 1 :].split("/", 1)[0]
        for obj in objects
        if obj.key.endswith(f"/{MANIFEST_NAME}") and obj.key.count("/") == prefix.count("/") + 2
    )
    for dir_name in manifests:
        data = storage.get_bytes(f"{prefix}/{dir_name}/{MANIFEST_NAME}")
        if data is None:
            continue  # deleted since the listing (retention of another process)
        try:
            manifest = CheckpointManifest.from_json(json.loads(data))
        except (ValueError, ProtocolError) as exc:
            log.warning("ignoring unreadable manifest in %s: %s", dir_name, exc)
            continue
        state.checkpoints.append(committer.committed(dir_name, manifest))
    state.checkpoints.sort(key=lambda c: c.iteration)

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
