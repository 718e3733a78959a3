"""Training functions the tests run through ``python -m worker_sdk.run <this file>:<function>``.

Each writes what it saw to ``<config["out"]>/rank-<rank>.json`` for the test to check."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

import worker_sdk as train


def _write(config: dict[str, Any], seen: dict[str, Any]) -> None:
    rank = train.get_context().get_world_rank()
    Path(config["out"], f"rank-{rank}.json").write_text(json.dumps(seen))


def sampler_and_model(config: dict[str, Any]) -> None:
    """Two epochs over 20 numbers through prepare_data_loader (a shuffling loader and an ordered
    one), set_epoch called as in Ray's examples."""
    dataset = TensorDataset(torch.arange(20), torch.arange(20) * 10)
    loaders = {
        "shuffled": train.torch.prepare_data_loader(DataLoader(dataset, batch_size=4, shuffle=True)),
        "ordered": train.torch.prepare_data_loader(DataLoader(dataset, batch_size=4)),
    }
    model = train.torch.prepare_model(nn.Linear(2, 1))
    epochs: dict[str, list[list[int]]] = {name: [] for name in loaders}
    for epoch in range(2):
        for name, loader in loaders.items():
            if train.get_context().get_world_size() > 1:
                loader.sampler.set_epoch(epoch)
            seen: list[int] = []
            for features, labels in loader:
                assert features.device == train.torch.get_device()
                assert torch.equal(labels, features * 10)  # the pairs stay together
                seen.extend(int(value) for value in features)
            epochs[name].append(seen)
        train.report({"epoch": epoch})
    loader = loaders["shuffled"]
    _write(
        config,
        {
            "epochs": epochs,
            "len": len(loader),
            "is_data_loader": isinstance(loader, DataLoader),
            "sampler": type(loader.sampler).__name__,
            "distributed_sampler": isinstance(loader.sampler, DistributedSampler),
            "model": type(model).__name__,
            "group": dist.is_initialized() and dist.get_world_size(),
            "backend": dist.is_initialized() and dist.get_backend(),
            "config": config,
        },
    )
