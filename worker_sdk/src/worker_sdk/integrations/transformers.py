"""Hugging Face Transformers with a TrainJob, as Ray Train's ``ray.train.huggingface.transformers``.

    from worker_sdk.integrations.transformers import ReportCallback, prepare_trainer

    trainer = transformers.Trainer(model=..., args=..., callbacks=[ReportCallback()])
    trainer = prepare_trainer(trainer)
    checkpoint = worker_sdk.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as directory:
            trainer.train(resume_from_checkpoint=f"{directory}/{ReportCallback.CHECKPOINT_NAME}")
    else:
        trainer.train()

The Trainer initialises its process group from the same env contract (``WORLD_SIZE``, ``RANK``,
``MASTER_ADDR``...), or finds it initialised by ``python -m worker_sdk.run``.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import transformers
from transformers.trainer_utils import get_last_checkpoint

import worker_sdk
from worker_sdk.integrations import report_ready

__all__ = ["ReportCallback", "prepare_trainer"]


class ReportCallback(transformers.TrainerCallback):
    """Reports each checkpoint the Trainer saves, with the metrics logged so far (the latest value
    of each), as Ray's ``RayTrainReportCallback``: the checkpoint holds the Trainer's checkpoint
    directory as ``checkpoint/``. Configure logging, evaluation and saving so the metric you rank
    checkpoints by is fresh when a checkpoint is saved (e.g. ``eval_strategy == save_strategy``)."""

    CHECKPOINT_NAME = "checkpoint"

    def on_save(
        self,
        args: transformers.TrainingArguments,
        state: transformers.TrainerState,
        control: transformers.TrainerControl,
        **kwargs: Any,
    ) -> None:
        metrics: dict[str, Any] = {}
        for logged in state.log_history:
            metrics.update(logged)
        metrics.setdefault("step", state.global_step)
        with tempfile.TemporaryDirectory() as directory:
            saved = get_last_checkpoint(args.output_dir)  # type: ignore[no-untyped-call]
            checkpoint = None
            if saved is not None:  # ranks that do not save (save_on_each_node=False) report none
                shutil.copytree(saved, Path(directory, self.CHECKPOINT_NAME))
                checkpoint = worker_sdk.Checkpoint.from_directory(directory)
            worker_sdk.report(report_ready(metrics), checkpoint=checkpoint)


def prepare_trainer(trainer: transformers.Trainer) -> transformers.Trainer:
    """The Trainer, with a :class:`ReportCallback` added when it has none. Ray's version adapts
    Ray Data iterables, which TrainJobs do not have: datasets here are the Trainer's own."""
    if not any(isinstance(callback, ReportCallback) for callback in trainer.callback_handler.callbacks):
        trainer.add_callback(ReportCallback())
    return trainer
