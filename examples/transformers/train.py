"""Fine-tune a tiny BERT (random weights from a config: no download) on synthetic token sequences
with the Hugging Face Trainer, reporting through ``worker_sdk.integrations.transformers``.

Run ``python -m worker_sdk.run examples/transformers/train.py:train_func`` (the TrainJob in
deploy/examples/transformers.yaml does, on 2 workers): each saved checkpoint is reported with the
logged metrics, and a restarted attempt resumes the Trainer from the latest committed one.

Config: ``max_steps``, ``save_steps`` (also the logging interval), ``batch_size``, ``lr``,
``step_sleep`` (seconds per step, to slow it down for demos and tests), ``seed``.
"""

from __future__ import annotations

import tempfile
import time
from typing import Any

import torch
import transformers
from torch.utils.data import Dataset

import worker_sdk as train
from worker_sdk.integrations.transformers import ReportCallback, prepare_trainer

DEFAULTS: dict[str, Any] = {
    "max_steps": 8, "save_steps": 2, "batch_size": 8, "lr": 1e-3, "step_sleep": 0.0, "seed": 0,
}  # fmt: skip
SEQUENCE = 8
VOCABULARY = 64


class Sequences(Dataset[dict[str, torch.Tensor]]):
    """Random token sequences, labelled by whether their first token is in the upper half."""

    def __init__(self, size: int, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.tokens = torch.randint(0, VOCABULARY, (size, SEQUENCE), generator=generator)

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        tokens = self.tokens[index]
        return {"input_ids": tokens, "labels": (tokens[0] >= VOCABULARY // 2).long()}


def make_model() -> transformers.BertForSequenceClassification:
    # num_labels is a PreTrainedConfig keyword (through **kwargs) that BertConfig's annotations leave out.
    config = transformers.BertConfig(  # type: ignore[call-arg]
        vocab_size=VOCABULARY, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=SEQUENCE, num_labels=2,
    )  # fmt: skip
    return transformers.BertForSequenceClassification(config)


class _Slow(transformers.TrainerCallback):
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_step_end(self, *args: Any, **kwargs: Any) -> None:
        time.sleep(self.seconds)


def train_func(config: dict[str, Any]) -> None:
    config = {**DEFAULTS, **config}
    torch.set_num_threads(1)
    transformers.set_seed(config["seed"])
    args = transformers.TrainingArguments(
        output_dir=tempfile.mkdtemp(prefix="hf-output-"),  # this process's own
        per_device_train_batch_size=config["batch_size"],
        learning_rate=config["lr"],
        max_steps=config["max_steps"],
        save_strategy="steps",
        save_steps=config["save_steps"],
        logging_steps=config["save_steps"],
        report_to=[],
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=True,
        seed=config["seed"],
    )
    trainer = transformers.Trainer(
        model=make_model(),
        args=args,
        train_dataset=Sequences(256, config["seed"]),
        callbacks=[ReportCallback(), *([_Slow(config["step_sleep"])] if config["step_sleep"] else [])],
    )
    trainer = prepare_trainer(trainer)
    checkpoint = train.get_checkpoint()
    if checkpoint is None:
        trainer.train()
        return
    with checkpoint.as_directory() as directory:
        print(f"resuming from {checkpoint.uri}", flush=True)
        trainer.train(resume_from_checkpoint=f"{directory}/{ReportCallback.CHECKPOINT_NAME}")
