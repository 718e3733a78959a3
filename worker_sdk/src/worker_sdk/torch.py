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
DDP job loads into a plain model and back; and :class:`StateStager`, which copies that state into
reused CPU buffers in the caller and writes the file in the background, so that
``report(checkpoint=stager.stage_state(...), upload="async")`` blocks the training loop for a
memory copy instead of a ``torch.save`` (what ``torch.distributed.checkpoint.async_save`` does).
"""

from __future__ import annotations

import collections
import collections.abc
import logging
import os
import random
import shutil
import tempfile
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from worker_sdk._contract import ENV_STAGING_DIR
from worker_sdk.checkpoint import Checkpoint, StagedDirectory
from worker_sdk.protocol import MANIFEST_NAME
from worker_sdk.storage import check_relative_key

if TYPE_CHECKING:
    import torch
    from torch.utils.data import DataLoader

__all__ = [
    "StateStager",
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


# Values a staged state holds as they are: immutable, so a later change to the training state
# cannot reach them (torch.dtype and torch.device are added on first use; a torch.Size is a tuple).
_PLAIN: tuple[type, ...] = (bool, int, float, complex, str, bytes, type(None))
_Path = tuple[object, ...]


def _describe(path: _Path) -> str:
    return "state" + "".join(f"[{key!r}]" for key in path)


class StateStager:
    """Checkpoints of a training state that block the loop only for a memory copy.

    ``stage(state)`` (or ``stage_state(model=..., optimizer=..., **extra)``, the layout of
    :func:`save_state`) copies every tensor of the state into CPU buffers the stager keeps and
    reuses, on the caller's thread, and returns a :class:`~worker_sdk.Checkpoint` at once; a
    background thread of the stager then writes the copy with ``torch.save`` into a directory of
    its own, which ``report(checkpoint=..., upload="async")`` uploads and removes once stored.
    The training loop may change the model as soon as ``stage`` returns: what is stored is the
    state at the call. ``torch.save`` into the page cache costs the loop the pickling and the
    write; this costs it a ``copy_`` per tensor into memory already allocated (allocating and
    faulting in fresh memory, as a clone would, costs about as much as the copy), as
    ``torch.distributed.checkpoint.async_save`` does (measured in ``bench/dcp_peer.py``).

    Buffers: one set, the size of the state (pinned when a tensor is on a GPU, unless
    ``pin_memory=False``: pinning costs more than the copy, hence once), kept until :meth:`close`
    and reallocated only for a tensor whose shape or dtype changed. So one staged checkpoint is
    being written at a time: ``stage`` first waits for the previous one's file (usually long
    written by the next checkpoint), and a staged checkpoint not reported by then is discarded.

    The state: nested mappings, lists and tuples of dense tensors (any device; ``nn.Parameter``
    too) and of immutable plain values (numbers, strings, bytes, None, ``torch.dtype``/``device``/
    ``Size``); anything else (a DTensor, a sparse tensor, an object of your own) is refused with a
    ``TypeError`` that names where it is, before anything is copied. Tensors that share memory
    (tied weights) are copied each on their own.
    """

    def __init__(
        self, *, pin_memory: bool | None = None, staging_dir: str | os.PathLike[str] | None = None
    ) -> None:
        if pin_memory not in (None, True, False):
            raise TypeError(
                f"pin_memory must be True, False or None (pin for GPU tensors), got {pin_memory!r}"
            )
        self._pin_memory = pin_memory
        # Where the files are written before their upload: TRAINJOB_STAGING_DIR, as for the
        # copies of async uploads, else the system's temporary directory.
        self._staging_dir = (
            os.fspath(staging_dir) if staging_dir is not None else os.environ.get(ENV_STAGING_DIR) or None
        )
        self._buffers: dict[_Path, torch.Tensor] = {}
        self._pinned = False
        self._previous: StagedDirectory | None = None
        self._lock = threading.Lock()
        self._writer: ThreadPoolExecutor | None = None
        self._closed = False

    @property
    def nbytes(self) -> int:
        """The memory the buffers hold (the size of the state last staged)."""
        return sum(buffer.numel() * buffer.element_size() for buffer in self._buffers.values())

    def stage_state(
        self,
        *,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        filename: str = STATE_FILE,
        **extra: Any,
    ) -> Checkpoint:
        """What :func:`save_state` would write (``model``, unwrapped from DDP, ``optimizer`` and
        ``extra`` values), staged; :func:`load_state` reads it back."""
        state: dict[str, Any] = {"model": unwrap_model(model).state_dict(), "extra": extra}
        if optimizer is not None:
            state["optimizer"] = optimizer.state_dict()
        return self.stage(state, filename=filename)

    def stage(self, state: Mapping[Any, Any], *, filename: str = STATE_FILE) -> Checkpoint:
        """Copy ``state``'s tensors into the buffers; a checkpoint whose ``filename`` (``torch.load``
        reads it; ``weights_only=True`` too) is written in the background from the copy."""
        import torch

        if not isinstance(state, Mapping):
            raise TypeError(f"stage() takes a state dict (a mapping), got {type(state).__name__}")
        if not isinstance(filename, str) or "/" in filename or filename == MANIFEST_NAME:
            raise ValueError(
                f"filename must be a plain file name other than {MANIFEST_NAME}, got {filename!r}"
            )
        check_relative_key(filename)
        tensors: list[tuple[_Path, torch.Tensor]] = []
        self._collect(state, (), tensors)  # every refusal before anything is touched
        pin = self._pin_memory if self._pin_memory is not None else any(t.is_cuda for _, t in tensors)
        if pin and not torch.cuda.is_available():
            raise RuntimeError("pin_memory=True needs CUDA, which this process does not have")
        with self._lock:
            if self._closed:
                raise RuntimeError("stage() called after the stager was closed")
            if self._previous is not None:
                self._previous.wait_written()  # its file is written from the buffers
                self._previous.discard()  # a no-op once reported
            buffers = self._copy(tensors, pin)
            staged_state = self._rebuild(state, (), buffers)
            directory = Path(tempfile.mkdtemp(prefix="trainjob-staged-", dir=self._staging_dir))
            if self._writer is None:
                self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trainjob-stage")
            written = self._writer.submit(_write_state, staged_state, directory, filename)
            staged = StagedDirectory(directory, written, f"the checkpoint staged in {directory}")
            self._previous = staged
        checkpoint = Checkpoint(path=None, uri=directory.as_uri(), manifest=None, staged=staged)
        weakref.finalize(checkpoint, staged.discard)  # never reported: its directory goes too
        return checkpoint

    def close(self) -> None:
        """Wait for the file being written and free the buffers; a staged checkpoint not reported
        yet is discarded."""
        with self._lock:
            self._closed = True
            if self._previous is not None:
                self._previous.wait_written()
                self._previous.discard()
            if self._writer is not None:
                self._writer.shutdown(wait=True)
            self._buffers = {}

    def _collect(self, value: Any, path: _Path, tensors: list[tuple[_Path, torch.Tensor]]) -> None:
        """Check ``value`` and list its tensors (with where they are)."""
        import torch

        if isinstance(value, torch.Tensor):
            if type(value) not in (torch.Tensor, torch.nn.Parameter):
                raise TypeError(
                    f"{_describe(path)} is a {type(value).__name__}: stage() copies plain dense tensors; "
                    'save a sharded state with torch.distributed.checkpoint (README.md, "The worker SDK")'
                )
            if value.layout != torch.strided or value.device.type == "meta":
                raise TypeError(
                    f"{_describe(path)} is a {value.layout} tensor on {value.device}: stage() copies dense "
                    "tensors that hold their values (torch.strided, not on the meta device)"
                )
            tensors.append((path, value))
        elif isinstance(value, Mapping):
            for key, item in value.items():
                self._collect(item, (*path, key), tensors)
        elif isinstance(value, list | tuple):
            for index, item in enumerate(value):
                self._collect(item, (*path, index), tensors)
        elif not isinstance(value, _plain_types()):
            raise TypeError(
                f"{_describe(path)} is a {type(value).__name__}: stage() holds tensors and plain "
                "values (numbers, strings, bytes, None, torch.dtype/device) in dicts, lists and tuples; "
                "convert it to one of those (or save it with torch.save yourself)"
            )

    def _copy(self, tensors: list[tuple[_Path, torch.Tensor]], pin: bool) -> dict[_Path, torch.Tensor]:
        """Each tensor copied into its buffer (reused when the shape and dtype are the same)."""
        import torch

        if pin != self._pinned:
            self._buffers, self._pinned = {}, pin
        kept, used = self._buffers, {}
        devices = set()
        with torch.no_grad():
            for path, tensor in tensors:
                buffer = kept.get(path)
                if buffer is None or buffer.shape != tensor.shape or buffer.dtype != tensor.dtype:
                    buffer = torch.empty(tensor.shape, dtype=tensor.dtype, device="cpu", pin_memory=pin)
                from_gpu = pin and tensor.is_cuda
                buffer.copy_(tensor, non_blocking=from_gpu)
                if from_gpu:
                    devices.add(tensor.device)
                used[path] = buffer
        for device in devices:  # the asynchronous copies are done before the file is written
            torch.cuda.synchronize(device)
        self._buffers = used  # buffers of tensors no longer in the state are freed
        return used

    def _rebuild(self, value: Any, path: _Path, buffers: dict[_Path, torch.Tensor]) -> Any:
        """``value`` with its containers copied (the caller may change them) and tensors replaced
        by their buffers."""
        import torch

        if isinstance(value, torch.Tensor):
            return buffers[path]
        if isinstance(value, Mapping):
            rebuilt: Any = collections.OrderedDict() if isinstance(value, collections.OrderedDict) else {}
            for key, item in value.items():
                rebuilt[key] = self._rebuild(item, (*path, key), buffers)
            metadata = getattr(value, "_metadata", None)  # a module state dict's versions
            if metadata is not None:
                rebuilt._metadata = _plain_copy(metadata)
            return rebuilt
        if isinstance(value, list | tuple):
            items = [self._rebuild(item, (*path, index), buffers) for index, item in enumerate(value)]
            if isinstance(value, list):
                return items
            if hasattr(value, "_fields"):  # a namedtuple keeps its type
                return type(value)(*items)
            return tuple(items) if type(value) is tuple else type(value)(items)
        return value


def _plain_types() -> tuple[type, ...]:
    import torch

    return (*_PLAIN, torch.dtype, torch.device)


def _plain_copy(value: Any) -> Any:
    """A copy of nested dicts of plain values (a state dict's ``_metadata``)."""
    if isinstance(value, dict):
        return {key: _plain_copy(item) for key, item in value.items()}
    return value


def _write_state(state: dict[str, Any], directory: Path, filename: str) -> Path:
    """The stager's background work: the staged state into ``directory/filename``."""
    import torch

    try:
        torch.save(state, directory / filename)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    return directory


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
