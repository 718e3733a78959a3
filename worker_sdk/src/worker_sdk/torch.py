"""Ray Train's ``ray.train.torch`` helpers for TrainJob workers (``pip install trainjob-sdk[torch]``).

Same names, arguments and behaviour as Ray Train 2.x, so moving a training loop over is a rename
(README.md, "The worker SDK"): :func:`prepare_model`, :func:`prepare_data_loader`,
:func:`get_device`, :func:`get_devices`, :func:`enable_reproducibility`. torch is imported only
inside these functions: ``import worker_sdk`` never needs it.

Where Ray asks its own runtime, these read the process group and the env contract instead:

- world size and rank: the initialised ``torch.distributed`` process group (``python -m
  worker_sdk.run`` initialises it, as ``TorchTrainer`` does), else the job's context;
- devices: ``LOCAL_RANK``/``LOCAL_WORLD_SIZE`` share the pod's visible GPUs among its processes
  (one process per GPU with ``procsPerWorker`` equal to the GPU count), CPU without CUDA.

Also here, our own: ``save_state``/``load_state`` write and read model, optimizer and extra
training state in one file of a checkpoint directory, unwrapping DDP so a checkpoint saved by a
DDP job loads into a plain model and back.
"""

from __future__ import annotations

import collections.abc
import logging
import os
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import torch
    from torch.utils.data import DataLoader

__all__ = [
    "enable_reproducibility",
    "get_device",
    "get_devices",
    "load_state",
    "prepare_data_loader",
    "prepare_model",
    "save_state",
    "unwrap_model",
]

STATE_FILE = "state.pt"
_log = logging.getLogger(__name__)


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside a DistributedDataParallel (or the model itself)."""
    from torch.nn.parallel import DistributedDataParallel

    return model.module if isinstance(model, DistributedDataParallel) else model


def save_state(
    directory: str | Path,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    filename: str = STATE_FILE,
    **extra: Any,
) -> Path:
    """Save ``model`` (and ``optimizer``, and ``extra`` values such as the epoch) in
    ``directory/filename``."""
    import torch

    state: dict[str, Any] = {"model": unwrap_model(model).state_dict(), "extra": extra}
    if optimizer is not None:
        state["optimizer"] = optimizer.state_dict()
    path = Path(directory) / filename
    torch.save(state, path)
    return path


def load_state(
    directory: str | Path,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    filename: str = STATE_FILE,
) -> dict[str, Any]:
    """Load what :func:`save_state` wrote into ``model`` (and ``optimizer``); returns the extras."""
    import torch

    state = torch.load(Path(directory) / filename, map_location="cpu", weights_only=True)
    unwrap_model(model).load_state_dict(state["model"])
    if optimizer is not None and "optimizer" in state:
        optimizer.load_state_dict(state["optimizer"])
    extra: dict[str, Any] = state.get("extra", {})
    return extra


def _world() -> tuple[int, int]:
    """(world size, rank): the process group's when one is initialised, else the job context's."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    import worker_sdk

    context = worker_sdk.get_context()
    return context.get_world_size(), context.get_world_rank()


def _local() -> tuple[int, int]:
    """(local rank, local world size) from the env contract (torchrun sets the same names)."""
    return int(os.environ.get("LOCAL_RANK", "0")), max(int(os.environ.get("LOCAL_WORLD_SIZE", "1")), 1)


def get_devices() -> list[torch.device]:
    """The torch devices of this process: its share of the pod's visible GPUs, else the CPU.

    With ``LOCAL_WORLD_SIZE`` processes on a pod that sees ``n`` GPUs, local rank ``r`` gets
    ``n // LOCAL_WORLD_SIZE`` of them (at least one, wrapping around when there are fewer GPUs
    than processes), in index order: ``[cuda:r]`` for one GPU per process, as Ray gives each worker
    its own GPU.
    """
    import torch

    if not torch.cuda.is_available():
        return [torch.device("cpu")]
    count = torch.cuda.device_count()
    local_rank, local_world_size = _local()
    if local_world_size == 1 and "LOCAL_RANK" not in os.environ:
        return [torch.device(f"cuda:{torch.cuda.current_device()}")]
    per_process = max(count // local_world_size, 1)
    first = local_rank * per_process
    return [torch.device(f"cuda:{(first + offset) % count}") for offset in range(per_process)]


def get_device() -> torch.device:
    """The first of :func:`get_devices`: ``model.to(get_device())`` instead of checking for CUDA."""
    return get_devices()[0]


def prepare_model(
    model: torch.nn.Module,
    move_to_device: bool | torch.device = True,
    parallel_strategy: Literal["ddp", "fsdp"] | None = "ddp",
    parallel_strategy_kwargs: dict[str, Any] | None = None,
) -> torch.nn.Module:
    """``model`` on this process's device and, when the world is larger than one, wrapped in
    DistributedDataParallel (``"ddp"``), FullyShardedDataParallel (``"fsdp"``, GPU only, as in
    Ray) or nothing (``None``); ``parallel_strategy_kwargs`` go to the wrapper.

    ``move_to_device`` is a bool or the device itself. With one process the model comes back
    unwrapped, so the same loop runs standalone.
    """
    import torch
    from torch.nn.parallel import DistributedDataParallel

    if parallel_strategy not in ("ddp", "fsdp", None):
        raise ValueError(f"parallel_strategy must be 'ddp', 'fsdp' or None, not {parallel_strategy!r}")
    kwargs = dict(parallel_strategy_kwargs or {})
    device = move_to_device if isinstance(move_to_device, torch.device) else get_device()
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if move_to_device is not False:
        model = model.to(device)
    world_size, rank = _world()
    if not parallel_strategy or world_size <= 1:
        return model
    if parallel_strategy == "fsdp":
        if not torch.cuda.is_available():
            raise RuntimeError(
                "FSDP is only available with GPU-enabled training: use parallel_strategy='ddp' on CPU"
            )
        from torch.distributed.fsdp import FullyShardedDataParallel

        _log.log(logging.INFO if rank == 0 else logging.DEBUG, "Wrapping the model in FSDP")
        wrapped: torch.nn.Module = FullyShardedDataParallel(model, **kwargs)
        return wrapped
    if device.type == "cuda":
        kwargs = {"device_ids": [device], "output_device": device, **kwargs}
    _log.log(logging.INFO if rank == 0 else logging.DEBUG, "Wrapping the model in DistributedDataParallel")
    return DistributedDataParallel(model, **kwargs)


def prepare_data_loader(
    data_loader: DataLoader[Any],
    add_dist_sampler: bool = True,
    move_to_device: bool = True,
    auto_transfer: bool = True,
) -> DataLoader[Any]:
    """``data_loader`` for this rank: with a ``DistributedSampler`` when the world is larger than
    one (``add_dist_sampler``), and yielding batches on :func:`get_device` (``move_to_device``).

    As in Ray: the sampler shuffles when the original loader did (its sampler was not a
    ``SequentialSampler``), keeps the loader's batch size, workers, collate function, pinning,
    ``drop_last``, timeout, ``worker_init_fn`` and generator; a loader that already has a
    ``DistributedSampler``, or iterates an ``IterableDataset``, keeps its sampling. Call
    ``loader.sampler.set_epoch(epoch)`` at the start of each epoch when the world is larger than
    one, or every epoch sees the same order. ``auto_transfer`` copies batches to a GPU without
    blocking (Ray uses a second CUDA stream); it does nothing on CPU.
    """
    from torch.utils.data import (
        DataLoader,
        DistributedSampler,
        IterableDataset,
        RandomSampler,
        SequentialSampler,
    )

    world_size, rank = _world()
    if (
        add_dist_sampler
        and world_size > 1
        and not isinstance(data_loader.sampler, DistributedSampler)
        and not isinstance(data_loader.dataset, IterableDataset)
    ):
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError(
                f"prepare_data_loader: the world has {world_size} processes but no torch.distributed process "
                "group is initialised: run the function with `python -m worker_sdk.run`, or call "
                "torch.distributed.init_process_group() first"
            )
        if not isinstance(data_loader.sampler, SequentialSampler | RandomSampler) and rank == 0:
            _log.warning(
                "The %s will be overwritten with a DistributedSampler "
                "(prepare_data_loader(add_dist_sampler=False) keeps it)",
                type(data_loader.sampler).__name__,
            )
        data_loader = DataLoader(
            data_loader.dataset,
            batch_size=data_loader.batch_size,
            shuffle=False,
            num_workers=data_loader.num_workers,
            collate_fn=data_loader.collate_fn,
            pin_memory=data_loader.pin_memory,
            drop_last=data_loader.drop_last,
            timeout=data_loader.timeout,
            worker_init_fn=data_loader.worker_init_fn,
            generator=data_loader.generator,
            sampler=DistributedSampler(
                data_loader.dataset, shuffle=not isinstance(data_loader.sampler, SequentialSampler)
            ),
        )
    if move_to_device:
        device = get_device()
        data_loader = _device_loader_class()(data_loader, device, auto_transfer and device.type != "cpu")
    return data_loader


def _device_loader_class() -> Callable[[DataLoader[Any], torch.device, bool], DataLoader[Any]]:
    """A DataLoader subclass (made on first use: torch is optional) that moves each batch to a
    device; it shares the wrapped loader's attributes, so ``loader.sampler.set_epoch`` and
    ``len(loader)`` work as on the original."""
    global _DeviceLoader
    if _DeviceLoader is not None:
        return _DeviceLoader
    import torch
    from torch.utils.data import DataLoader

    class DeviceDataLoader(DataLoader[Any]):
        def __init__(self, base: DataLoader[Any], device: torch.device, non_blocking: bool) -> None:
            # Not DataLoader.__init__: the wrapped loader is already built; share its state.
            self.__dict__.update(getattr(base, "__dict__", {}))
            self._base = base
            self.device = device
            self._non_blocking = non_blocking

        def _move(self, item: Any) -> Any:
            if isinstance(item, torch.Tensor):
                return item.to(self.device, non_blocking=self._non_blocking)
            if isinstance(item, collections.abc.Mapping):
                return {key: self._move(value) for key, value in item.items()}
            if isinstance(item, tuple) and hasattr(item, "_fields"):  # a namedtuple keeps its type
                return type(item)(*(self._move(value) for value in item))
            if isinstance(item, tuple | list):
                return type(item)(self._move(value) for value in item)
            return item  # not a tensor: left where it is, as in Ray

        def __len__(self) -> int:
            return len(self._base)

        def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
            for batch in iter(self._base):
                yield self._move(batch)

    _DeviceLoader = DeviceDataLoader
    return DeviceDataLoader


_DeviceLoader: Callable[[DataLoader[Any], torch.device, bool], DataLoader[Any]] | None = None


def enable_reproducibility(seed: int = 0) -> None:
    """Limit sources of nondeterminism, as Ray's: seed torch, Python's ``random`` and NumPy (when
    installed), use deterministic algorithms only, turn cuDNN benchmarking off, and set
    ``CUBLAS_WORKSPACE_CONFIG`` (deterministic cuBLAS needs it). Results may still differ across
    machines and versions (PyTorch's notes on randomness)."""
    import torch

    torch.manual_seed(seed)
    random.seed(seed)
    try:
        import numpy
    except ImportError:  # torch runs without NumPy; nothing of it to seed then
        pass
    else:
        numpy.random.seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    os.environ["CUBLAS_WORKSPACE_CONFIG"] = ":4096:8"
