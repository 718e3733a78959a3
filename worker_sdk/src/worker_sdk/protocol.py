"""What the SDK and the coordinator say to each other, and the storage layout they share.

The coordinator (``trainjob_operator.coordinator``) imports this module, so the wire format and
the layout are defined once. JSON on the wire; these types parse and validate it strictly,
because the coordinator must refuse anything malformed without writing a byte.

Storage layout under ``<storage uri>/<namespace>/<job>/`` (docs/architecture.md, "Storage layout and
commit protocol")::

    <dir>/attempt-<a>/<files...>              # what the ranks of attempt <a> uploaded
    <dir>/.trainjob-checkpoint.json           # the manifest, written last: dataDir, sha256 per file
    metrics/attempt-<a>/part-<n>.jsonl

``<dir>`` is ``checkpoint_<iteration:06d>`` unless ``report(checkpoint_dir_name=...)`` names it.
Uploads are attempt-scoped because iteration numbers repeat across attempts: a rank of an earlier
attempt that is still alive (a stopped process, a partitioned node) can write only under its own
``attempt-<a>/``, never where the files of a checkpoint another attempt committed live. Format 1
manifests (files directly in ``<dir>``, no checksums) are still read.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from worker_sdk.storage import check_relative_key, join_key

API_PREFIX = "/v1"
MANIFEST_NAME = ".trainjob-checkpoint.json"
MANIFEST_FORMAT = 2
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# A checkpoint directory name: one safe path component.
_DIR_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

MetricValue = int | float | str | bool | None
# Metric value types that are valid whatever their value (a float also needs to be finite).
PLAIN_METRIC_TYPES = frozenset({int, str, bool, type(None)})


class ProtocolError(ValueError):
    """A message that does not follow the protocol; the text says which field and why."""


def job_prefix(namespace: str, job: str) -> str:
    return join_key(namespace, job)


def checkpoint_dir_name(iteration: int) -> str:
    return f"checkpoint_{iteration:06d}"


def attempt_data_dir(attempt: int) -> str:
    """Where the ranks of ``attempt`` upload inside a checkpoint directory (fencing, see above)."""
    return f"attempt-{attempt}"


def manifest_key(namespace: str, job: str, dir_name: str) -> str:
    return join_key(job_prefix(namespace, job), dir_name, MANIFEST_NAME)


def metrics_part_key(namespace: str, job: str, attempt: int, part: int) -> str:
    return join_key(job_prefix(namespace, job), "metrics", f"attempt-{attempt}", f"part-{part:06d}.jsonl")


def check_dir_name(name: str) -> str:
    if not _DIR_NAME.match(name) or name in (".", ".."):
        raise ProtocolError(
            f"invalid checkpoint directory name {name!r}: use letters, digits, '.', '_' and '-' "
            "(one path component, at most 128 characters)"
        )
    return name


def check_metrics(metrics: object, *, where: str = "metrics") -> dict[str, MetricValue]:
    """Metrics are a dict of str -> JSON scalar; NaN and infinities are refused (not JSON)."""
    if not isinstance(metrics, dict):
        raise ProtocolError(
            f"{where} must be a dict of name -> number or string, got {type(metrics).__name__}"
        )
    for name, value in metrics.items():
        # The usual case first, cheaply: report() runs this in the training loop.
        kind = type(value)
        if (
            type(name) is str
            and name
            and (kind in PLAIN_METRIC_TYPES or (kind is float and math.isfinite(value)))
        ):
            continue
        if not isinstance(name, str) or not name:
            raise ProtocolError(f"{where}: metric names must be non-empty strings, got {name!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ProtocolError(
                f"{where}[{name!r}] is {value}: NaN and infinities are not JSON; "
                "report a finite number, or str(value) if you want to record it"
            )
        if value is not None and not isinstance(value, int | float | str | bool):
            raise ProtocolError(
                f"{where}[{name!r}] has type {type(value).__name__}: only numbers, strings, "
                "booleans and None are allowed (convert tensors with .item())"
            )
    return metrics


def check_total_iterations(total: object, *, where: str = "total_iterations") -> int:
    """A job's total number of iterations: an integer >= 1 (reports, counted across attempts)."""
    if isinstance(total, bool) or not isinstance(total, int):
        raise ProtocolError(f"{where} must be an integer (the number of report() calls), got {total!r}")
    if total < 1:
        raise ProtocolError(f"{where} must be >= 1, got {total}")
    return total


def _field(data: dict[str, Any], name: str, kind: type | tuple[type, ...], where: str) -> Any:
    if name not in data:
        raise ProtocolError(f"{where}.{name} is required")
    value = data[name]
    # bool is an int in Python; a JSON true is never a valid rank or iteration.
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise ProtocolError(f"{where}.{name} must be {_kind_name(kind)}, got a boolean")
    if not isinstance(value, kind):
        raise ProtocolError(f"{where}.{name} must be {_kind_name(kind)}, got {type(value).__name__}")
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(
        {
            int: "an integer",
            str: "a string",
            float: "a number",
            list: "a list",
            dict: "an object",
            bool: "a boolean",
        }.get(k, k.__name__)
        for k in kinds
    )


@dataclass(frozen=True)
class CheckpointFile:
    """One file of a checkpoint, relative to the checkpoint directory."""

    path: str
    size: int
    # Hex SHA-256 of the bytes the rank sent, computed while uploading; None in format 1.
    sha256: str | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"path": self.path, "size": self.size}
        if self.sha256 is not None:
            data["sha256"] = self.sha256
        return data

    @classmethod
    def from_json(cls, data: object, where: str = "file") -> CheckpointFile:
        if not isinstance(data, dict):
            raise ProtocolError(f"{where} must be an object with path and size")
        path = _field(data, "path", str, where)
        size = _field(data, "size", int, where)
        try:
            path = check_relative_key(path)
        except ValueError as exc:
            raise ProtocolError(f"{where}.path: {exc}") from None
        if path == MANIFEST_NAME:
            raise ProtocolError(f"{where}.path: {MANIFEST_NAME} is reserved for the manifest")
        if size < 0:
            raise ProtocolError(f"{where}.size must be >= 0")
        sha256 = data.get("sha256")
        if sha256 is not None and (not isinstance(sha256, str) or not _SHA256.match(sha256)):
            raise ProtocolError(f"{where}.sha256 must be 64 lowercase hex digits")
        return cls(path, size, sha256)


@dataclass(frozen=True)
class ReportedCheckpoint:
    """The part of a checkpoint one rank uploaded at one iteration."""

    dir_name: str
    files: tuple[CheckpointFile, ...]

    def to_json(self) -> dict[str, Any]:
        return {"dirName": self.dir_name, "files": [f.to_json() for f in self.files]}

    @classmethod
    def from_json(cls, data: object, where: str = "checkpoint") -> ReportedCheckpoint:
        if not isinstance(data, dict):
            raise ProtocolError(f"{where} must be an object with dirName and files")
        dir_name = _field(data, "dirName", str, where)
        try:
            check_dir_name(dir_name)
        except ProtocolError as exc:
            raise ProtocolError(f"{where}.dirName: {exc}") from None
        files = _field(data, "files", list, where)
        parsed = tuple(CheckpointFile.from_json(item, f"{where}.files[{i}]") for i, item in enumerate(files))
        return cls(dir_name, parsed)


@dataclass(frozen=True)
class Report:
    """``POST /v1/reports``: one ``train.report()`` call of one rank (alone, or in a
    :class:`ReportBatch`)."""

    rank: int
    attempt: int
    iteration: int
    metrics: dict[str, MetricValue]
    checkpoint: ReportedCheckpoint | None = None
    # Seconds since the epoch on the worker, when report() was called.
    time: float = 0.0
    # The job's total number of iterations, as the program last told it
    # (``worker_sdk.set_total_iterations``); None when it has not. Optional on the wire, both
    # ways: sent only when set, so an older coordinator (which ignores keys it does not know)
    # gets the same reports as before, and a report of an older SDK (without it) reads as None.
    total_iterations: int | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "rank": self.rank,
            "attempt": self.attempt,
            "iteration": self.iteration,
            "metrics": self.metrics,
            "checkpoint": self.checkpoint.to_json() if self.checkpoint else None,
            "time": self.time,
        }
        if self.total_iterations is not None:
            data["totalIterations"] = self.total_iterations
        return data

    @classmethod
    def from_json(cls, data: object) -> Report:
        where = "report"
        if not isinstance(data, dict):
            raise ProtocolError("report must be a JSON object")
        rank = _field(data, "rank", int, where)
        attempt = _field(data, "attempt", int, where)
        iteration = _field(data, "iteration", int, where)
        if rank < 0 or attempt < 0 or iteration < 1:
            raise ProtocolError(f"{where}: rank and attempt must be >= 0 and iteration >= 1")
        metrics = check_metrics(data.get("metrics", {}), where=f"{where}.metrics")
        raw_checkpoint = data.get("checkpoint")
        checkpoint = None if raw_checkpoint is None else ReportedCheckpoint.from_json(raw_checkpoint)
        time_value = data.get("time", 0.0)
        if isinstance(time_value, bool) or not isinstance(time_value, int | float):
            raise ProtocolError(f"{where}.time must be a number")
        total = data.get("totalIterations")
        if total is not None:
            total = check_total_iterations(total, where=f"{where}.totalIterations")
        return cls(rank, attempt, iteration, metrics, checkpoint, float(time_value), total)


# The most reports one ``POST /v1/reports`` batch may carry (the body limit applies too).
MAX_BATCH_REPORTS = 1000


@dataclass(frozen=True)
class ReportBatch:
    """``POST /v1/reports`` with ``{"reports": [...]}``: several reports in one request, in order.

    The SDK's sender sends what accumulated since its last request in one batch, so a rank
    reporting often costs the coordinator one request per batch rather than per report. Each
    report in it is judged on its own, in order, exactly as if sent alone; a malformed one
    (``reports[i]...``) refuses the whole batch before anything is recorded.

    ``coordinatorId``, when given, is the coordinator the sender last heard from. Another one (a
    restarted sidecar) refuses the whole batch, recording nothing (:class:`CoordinatorChanged`):
    the sender first re-sends the checkpoint reports the old one never committed, then the batch.
    Without that order a newer checkpoint could commit first, and the older one in flight would be
    given up (a commit gives up every older pending checkpoint).
    """

    reports: tuple[Report, ...]
    coordinator_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"reports": [report.to_json() for report in self.reports]}
        if self.coordinator_id is not None:
            body["coordinatorId"] = self.coordinator_id
        return body

    @classmethod
    def from_json(cls, data: object) -> ReportBatch:
        if not isinstance(data, dict):
            raise ProtocolError("report batch must be a JSON object")
        items = _field(data, "reports", list, "batch")
        if not items:
            raise ProtocolError("batch.reports is empty: send at least one report")
        if len(items) > MAX_BATCH_REPORTS:
            raise ProtocolError(
                f"batch.reports has {len(items)} reports, over the limit of {MAX_BATCH_REPORTS}: "
                "split it into several requests"
            )
        reports = []
        for index, item in enumerate(items):
            try:
                reports.append(Report.from_json(item))
            except ProtocolError as exc:
                raise ProtocolError(f"batch.reports[{index}]: {exc}") from None
        return cls(tuple(reports), _coordinator_id(data, "batch"))


@dataclass(frozen=True)
class Finalize:
    """``POST /v1/finalize``: a rank's training function returned after ``iteration`` reports.
    ``coordinatorId`` as in :class:`ReportBatch`: a finalize must not overtake a re-sent report."""

    rank: int
    attempt: int
    iteration: int
    coordinator_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"rank": self.rank, "attempt": self.attempt, "iteration": self.iteration}
        if self.coordinator_id is not None:
            body["coordinatorId"] = self.coordinator_id
        return body

    @classmethod
    def from_json(cls, data: object) -> Finalize:
        where = "finalize"
        if not isinstance(data, dict):
            raise ProtocolError("finalize must be a JSON object")
        rank = _field(data, "rank", int, where)
        attempt = _field(data, "attempt", int, where)
        iteration = _field(data, "iteration", int, where)
        if rank < 0 or attempt < 0 or iteration < 0:
            raise ProtocolError(f"{where}: rank, attempt and iteration must be >= 0")
        return cls(rank, attempt, iteration, _coordinator_id(data, where))


def _coordinator_id(data: dict[str, Any], where: str) -> str | None:
    """The optional ``coordinatorId`` a request is addressed to."""
    if "coordinatorId" not in data:
        return None
    value: str = _field(data, "coordinatorId", str, where)
    if not value:
        raise ProtocolError(f"{where}.coordinatorId must not be empty")
    return value


@dataclass(frozen=True)
class CheckpointManifest:
    """``.trainjob-checkpoint.json``: its presence is what makes a checkpoint committed."""

    iteration: int
    attempt: int
    metrics: dict[str, MetricValue]
    files: tuple[CheckpointFile, ...]
    committed_at: str
    format: int = MANIFEST_FORMAT
    extra: dict[str, Any] = field(default_factory=dict)
    # Where the files are, relative to the checkpoint directory ("" in format 1).
    data_dir: str = ""

    @property
    def size_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "iteration": self.iteration,
            "attempt": self.attempt,
            "metrics": self.metrics,
            "files": [f.to_json() for f in self.files],
            "committedAt": self.committed_at,
            **({"dataDir": self.data_dir} if self.data_dir else {}),
            **self.extra,
        }

    @classmethod
    def from_json(cls, data: object) -> CheckpointManifest:
        where = "manifest"
        if not isinstance(data, dict):
            raise ProtocolError("manifest must be a JSON object")
        known = {"format", "iteration", "attempt", "metrics", "files", "committedAt", "dataDir"}
        data_dir = data.get("dataDir", "")
        if not isinstance(data_dir, str) or (data_dir and not _DIR_NAME.match(data_dir)):
            raise ProtocolError(f"{where}.dataDir must be one path component")
        return cls(
            iteration=_field(data, "iteration", int, where),
            attempt=_field(data, "attempt", int, where),
            metrics=check_metrics(data.get("metrics", {}), where=f"{where}.metrics"),
            files=tuple(
                CheckpointFile.from_json(item, f"{where}.files[{i}]")
                for i, item in enumerate(_field(data, "files", list, where))
            ),
            committed_at=_field(data, "committedAt", str, where),
            format=_field(data, "format", int, where),
            extra={k: v for k, v in data.items() if k not in known},
            data_dir=data_dir,
        )
