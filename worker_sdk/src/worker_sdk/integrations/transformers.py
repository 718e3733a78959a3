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

import math
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import transformers
from transformers.trainer_utils import get_last_checkpoint

import worker_sdk
from worker_sdk.integrations import report_ready

__all__ = ["ReportCallback", "prepare_trainer", "total_saves"]


class ReportCallback(transformers.TrainerCallback):
    """Reports each checkpoint the Trainer saves, with the metrics logged so far (the latest value
    of each), as Ray's ``RayTrainReportCallback``: the checkpoint holds the Trainer's checkpoint
    directory as ``checkpoint/``. Configure logging, evaluation and saving so the metric you rank
    checkpoints by is fresh when a checkpoint is saved (e.g. ``eval_strategy == save_strategy``)."""

    CHECKPOINT_NAME = "checkpoint"

    def on_train_begin(
        self,
        args: transformers.TrainingArguments,
        state: transformers.TrainerState,
        control: transformers.TrainerControl,
        **kwargs: Any,
    ) -> None:
        """Tells the job how many reports the run makes in all (one per save): its progress."""
        total = total_saves(args, state)
        if total is not None:
            worker_sdk.set_total_iterations(total)

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


def total_saves(args: transformers.TrainingArguments, state: transformers.TrainerState) -> int | None:
    """How many checkpoints a run saves from its first step to ``max_steps`` (counted from step 0,
    so a resumed run gets the same number), hence how many times :class:`ReportCallback` reports:
    every ``save_steps`` and once more at the last step (the Trainer saves there too), or once
    per epoch; None when the Trainer does not know (no save strategy, ``best``, an iterable
    dataset of unknown length)."""
    strategy = args.save_strategy  # a str enum: equal to its value (its str() is the member's name)
    if strategy == "steps" and state.save_steps > 0 and state.max_steps > 0:
        return math.ceil(state.max_steps / state.save_steps)
    if strategy == "epoch" and 0 < state.num_train_epochs < sys.maxsize:
        return int(state.num_train_epochs)
    return None


def prepare_trainer(trainer: transformers.Trainer) -> transformers.Trainer:
    """The Trainer, with a :class:`ReportCallback` added when it has none. Ray's version adapts
    Ray Data iterables, which TrainJobs do not have: datasets here are the Trainer's own."""
    if not any(isinstance(callback, ReportCallback) for callback in trainer.callback_handler.callbacks):
        trainer.add_callback(ReportCallback())
    return trainer
