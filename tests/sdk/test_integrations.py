"""What the framework callbacks report: a framework's logged values made reportable (the
callbacks themselves run as TrainJobs in tests/e2e/test_framework_callbacks.py)."""

from __future__ import annotations

import math

import torch

from worker_sdk.integrations import report_ready


def test_logged_values_become_reportable_metrics() -> None:
    logged = {
        "loss": torch.tensor(0.25),
        "grad_norm": math.inf,  # fp16 overflow: kept as text, report() refuses non-finite numbers
        "eval_loss": float("nan"),
        "epoch": 1.5,
        "step": 7,
        "done": False,
        "note": "warmup",
        "skipped": None,
        "per_class": [0.1, 0.2],  # not a metric value: left out
        "vector": torch.tensor([1.0, 2.0]),  # more than one element: left out
    }
    assert report_ready(logged) == {
        "loss": 0.25,
        "grad_norm": "inf",
        "eval_loss": "nan",
        "epoch": 1.5,
        "step": 7,
        "done": False,
        "note": "warmup",
        "skipped": None,
    }


def test_the_transformers_callback_counts_the_saves_a_run_makes() -> None:
    """One report per save: every save_steps, plus the Trainer's save at the last step."""
    import transformers

    from worker_sdk.integrations.transformers import total_saves

    def saves(strategy: str, max_steps: int, save_steps: int = 0, epochs: int = 0) -> int | None:
        args = transformers.TrainingArguments(output_dir="unused", save_strategy=strategy, report_to=[])
        state = transformers.TrainerState(max_steps=max_steps, save_steps=save_steps, num_train_epochs=epochs)
        return total_saves(args, state)

    assert saves("steps", max_steps=10, save_steps=2) == 5  # the e2e example's: 2, 4, 6, 8, 10
    assert saves("steps", max_steps=11, save_steps=2) == 6  # 2 .. 10, and 11 at the end
    assert saves("epoch", max_steps=40, epochs=4) == 4
    assert saves("no", max_steps=10, save_steps=2) is None  # never reports: no progress to tell


def test_the_lightning_callback_counts_the_epochs_a_fit_runs() -> None:
    import lightning.pytorch as pl

    from worker_sdk.integrations.lightning import total_epochs

    def trainer(max_epochs: int | None = None, max_steps: int = -1) -> pl.Trainer:
        """Trainer's own defaults for the limits not given."""
        return pl.Trainer(
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            max_epochs=max_epochs,
            max_steps=max_steps,
        )

    assert total_epochs(trainer(max_epochs=4)) == 4
    # Bounded by steps, before fit() knows an epoch's length: not known, nothing told.
    assert total_epochs(trainer(max_steps=10)) is None
