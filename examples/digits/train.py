"""Train a small MLP on scikit-learn's digits with DDP (gloo), reporting through ``worker_sdk``.

Run ``python -m examples.digits.train`` from the repository root: as a TrainJob worker it reads
the env contract (``init_process_group("gloo")`` takes ``MASTER_ADDR``/``RANK``/... from it);
alone, it trains in one process and a rerun resumes from its last checkpoint.

Config (``spec.config``, or ``TRAINJOB_CONFIG`` standalone): ``epochs``, ``lr``, ``batch_size``,
``checkpoint_every`` (epochs; the last epoch is always checkpointed), ``finetune`` (start from
another job's checkpoint — ``resumeFrom`` — with a fresh optimizer at epoch 0), ``sharded`` (every rank saves
its share of the weights into the same checkpoint, instead of rank 0 saving everything),
``upload`` (``sync`` or ``async``), ``step_sleep`` (seconds per step, to slow it down for demos
and tests), ``seed``.

It uses the public SDK only (``worker_sdk`` and ``worker_sdk.torch``); the tests' hooks live in
``tests/integration/digits_hooks.py``.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

import worker_sdk as train
from worker_sdk.torch import load_state, prepare_model, save_state, unwrap_model

DEFAULTS: dict[str, Any] = {
    "epochs": 10,
    "lr": 0.05,
    "batch_size": 64,
    "checkpoint_every": 1,
    "sharded": False,
    "upload": "sync",
    "step_sleep": 0.0,
    "seed": 0,
    "finetune": False,
}
TRAINER_FILE = "trainer.pt"  # sharded checkpoints: optimizer and epoch, saved by rank 0
VALIDATION_FRACTION = 0.2


def make_model() -> nn.Module:
    return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))


def load_data(seed: int) -> tuple[TensorDataset, TensorDataset]:
    digits = load_digits()
    features = torch.tensor(digits.data, dtype=torch.float32) / 16.0
    labels = torch.tensor(digits.target, dtype=torch.long)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    split = int(len(labels) * (1 - VALIDATION_FRACTION))
    train_rows, val_rows = order[:split], order[split:]
    return (
        TensorDataset(features[train_rows], labels[train_rows]),
        TensorDataset(features[val_rows], labels[val_rows]),
    )


def shard_name(rank: int, world_size: int) -> str:
    return f"model-shard-{rank:05d}-of-{world_size:05d}.pt"


def save_checkpoint(
    directory: Path, model: nn.Module, optimizer: torch.optim.Optimizer, epoch: int, *, sharded: bool
) -> None:
    context = train.get_context()
    if not sharded:
        save_state(directory, model=model, optimizer=optimizer, epoch=epoch)
        return
    # Each rank saves every world_size-th tensor: the shards merge into one checkpoint directory.
    rank, world_size = context.get_world_rank(), context.get_world_size()
    weights = unwrap_model(model).state_dict()
    shard = {name: weights[name] for index, name in enumerate(sorted(weights)) if index % world_size == rank}
    torch.save(shard, directory / shard_name(rank, world_size))
    if rank == 0:
        torch.save({"optimizer": optimizer.state_dict(), "epoch": epoch}, directory / TRAINER_FILE)


def is_own(uri: str, context: train.TrainContext) -> bool:
    """Whether a checkpoint is this job's own (a restart) rather than another's (resumeFrom)."""
    own = f"{context.get_storage_uri().rstrip('/')}/{context.get_namespace()}/{context.get_job_name()}/"
    return uri.startswith(own)


def load_checkpoint(directory: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> int:
    """Restore model and optimizer; returns the epoch the checkpoint was saved after."""
    if not (directory / TRAINER_FILE).exists():
        return int(load_state(directory, model=model, optimizer=optimizer)["epoch"])
    weights: dict[str, torch.Tensor] = {}
    for shard in sorted(directory.glob("model-shard-*.pt")):
        weights.update(torch.load(shard, map_location="cpu", weights_only=True))
    unwrap_model(model).load_state_dict(weights)
    trainer = torch.load(directory / TRAINER_FILE, map_location="cpu", weights_only=True)
    optimizer.load_state_dict(trainer["optimizer"])
    return int(trainer["epoch"])


def evaluate(model: nn.Module, data: TensorDataset) -> tuple[float, float]:
    features, labels = data.tensors
    with torch.no_grad():
        logits = model(features)
        loss = nn.functional.cross_entropy(logits, labels).item()
        accuracy = (logits.argmax(dim=1) == labels).float().mean().item()
    return loss, accuracy


def mean_over_ranks(value: float) -> float:
    if not dist.is_initialized():
        return value
    total = torch.tensor([value])
    dist.all_reduce(total)
    return float(total.item()) / dist.get_world_size()


def main() -> None:
    context = train.get_context()
    config = {**DEFAULTS, **context.get_config()}
    rank, world_size = context.get_world_rank(), context.get_world_size()
    torch.set_num_threads(1)  # several ranks share a few cores
    if world_size > 1:
        dist.init_process_group("gloo")
    torch.manual_seed(config["seed"])

    train_data, val_data = load_data(config["seed"])
    sampler: DistributedSampler[tuple[torch.Tensor, ...]] = DistributedSampler(
        train_data, num_replicas=world_size, rank=rank, seed=config["seed"]
    )
    loader = DataLoader(train_data, batch_size=config["batch_size"], sampler=sampler)
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=config["lr"], momentum=0.9)

    start_epoch = 0
    checkpoint = train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            start_epoch = load_checkpoint(Path(directory), model, optimizer) + 1
        if config["finetune"] and not is_own(checkpoint.uri, context):
            # Fine-tuning starts from another job's weights: a fresh optimizer, from epoch 0.
            optimizer = torch.optim.SGD(model.parameters(), lr=config["lr"], momentum=0.9)
            start_epoch = 0
        print(f"rank {rank}: resumed from {checkpoint.uri} at epoch {start_epoch}", flush=True)
    ddp_model = prepare_model(model)

    epochs = int(config["epochs"])
    # One report per epoch from here on: the job's progress (status.progress, the Progress and ETA
    # columns of kubectl get tj) counts the iterations done before and the epochs left.
    done = 0 if checkpoint is None else int(checkpoint.get_metadata()["iteration"])
    if done + epochs - start_epoch > 0:
        train.set_total_iterations(done + epochs - start_epoch)
    for epoch in range(start_epoch, epochs):
        sampler.set_epoch(epoch)
        ddp_model.train()
        losses = []
        for features, labels in loader:
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(ddp_model(features), labels)
            loss.backward()  # type: ignore[no-untyped-call]  # torch leaves it unannotated
            optimizer.step()
            losses.append(loss.item())
            if config["step_sleep"]:
                time.sleep(float(config["step_sleep"]))
        ddp_model.eval()
        val_loss, accuracy = evaluate(model, val_data)
        metrics = {
            "loss": mean_over_ranks(sum(losses) / max(len(losses), 1)),
            "val_loss": val_loss,
            "accuracy": accuracy,
            "epoch": epoch,
        }
        # A disruption notice (drain, preemption, suspend): checkpoint this epoch and stop, so the
        # next attempt resumes from here. Every rank gets the same answer at the same epoch.
        stopping = train.should_stop()
        saves = (epoch + 1) % int(config["checkpoint_every"]) == 0 or epoch == epochs - 1 or stopping
        with tempfile.TemporaryDirectory() as directory:
            reported = None
            if saves and (config["sharded"] or rank == 0):
                save_checkpoint(Path(directory), model, optimizer, epoch, sharded=bool(config["sharded"]))
                reported = train.Checkpoint.from_directory(directory)
            train.report(metrics, checkpoint=reported, upload=config["upload"])
        if rank == 0:
            print(
                f"epoch {epoch}: loss {metrics['loss']:.4f} val_loss {val_loss:.4f} accuracy {accuracy:.3f}",
                flush=True,
            )
        if stopping:
            if rank == 0:
                print(f"stopping after epoch {epoch}: {train.get_preemption_info()}", flush=True)
            break
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
