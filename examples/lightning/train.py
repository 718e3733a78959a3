"""Train a small regression model with Lightning on synthetic data, reporting through
``worker_sdk.integrations.lightning``.

Run ``python -m worker_sdk.run examples/lightning/train.py:train_func`` (the TrainJob in
deploy/examples/lightning.yaml does, on 2 workers): each epoch's end is reported with a
``checkpoint.ckpt``, and a restarted attempt resumes ``fit`` from the latest committed one.

Config: ``max_epochs``, ``batch_size``, ``lr``, ``step_sleep`` (seconds per step, for demos and
tests), ``seed``.
"""

from __future__ import annotations

import time
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import worker_sdk as train
from worker_sdk.integrations.lightning import (
    DDPStrategy,
    LightningEnvironment,
    ReportCallback,
    prepare_trainer,
)

DEFAULTS: dict[str, Any] = {"max_epochs": 4, "batch_size": 16, "lr": 0.05, "step_sleep": 0.0, "seed": 0}


class Regression(pl.LightningModule):
    def __init__(self, lr: float, step_sleep: float) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.layer = nn.Linear(4, 1)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], index: int) -> torch.Tensor:
        features, targets = batch
        loss = nn.functional.mse_loss(self.layer(features), targets)
        self.log("train_loss", loss, on_epoch=True, on_step=False, sync_dist=True)
        if self.hparams["step_sleep"]:
            time.sleep(self.hparams["step_sleep"])
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.hparams["lr"])


def data(seed: int, batch_size: int) -> DataLoader[tuple[torch.Tensor, ...]]:
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(256, 4, generator=generator)
    targets = features @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
    return DataLoader(TensorDataset(features, targets), batch_size=batch_size, shuffle=True)


def train_func(config: dict[str, Any]) -> None:
    config = {**DEFAULTS, **config}
    torch.set_num_threads(1)
    pl.seed_everything(config["seed"])
    trainer = pl.Trainer(
        max_epochs=config["max_epochs"],
        accelerator="auto",
        devices="auto",
        strategy=DDPStrategy(),
        plugins=[LightningEnvironment()],
        callbacks=[ReportCallback()],
        enable_checkpointing=False,  # the ReportCallback checkpoints
        enable_progress_bar=False,
        logger=False,
    )
    trainer = prepare_trainer(trainer)
    model = Regression(config["lr"], config["step_sleep"])
    loader = data(config["seed"], config["batch_size"])
    checkpoint = train.get_checkpoint()
    if checkpoint is None:
        trainer.fit(model, loader)
        return
    with checkpoint.as_directory() as directory:
        print(f"resuming from {checkpoint.uri}", flush=True)
        trainer.fit(model, loader, ckpt_path=f"{directory}/{ReportCallback.CHECKPOINT_NAME}")
