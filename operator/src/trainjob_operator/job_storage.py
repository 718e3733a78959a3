"""What the CLI reads from a job's storage: the metric history and the committed checkpoints.

Layout under `<spec.storage.uri>/<namespace>/<job>/` (docs/architecture.md, "Storage layout
and commit protocol"): checkpoint
directories with their manifest, read through `worker_sdk._layout` like the SDK and the
coordinator do, and `metrics/attempt-<a>/part-<n>.jsonl`. A download fetches exactly the files
the manifest lists.

Credentials: `AWS_*` from the environment when set, else the job's `spec.storage.credentialsSecret`
read through the API. Endpoint: the spec's, else `$AWS_ENDPOINT_URL_S3`, else the local stack's.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from trainjob_operator.api import constants
from trainjob_operator.client import CommandError, Kube
from worker_sdk import _layout
from worker_sdk._layout import CommittedCheckpoint, ScoreOrder
from worker_sdk.checkpoint import download_verified
from worker_sdk.errors import CheckpointCorruptError
from worker_sdk.protocol import MetricValue, job_prefix
from worker_sdk.storage import S3Storage, Storage, StorageError, join_key, open_storage

_HISTORY_PART = re.compile(r"^metrics/attempt-(\d+)/part-(\d+)\.jsonl$")
# A CLI call should not sit through the SDK's two-minute outage budget.
RETRY_BUDGET_SECONDS = 10.0


@dataclass(frozen=True)
class HistoryPoint:
    """One line of the metric history: rank 0's metrics at an iteration every rank reached."""

    iteration: int
    attempt: int
    time: str
    metrics: dict[str, MetricValue]


@dataclass(frozen=True)
class JobStorage:
    storage: Storage
    prefix: str  # `<namespace>/<job>`
    spec: dict[str, Any]

    def metric_history(self) -> list[HistoryPoint]:
        """Every history line, attempt by attempt, part by part, as the coordinator wrote them."""
        parts: list[tuple[int, int, str]] = []
        for stored in self._list(join_key(self.prefix, "metrics")):
            match = _HISTORY_PART.match(stored[len(self.prefix) + 1 :])
            if match:
                parts.append((int(match.group(1)), int(match.group(2)), stored))
        points: list[HistoryPoint] = []
        for attempt, _, key in sorted(parts):
            data = self._read(key) or b""
            for raw in data.decode(errors="replace").splitlines():
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    line = json.loads(raw)
                    points.append(
                        HistoryPoint(
                            int(line["iteration"]),
                            int(line.get("attempt", attempt)),
                            str(line.get("time", "")),
                            dict(line.get("metrics") or {}),
                        )
                    )
        return points

    def committed_checkpoints(self) -> list[CommittedCheckpoint]:
        """The committed checkpoints, oldest first, as the SDK and the coordinator see them
        (`worker_sdk._layout`): every directory with a valid manifest, whatever its name."""
        try:
            return _layout.read_committed(self.storage, self.prefix)
        except StorageError as error:
            raise CommandError(f"cannot read {self.storage.uri_for(self.prefix)}: {error}") from None

    def best(self, checkpoints: list[CommittedCheckpoint]) -> CommittedCheckpoint | None:
        """The best by spec.checkpoints.scoreAttribute (status.bestCheckpoint's rule): none when
        the job ranks by no score."""
        settings = self.spec.get("checkpoints") or {}
        order = settings.get("scoreOrder") or ScoreOrder.MAX
        return _layout.best(checkpoints, settings.get("scoreAttribute"), order)

    def download(self, checkpoint: CommittedCheckpoint, directory: Path) -> list[Path]:
        """Fetch the files the manifest lists (nothing else that lies in the directory), verified
        against the manifest's sizes and SHA-256s: a mismatch is refused and leaves nothing."""
        try:
            download_verified(self.storage, checkpoint.key, checkpoint.uri, checkpoint.manifest, directory)
        except StorageError as error:
            raise CommandError(f"cannot download {checkpoint.uri}: {error}") from None
        except CheckpointCorruptError as error:
            raise CommandError(str(error)) from None
        return [directory / f.path for f in checkpoint.manifest.files]

    def _list(self, prefix: str) -> list[str]:
        try:
            return [stored.key for stored in self.storage.list_objects(prefix)]
        except StorageError as error:
            raise CommandError(f"cannot list {self.storage.uri_for(prefix)}: {error}") from None

    def _read(self, key: str) -> bytes | None:
        try:
            return self.storage.get_bytes(key)
        except StorageError as error:
            raise CommandError(f"cannot read {self.storage.uri_for(key)}: {error}") from None


def open_job_storage(kube: Kube, job: dict[str, Any]) -> JobStorage:
    spec = job.get("spec") or {}
    storage_spec = spec.get("storage") or {}
    uri = str(storage_spec.get("uri") or "")
    metadata = job["metadata"]
    prefix = job_prefix(metadata["namespace"], metadata["name"])
    scheme = urlparse(uri).scheme
    if scheme == "file":
        root = Path(urlparse(uri).path)
        if not root.is_dir():
            raise CommandError(f"storage {uri} is not a directory on this machine (the job's pods mount it)")
        return JobStorage(open_storage(uri, retry_budget_seconds=RETRY_BUDGET_SECONDS), prefix, spec)
    if scheme != "s3":
        raise CommandError(f"TrainJob {metadata['name']!r} has unsupported storage URI {uri!r}")
    endpoint = (
        storage_spec.get("endpoint")
        or os.environ.get(constants.ENV_S3_ENDPOINT)
        or (kube.stack_info or {}).get("s3Endpoint")
    )
    storage = S3Storage(uri, endpoint_url=endpoint, retry_budget_seconds=RETRY_BUDGET_SECONDS)
    with _environment(s3_credentials(kube, metadata["name"], storage_spec)):
        storage.client  # noqa: B018 - boto3 reads the credentials when the client is made
    return JobStorage(storage, prefix, spec)


def s3_credentials(kube: Kube, job: str, storage_spec: dict[str, Any]) -> dict[str, str]:
    """The credentials to set while the S3 client is made: none when `AWS_*` are set already."""
    if os.environ.get(constants.AWS_ACCESS_KEY_ID) and os.environ.get(constants.AWS_SECRET_ACCESS_KEY):
        return {}
    secret_name = storage_spec.get("credentialsSecret")
    if not secret_name:
        raise CommandError(
            f"no S3 credentials for TrainJob {job!r}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
            "or name a Secret in spec.storage.credentialsSecret"
        )
    data = kube.secret_data(str(secret_name))
    missing = [
        key for key in (constants.AWS_ACCESS_KEY_ID, constants.AWS_SECRET_ACCESS_KEY) if not data.get(key)
    ]
    if missing:
        raise CommandError(
            f'Secret "{secret_name}" in namespace "{kube.namespace}" lacks {" and ".join(missing)}: '
            "set them there, or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY here"
        )
    return {key: data[key] for key in (constants.AWS_ACCESS_KEY_ID, constants.AWS_SECRET_ACCESS_KEY)}


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
