"""Optional PyTorch helpers (``pip install trainjob-sdk[torch]``); torch is imported only here.

``save_state``/``load_state`` write and read model, optimizer and extra training state in one
file of a checkpoint directory, unwrapping DistributedDataParallel so a checkpoint saved by a
DDP job loads into a plain model and back. ``prepare_model`` wraps a model in DDP when the job has
more than one process.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

STATE_FILE = "state.pt"


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


def prepare_model(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` wrapped in DistributedDataParallel when a process group with more than one process
    is initialised (``torch.distributed.init_process_group``), else ``model`` itself."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return DistributedDataParallel(model)
    return model
