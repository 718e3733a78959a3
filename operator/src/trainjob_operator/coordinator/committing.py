"""The commit protocol and retention, on a :class:`~worker_sdk.storage.Storage` (docs/architecture.md,
"Storage layout and commit protocol").

A checkpoint directory is committed by writing its manifest, last, after checking with one
listing that every file any rank listed is there with its listed size. Only directories with
a manifest count. The files are those the ranks of this attempt uploaded under
``<dir>/attempt-<a>/`` (fencing: README.md, "Checkpoints in storage"); the manifest names that
data directory and the SHA-256 each rank computed while uploading, which readers verify. A
coordinator never replaces the manifest of a later attempt. Retention deletes a checkpoint's
manifest first, then its files, so a crash in between leaves an uncommitted directory
(ignored), never a committed one with missing files.

Everything here blocks (boto3): the service calls it through ``asyncio.to_thread``, one
operation at a time.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from trainjob_operator.coordinator.aggregation import CommitCandidate
from worker_sdk import _layout
from worker_sdk._layout import CommittedCheckpoint, ScoreOrder
from worker_sdk.protocol import (
    CheckpointFile,
    CheckpointManifest,
    attempt_data_dir,
    job_prefix,
    manifest_key,
)
from worker_sdk.storage import Storage, join_key

log = logging.getLogger(__name__)


def rfc3339(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def checkpoint_status(checkpoint: CommittedCheckpoint) -> dict[str, Any]:
    """The ``latestCheckpoint`` / ``bestCheckpoint`` shape of the TrainJob status."""
    return {
        "uri": checkpoint.uri,
        "iteration": checkpoint.manifest.iteration,
        "attempt": checkpoint.manifest.attempt,
        "metrics": checkpoint.manifest.metrics,
        "sizeBytes": checkpoint.manifest.size_bytes,
        "committedAt": checkpoint.manifest.committed_at,
    }


@dataclass(frozen=True)
class RetentionPolicy:
    """spec.checkpoints; ranking and "best" are the SDK contract's (`worker_sdk._layout`)."""

    num_to_keep: int | None = None  # None keeps every checkpoint
    score_attribute: str | None = None
    score_order: ScoreOrder = ScoreOrder.MAX

    def ranked(self, checkpoints: Sequence[CommittedCheckpoint]) -> list[CommittedCheckpoint]:
        """Best first (see `worker_sdk._layout.ranked`)."""
        return _layout.ranked(checkpoints, self.score_attribute, self.score_order)

    def best(self, checkpoints: Sequence[CommittedCheckpoint]) -> CommittedCheckpoint | None:
        """The best by score; None without a score attribute or without any scored checkpoint."""
        return _layout.best(checkpoints, self.score_attribute, self.score_order)

    def retained(self, checkpoints: Sequence[CommittedCheckpoint]) -> list[CommittedCheckpoint]:
        """What to keep, oldest first: the ``num_to_keep`` best, plus the latest checkpoint when
        it is not among them (a restart resumes from the latest, so it is never deleted; unlike
        Ray, which keeps only the top N, this can keep N + 1 until a newer one arrives)."""
        if not checkpoints:
            return []
        keep = self.ranked(checkpoints)
        if self.num_to_keep is not None:
            keep = keep[: self.num_to_keep]
        latest = _layout.latest(checkpoints)
        if latest is not None and latest not in keep:
            keep.append(latest)
        return sorted(keep, key=_layout.recency)


@dataclass(frozen=True)
class NotCommitted:
    """Why a candidate was not committed (yet): the files do not match what ranks listed."""

    reason: str
    # True when waiting can fix it (a stale file that may belong to a rank not heard from yet).
    retry: bool = True


class Committer:
    """Commits and deletes checkpoints of one job under one storage root."""

    def __init__(self, storage: Storage, namespace: str, job: str, attempt: int) -> None:
        self.storage = storage
        self.namespace = namespace
        self.job = job
        self.attempt = attempt
        self.prefix = job_prefix(namespace, job)

    def dir_key(self, dir_name: str) -> str:
        return join_key(self.prefix, dir_name)

    def committed(self, dir_name: str, manifest: CheckpointManifest) -> CommittedCheckpoint:
        return _layout.committed(self.storage, self.prefix, dir_name, manifest)

    def commit(self, candidate: CommitCandidate, now: float) -> CommittedCheckpoint | NotCommitted:
        """Check this attempt's data directory against what the ranks listed; delete stale
        files; write the manifest."""
        dir_key = self.dir_key(candidate.dir_name)
        data_dir = attempt_data_dir(self.attempt)
        data_key = join_key(dir_key, data_dir)
        base = f"{data_key}/"
        found = {obj.key[len(base) :]: obj.size for obj in self.storage.list_objects(data_key)}
        if self.storage.get_bytes(manifest_key(self.namespace, self.job, candidate.dir_name)) is not None:
            existing = self._read_manifest(candidate.dir_name)
            if existing is not None and existing.attempt > self.attempt:
                return NotCommitted(
                    f"{candidate.dir_name} holds the checkpoint attempt {existing.attempt} committed; this "
                    f"coordinator serves the earlier attempt {self.attempt} and never replaces it",
                    retry=False,
                )
            if existing is not None and existing.iteration != candidate.iteration:
                return NotCommitted(
                    f"{candidate.dir_name} already holds the committed checkpoint of iteration "
                    f"{existing.iteration}; not overwriting it with iteration {candidate.iteration}",
                    retry=False,
                )
            if existing is not None and existing.attempt == self.attempt:
                return self.committed(candidate.dir_name, existing)  # committed before a restart
            # An earlier attempt committed this iteration and this attempt wrote it again (it
            # resumed from an older checkpoint): check the files anew and replace the manifest.
        problems = []
        for path, size in sorted(candidate.files.items()):
            if path not in found:
                problems.append(f"{path} is missing")
            elif found[path] != size:
                problems.append(f"{path} has {found[path]} bytes, the report listed {size}")
        if problems:
            return NotCommitted(f"{candidate.dir_name} is incomplete: {'; '.join(problems[:5])}")
        stale = sorted(path for path in found if path not in candidate.files)
        if stale and not candidate.every_rank_known:
            return NotCommitted(
                f"{candidate.dir_name} holds files no report listed ({', '.join(stale[:5])}); waiting "
                "for the ranks that reported to the previous coordinator to re-send"
            )
        if stale:
            log.info("deleting %d stale files in %s: %s", len(stale), candidate.dir_name, stale[:10])
            self.storage.delete([f"{base}{path}" for path in stale])
        manifest = CheckpointManifest(
            iteration=candidate.iteration,
            attempt=self.attempt,
            metrics=candidate.metrics,
            files=tuple(
                CheckpointFile(path, size, candidate.checksums.get(path))
                for path, size in sorted(candidate.files.items())
            ),
            committed_at=rfc3339(now),
            data_dir=data_dir,
        )
        self.storage.put_bytes(
            manifest_key(self.namespace, self.job, candidate.dir_name),
            json.dumps(manifest.to_json(), indent=1).encode(),
        )
        return self.committed(candidate.dir_name, manifest)

    def delete(self, checkpoint: CommittedCheckpoint) -> None:
        """Uncommit (manifest first), then delete the files."""
        self.storage.delete([manifest_key(self.namespace, self.job, checkpoint.dir_name)])
        self.storage.delete_prefix(self.dir_key(checkpoint.dir_name))

    def _read_manifest(self, dir_name: str) -> CheckpointManifest | None:
        data = self.storage.get_bytes(manifest_key(self.namespace, self.job, dir_name))
        return None if data is None else CheckpointManifest.from_json(json.loads(data))
