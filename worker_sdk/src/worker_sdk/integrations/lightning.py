"""Lightning with a TrainJob, as Ray Train's ``ray.train.lightning`` (Ray's names, ``Ray`` dropped).

    from worker_sdk.integrations.lightning import (
        DDPStrategy, LightningEnvironment, ReportCallback, prepare_trainer,
    )

    trainer = lightning.Trainer(
        devices="auto", accelerator="auto", strategy=DDPStrategy(),
        plugins=[LightningEnvironment()], callbacks=[ReportCallback()], enable_checkpointing=False,
    )
    trainer = prepare_trainer(trainer)
    checkpoint = worker_sdk.get_checkpoint()
    with checkpoint.as_directory() if checkpoint else contextlib.nullcontext(None) as directory:
        trainer.fit(model, ckpt_path=directory and f"{directory}/{ReportCallback.CHECKPOINT_NAME}")

Each worker process is one Lightning process: the world and ranks come from the TrainJob's
context, the device from :func:`worker_sdk.torch.get_device`.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.fabric.plugins.environments.lightning import LightningEnvironment as _LightningEnvironment

import worker_sdk
from worker_sdk.integrations import report_ready
from worker_sdk.torch import get_device

__all__ = ["DDPStrategy", "LightningEnvironment", "ReportCallback", "prepare_trainer", "total_epochs"]


class ReportCallback(pl.Callback):
    """At each training epoch's end, saves ``checkpoint.ckpt`` (``trainer.save_checkpoint``) and
    reports it with ``trainer.callback_metrics`` plus ``epoch`` and ``step``, as Ray's
    ``RayTrainReportCallback``. Every rank reports; the checkpoint file is rank 0's."""

    CHECKPOINT_NAME = "checkpoint.ckpt"

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Tells the job how many reports the run makes in all (one per epoch): its progress."""
        total = total_epochs(trainer)
        if total is not None:
            worker_sdk.set_total_iterations(total)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        metrics = {**report_ready(trainer.callback_metrics), "epoch": trainer.current_epoch}
        metrics["step"] = trainer.global_step
        with tempfile.TemporaryDirectory() as directory:
            path = Path(directory, self.CHECKPOINT_NAME)
            trainer.save_checkpoint(path, weights_only=False)  # every rank takes part; rank 0 writes
            checkpoint = worker_sdk.Checkpoint.from_directory(directory) if path.exists() else None
            worker_sdk.report(metrics, checkpoint=checkpoint)
        trainer.strategy.barrier()


def total_epochs(trainer: pl.Trainer) -> int | None:
    """How many epochs ``fit`` runs in all (counted from epoch 0, so a resumed fit gets the same
    number), hence how many times :class:`ReportCallback` reports: ``max_epochs``, or fewer when
    ``max_steps`` ends the run first; None when neither bounds it (or the epoch's length is not
    known, an iterable without a length)."""
    max_epochs = trainer.max_epochs if trainer.max_epochs is not None and trainer.max_epochs > 0 else None
    max_steps = trainer.max_steps if trainer.max_steps > 0 else None
    if max_steps is None:
        return max_epochs
    batches = trainer.num_training_batches
    if not math.isfinite(batches) or batches <= 0:
        return None
    steps_per_epoch = math.ceil(batches / trainer.accumulate_grad_batches)
    epochs = math.ceil(max_steps / steps_per_epoch)
    return epochs if max_epochs is None else min(epochs, max_epochs)


class LightningEnvironment(_LightningEnvironment):
    """World size and ranks from the TrainJob's context (Ray's ``RayLightningEnvironment``)."""

    def world_size(self) -> int:
        return worker_sdk.get_context().get_world_size()

    def global_rank(self) -> int:
        return worker_sdk.get_context().get_world_rank()

    def local_rank(self) -> int:
        return worker_sdk.get_context().get_local_rank()

    def node_rank(self) -> int:
        return worker_sdk.get_context().get_node_rank()

    def set_world_size(self, size: int) -> None:
        """The context's world size is the truth; Lightning's own count is ignored."""

    def set_global_rank(self, rank: int) -> None:
        """The context's rank is the truth."""

    def teardown(self) -> None:
        """The process group belongs to the job (``python -m worker_sdk.run`` tears it down)."""


class DDPStrategy(pl.strategies.DDPStrategy):
    """DDP on :func:`worker_sdk.torch.get_device`, its sampler split by the job's world (Ray's
    ``RayDDPStrategy``)."""

    @property
    def root_device(self) -> torch.device:
        return get_device()

    @property
    def distributed_sampler_kwargs(self) -> dict[str, Any]:
        context = worker_sdk.get_context()
        return {"num_replicas": context.get_world_size(), "rank": context.get_world_rank()}


def prepare_trainer(trainer: pl.Trainer) -> pl.Trainer:
    """Checks the Trainer uses :class:`DDPStrategy` and :class:`LightningEnvironment`, as Ray's
    ``prepare_trainer`` checks for its own classes: a RuntimeError says what to change."""
    if not isinstance(trainer.strategy, DDPStrategy):
        raise RuntimeError(
            f"the Trainer's strategy is {type(trainer.strategy).__name__}: use "
            "strategy=worker_sdk.integrations.lightning.DDPStrategy()"
        )
    environment = getattr(trainer.strategy, "cluster_environment", None)
    if environment is not None and not isinstance(environment, LightningEnvironment):
        raise RuntimeError(
            f"the Trainer's cluster environment is {type(environment).__name__}: pass "
            "plugins=[worker_sdk.integrations.lightning.LightningEnvironment()]"
        )
    return trainer
