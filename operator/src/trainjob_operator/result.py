"""``Result``: what a finished (or running) TrainJob produced, as Ray Train's ``Result``.

``TrainerClient.result(name)`` makes one from the job (its status says whether it failed);
``Result.from_path(uri)`` from storage alone (``<spec.storage.uri>/<namespace>/<job>``), as Ray's
``Result.from_path`` reads a run's directory. Both read what the coordinator wrote: the metric
history (``metrics/attempt-<a>/part-<n>.jsonl``) and the committed checkpoints (with their
manifests), through :mod:`trainjob_operator.job_storage`, the same reader as ``trainjob
metrics``/``checkpoints``.

Importing this module needs neither kopf nor the local cluster, and pandas only for
``metrics_dataframe``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from trainjob_operator.job_storage import HistoryPoint, JobStorage
from worker_sdk._layout import CommittedCheckpoint
from worker_sdk.checkpoint import Checkpoint
from worker_sdk.protocol import MetricValue
from worker_sdk.storage import open_storage

if TYPE_CHECKING:
    import pandas

__all__ = ["Result", "TrainingFailedError"]

# Columns Ray's metrics_dataframe has besides the reported metrics.
ITERATION_COLUMN = "training_iteration"


class TrainingFailedError(RuntimeError):
    """The job failed: its status message (``Result.error``, as Ray's ``TrainingFailedError``)."""


@dataclass(frozen=True)
class Result:
    """A TrainJob's outcome: ``metrics`` (the last iteration's), ``metrics_dataframe`` (every
    iteration), ``checkpoint`` (the latest committed), ``best_checkpoints`` (every retained
    committed checkpoint with its metrics), ``error`` and ``path``."""

    path: str
    metrics: dict[str, MetricValue]
    checkpoint: Checkpoint | None
    best_checkpoints: list[tuple[Checkpoint, dict[str, MetricValue]]]
    error: Exception | None = None
    history: list[HistoryPoint] = field(default_factory=list, repr=False)

    @property
    def metrics_dataframe(self) -> pandas.DataFrame:
        """One row per iteration (``training_iteration``), a column per metric; an iteration an
        earlier attempt reached and a restart repeated shows the latest attempt's values.
        Needs pandas (``pip install pandas``)."""
        try:
            import pandas
        except ImportError:
            raise ImportError("Result.metrics_dataframe needs pandas: pip install pandas") from None
        rows = {point.iteration: point for point in self.history}  # later attempts win
        records = [
            {ITERATION_COLUMN: iteration, "attempt": point.attempt, "timestamp": point.time, **point.metrics}
            for iteration, point in sorted(rows.items())
        ]
        return pandas.DataFrame.from_records(records, columns=_columns(records))

    def get_best_checkpoint(self, metric: str, mode: Literal["min", "max"]) -> Checkpoint | None:
        """The retained checkpoint whose metrics score best by ``metric`` (Ray's signature);
        None when none of them reported it."""
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', not {mode!r}")
        scored: list[tuple[float, Checkpoint]] = []
        for checkpoint, metrics in self.best_checkpoints:
            value = metrics.get(metric)
            if isinstance(value, int | float) and not isinstance(value, bool):
                scored.append((float(value), checkpoint))
        if not scored:
            return None
        pick = min if mode == "min" else max
        return pick(scored, key=lambda pair: pair[0])[1]

    @classmethod
    def from_path(cls, path: str) -> Result:
        """The result stored under ``path``: ``<storage uri>/<namespace>/<job>`` (``s3://`` or
        ``file://``; S3 credentials and endpoint from the environment, as the SDK reads them)."""
        root, namespace, job = _split_job_path(path)
        return cls.from_storage(JobStorage(open_storage(root), f"{namespace}/{job}", {}))

    @classmethod
    def from_storage(cls, storage: JobStorage, *, error: Exception | None = None) -> Result:
        history = storage.metric_history()
        committed = storage.committed_checkpoints()
        return cls(
            path=storage.storage.uri_for(storage.prefix),
            metrics=dict(history[-1].metrics) if history else {},
            checkpoint=_checkpoint(committed[-1]) if committed else None,
            best_checkpoints=[(_checkpoint(stored), dict(stored.manifest.metrics)) for stored in committed],
            error=error,
            history=history,
        )


def _checkpoint(stored: CommittedCheckpoint) -> Checkpoint:
    return Checkpoint(path=None, uri=stored.uri, manifest=stored.manifest)


def _columns(records: list[dict[str, Any]]) -> list[str]:
    columns: dict[str, None] = {}
    for record in records:
        columns.update(dict.fromkeys(record))
    return list(columns) or [ITERATION_COLUMN]


def _split_job_path(path: str) -> tuple[str, str, str]:
    trimmed = path.rstrip("/")
    parts = trimmed.rsplit("/", 2)
    if "://" not in trimmed or len(parts) != 3 or "://" not in parts[0] or not all(parts[1:]):
        raise ValueError(
            f"{path!r} is not a job's storage path: expected <storage uri>/<namespace>/<job>, "
            "e.g. s3://bucket/checkpoints/default/my-job"
        )
    return parts[0], parts[1], parts[2]
