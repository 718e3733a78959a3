"""worker_sdk.torch's Ray Train helpers in one process (the two-rank behaviour is in
tests/integration/test_function_entrypoint.py): devices on a CPU machine, batches moved whatever
their shape, reproducibility, refused strategies."""

from __future__ import annotations

import os
import random
from collections import namedtuple
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, RandomSampler

import worker_sdk as train
from worker_sdk import torch as train_torch

Pair = namedtuple("Pair", ["x", "y"])


class Shapes(Dataset[dict[str, Any]]):
    """Items that are dicts holding a tensor, a namedtuple of tensors and a string."""

    def __len__(self) -> int:
        return 6

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {
            "x": torch.tensor([index]),
            "pair": Pair(torch.tensor(index), torch.tensor(-index)),
            "name": "n",
        }


def test_train_torch_is_the_module_after_import_worker_sdk_as_train() -> None:
    # Ray's examples write train.torch.prepare_model after `import ray.train as train`.
    assert train.torch is train_torch
    with pytest.raises(AttributeError, match="has no attribute 'tensorflow'"):
        train.tensorflow  # noqa: B018


def test_one_process_on_cpu(sdk_env: Any) -> None:
    assert train_torch.get_devices() == [torch.device("cpu")]
    assert train_torch.get_device() == torch.device("cpu")
    model = nn.Linear(1, 1)
    assert train_torch.prepare_model(model) is model  # world of one: not wrapped
    assert train_torch.prepare_model(model, parallel_strategy="fsdp") is model

    loader = train_torch.prepare_data_loader(DataLoader(Shapes(), batch_size=4, shuffle=True))
    assert isinstance(loader, DataLoader) and isinstance(loader.sampler, RandomSampler)
    assert len(loader) == 2
    batches = list(loader)
    assert [len(batch["x"]) for batch in batches] == [4, 2]
    first = batches[0]
    assert isinstance(first["pair"], Pair) and first["name"] == ["n"] * 4  # shapes kept
    assert torch.equal(first["pair"].x, -first["pair"].y)
    assert sorted(int(v) for batch in batches for v in batch["x"]) == list(range(6))


def test_unknown_parallel_strategy_is_refused(sdk_env: Any) -> None:
    with pytest.raises(ValueError, match="parallel_strategy must be 'ddp', 'fsdp' or None, not 'zero'"):
        train_torch.prepare_model(nn.Linear(1, 1), parallel_strategy="zero")  # type: ignore[arg-type]  # bad input on purpose


def test_enable_reproducibility_seeds_and_restricts(monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy

    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    before = torch.are_deterministic_algorithms_enabled()
    try:
        train_torch.enable_reproducibility(7)
        drawn = (torch.rand(1).item(), random.random(), float(numpy.random.rand()))
        train_torch.enable_reproducibility(7)
        assert drawn == (torch.rand(1).item(), random.random(), float(numpy.random.rand()))
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.benchmark is False
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    finally:
        torch.use_deterministic_algorithms(before)
