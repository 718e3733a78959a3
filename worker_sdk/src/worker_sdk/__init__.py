"""trainjob worker SDK: Ray Train's reporting API for TrainJob workers, without Ray.

    import worker_sdk as train

    checkpoint = train.get_checkpoint()          # latest committed checkpoint, or None
    ...
    with tempfile.TemporaryDirectory() as tmp:
        torch.save(state, f"{tmp}/state.pt")
        train.report({"loss": loss}, checkpoint=train.Checkpoint.from_directory(tmp))

Metrics are numbers, strings, booleans or None. NaN and infinities are refused with a
ValueError (they are not JSON, and a silently dropped or stringified loss hides divergence):
report a finite number, or ``str(value)`` to record it anyway.

Without ``TRAINJOB_COORDINATOR_URL`` (and the rest of the operator's environment) the SDK runs
standalone: one process, checkpoints committed under ``./trainjob-results`` (or
``TRAINJOB_STORAGE_URI``), and a rerun resumes from the latest one. See ``worker_sdk.context``
for the environment and the SDK's knobs.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from types import ModuleType

from worker_sdk import session as _session
from worker_sdk.checkpoint import Checkpoint
from worker_sdk.context import TrainContext
from worker_sdk.errors import (
    CheckpointCorruptError,
    CheckpointUploadError,
    CoordinatorError,
    JobEnvironmentError,
)
from worker_sdk.preemption import PreemptionInfo
from worker_sdk.session import UploadMode

__all__ = [
    "Checkpoint",
    "CheckpointCorruptError",
    "CheckpointUploadError",
    "CoordinatorError",
    "JobEnvironmentError",
    "PreemptionInfo",
    "TrainContext",
    "get_checkpoint",
    "get_context",
    "get_preemption_info",
    "report",
    "set_total_iterations",
    "should_stop",
]


def report(
    metrics: Mapping[str, int | float | str | bool | None],
    *,
    checkpoint: Checkpoint | None = None,
    checkpoint_dir_name: str | None = None,
    upload: UploadMode = "sync",
    delete_local_checkpoint_after_upload: bool | None = None,
) -> None:
    """Report this iteration's metrics, and optionally a checkpoint; not a barrier.

    Every call is one iteration; every rank must call it the same number of times. With a
    checkpoint, its files are uploaded before returning (``upload="sync"``), or copied and uploaded
    in the background (``"async"``: the directory may be deleted as soon as this returns). Ranks
    reporting checkpoints at the same iteration merge into one directory,
    ``checkpoint_<iteration:06d>`` unless ``checkpoint_dir_name`` names it; it is committed once
    every rank has reported that iteration. A background failure (upload, or a report the
    coordinator refused) is raised from the next call.

    ``delete_local_checkpoint_after_upload=True`` gives the directory up, as in Ray Train: its files
    are removed once stored (the directory is left, empty), and an async upload moves the
    directory aside instead of copying it, so ``report`` returns at once whatever its size. The
    default keeps the caller's files (Ray's default for async uploads is to delete them).
    """
    # Made once per process; after that, no lock (see Session.report_metrics).
    session = _session.live or _session.current()
    if (
        checkpoint is None
        and checkpoint_dir_name is None
        and delete_local_checkpoint_after_upload is None
        and (upload == "sync" or upload == "async")
    ):
        # The training loop's every-step call: one positional call (see report_metrics).
        session.report_metrics(metrics)
        return
    session.report(
        metrics,
        checkpoint=checkpoint,
        checkpoint_dir_name=checkpoint_dir_name,
        upload=upload,
        delete_local_checkpoint_after_upload=delete_local_checkpoint_after_upload,
    )


def set_total_iterations(total: int) -> None:
    """Tell the job how many iterations (``report()`` calls, counted across attempts, as
    ``status.iteration`` counts them) it runs in all, so that its status shows ``progress``: the
    percentage done and the estimated time remaining at the recent rate (``kubectl get tj``'s
    Progress and ETA columns). Call it on any rank, before or during the loop; the last value
    counts, and every later ``report()`` carries it. The framework callbacks in
    ``worker_sdk.integrations`` call it from ``max_steps`` / ``max_epochs``. Standalone it is
    accepted and has no effect. Not in Ray Train, which has no progress of its own; Kubeflow's
    ``trainerStatus.progressPercentage`` is what it feeds.

    Raises TypeError for a non-integer and ValueError (ProtocolError) for one below 1."""
    _session.current().set_total_iterations(total)


def get_checkpoint() -> Checkpoint | None:
    """The latest committed checkpoint this attempt resumes from, or None for a fresh start."""
    return _session.current().get_checkpoint()


def get_context() -> TrainContext:
    """This worker's rank, world size, job, attempt and config."""
    return _session.current().context


def should_stop() -> bool:
    """True when the gang should leave its training loop now: a disruption notice (an eviction,
    a drain, a preemption, a suspend, a SIGTERM of a trainer) is out, and this rank has reached
    the iteration from which every rank stops. Call it after each ``report()``, at the same point
    on every rank; a checkpoint reported before returning True is committed before the pods go,
    and the next attempt resumes from it. Not a barrier: one small request to the coordinator."""
    return _session.current().should_stop()


def get_preemption_info() -> PreemptionInfo | None:
    """The disruption notice in Ray Train's shape (deadline, ranks affected), or None."""
    return _session.current().preemption_info()


def __getattr__(name: str) -> ModuleType:
    """``train.torch`` after ``import worker_sdk as train``, as after ``import ray.train as train``
    (Ray's examples call ``train.torch.prepare_model``); imported on first use: torch is optional."""
    if name == "torch":
        return importlib.import_module("worker_sdk.torch")
    raise AttributeError(f"module 'worker_sdk' has no attribute {name!r}")
