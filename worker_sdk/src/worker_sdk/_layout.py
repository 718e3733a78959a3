"""A job's committed checkpoints, the one definition every reader uses: the SDK (what
``get_checkpoint()`` resumes from when standalone), the coordinator (recovery, retention,
``status.latestCheckpoint``/``bestCheckpoint``) and the CLI (``trainjob checkpoints``).

The rules (README.md, "The worker SDK"):

- a committed checkpoint is a directory ``<namespace>/<job>/<dir>/`` holding a valid manifest
  (``.trainjob-checkpoint.json``), whatever ``report(checkpoint_dir_name=...)`` named ``<dir>``;
  a directory without one, or with an unreadable one, is not a checkpoint;
- the latest is the one with the highest (iteration, attempt): iteration numbers repeat across
  attempts, and the later attempt's commit is the one a restart continues from;
- the best is ranked by a score attribute (a numeric metric of the manifest); without one, or
  when no checkpoint has a usable score, there is no best (not "the latest": that would answer a
  different question under the same name).

Private to the project: the names here may change with the layout.
"""

from __future__ import annotations

import enum
import hashlib
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from worker_sdk.protocol import MANIFEST_NAME, CheckpointManifest, MetricValue, ProtocolError
from worker_sdk.storage import Storage, StoredObject, join_key

log = logging.getLogger("worker_sdk")


class ScoreOrder(enum.StrEnum):
    """Whether a higher or lower score is better."""

    MIN = "min"
    MAX = "max"


@dataclass(frozen=True)
class CommittedCheckpoint:
    """A checkpoint directory whose manifest exists and parses."""

    dir_name: str
    key: str  # of the directory, relative to the storage root
    uri: str
    manifest: CheckpointManifest

    @property
    def iteration(self) -> int:
        return self.manifest.iteration

    @property
    def attempt(self) -> int:
        return self.manifest.attempt

    @property
    def data_key(self) -> str:
        """Where its files are: the manifest's data directory (``attempt-<a>``) under ``key``."""
        return join_key(self.key, self.manifest.data_dir)

    def score(self, attribute: str | None) -> float | None:
        """The metric checkpoints are ranked by, or None when it is unset, missing or not a number."""
        if attribute is None:
            return None
        value: MetricValue = self.manifest.metrics.get(attribute)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        return float(value)


def committed(
    storage: Storage, job_prefix: str, dir_name: str, manifest: CheckpointManifest
) -> CommittedCheckpoint:
    key = join_key(job_prefix, dir_name)
    return CommittedCheckpoint(dir_name, key, storage.uri_for(key), manifest)


def recency(checkpoint: CommittedCheckpoint) -> tuple[int, int, str, str]:
    """The order of commits: iteration, then attempt (a later attempt re-commits an iteration),
    then commit time and name (only to make the order total)."""
    return (checkpoint.iteration, checkpoint.attempt, checkpoint.manifest.committed_at, checkpoint.dir_name)


def manifest_dirs(job_prefix: str, objects: Iterable[StoredObject]) -> list[str]:
    """The directories directly under the job's prefix that hold a manifest, from one listing."""
    depth = job_prefix.count("/") + 2
    return sorted(
        {
            obj.key[len(job_prefix) + 1 :].split("/", 1)[0]
            for obj in objects
            if obj.key.startswith(f"{job_prefix}/")
            and obj.key.endswith(f"/{MANIFEST_NAME}")
            and obj.key.count("/") == depth
        }
    )


def read_committed(
    storage: Storage, job_prefix: str, objects: Iterable[StoredObject] | None = None
) -> list[CommittedCheckpoint]:
    """Every committed checkpoint of the job, oldest first (see `recency`). ``objects``: a
    listing of the job's prefix the caller already has. Raises the storage's errors."""
    listed = storage.list_objects(job_prefix) if objects is None else objects
    found = []
    for dir_name in manifest_dirs(job_prefix, listed):
        key = join_key(job_prefix, dir_name, MANIFEST_NAME)
        data = storage.get_bytes(key)
        if data is None:
            continue  # deleted since the listing (retention)
        try:
            manifest = CheckpointManifest.from_json(json.loads(data))
        except (ValueError, ProtocolError) as exc:
            log.warning("ignoring %s: not a valid checkpoint manifest: %s", storage.uri_for(key), exc)
            continue
        found.append(committed(storage, job_prefix, dir_name, manifest))
    return sorted(found, key=recency)


def latest(checkpoints: Sequence[CommittedCheckpoint]) -> CommittedCheckpoint | None:
    return max(checkpoints, key=recency) if checkpoints else None


def ranked(
    checkpoints: Sequence[CommittedCheckpoint], attribute: str | None, order: ScoreOrder | str
) -> list[CommittedCheckpoint]:
    """Best first: by score when there is a score attribute (checkpoints without a usable score
    last), then the most recent first."""
    higher_is_better = ScoreOrder(order) is ScoreOrder.MAX

    def key(checkpoint: CommittedCheckpoint) -> tuple[int, float]:
        score = checkpoint.score(attribute)
        if score is None:
            return (1, 0.0)
        return (0, -score if higher_is_better else score)

    newest_first = sorted(checkpoints, key=recency, reverse=True)
    return sorted(newest_first, key=key)  # stable: ties stay newest first


def best(
    checkpoints: Sequence[CommittedCheckpoint], attribute: str | None, order: ScoreOrder | str
) -> CommittedCheckpoint | None:
    """The best by score; None without a score attribute or without any scored checkpoint."""
    if attribute is None:
        return None
    scored = [c for c in checkpoints if c.score(attribute) is not None]
    return ranked(scored, attribute, order)[0] if scored else None


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        while chunk := source.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def verify_download(directory: Path, manifest: CheckpointManifest) -> list[str]:
    """What differs between the files downloaded into ``directory`` and what the manifest
    recorded when they were uploaded (size, SHA-256); empty when nothing does. Files of a format 1
    manifest have no checksum: only their size is checked."""
    problems = []
    for recorded in manifest.files:
        path = directory / recorded.path
        size = path.stat().st_size
        if size != recorded.size:
            problems.append(f"{recorded.path} has {size} bytes, the manifest recorded {recorded.size}")
            continue
        if recorded.sha256 is not None:
            actual = file_sha256(path)
            if actual != recorded.sha256:
                problems.append(
                    f"{recorded.path} has SHA-256 {actual}, the manifest recorded {recorded.sha256}"
                )
    return problems
