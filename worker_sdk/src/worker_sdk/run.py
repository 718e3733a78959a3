"""``python -m worker_sdk.run MODULE:FUNCTION`` (or ``path/to/file.py:FUNCTION``): run a training
function the way Ray's ``TorchTrainer`` runs ``train_loop_per_worker``.

In each process it initialises the ``torch.distributed`` process group from the env contract
(``MASTER_ADDR``, ``MASTER_PORT``, ``WORLD_SIZE``, ``RANK``: ``init_method="env://"``), with NCCL
when CUDA is there and gloo otherwise (``--backend``, else ``TRAINJOB_DIST_BACKEND``: ``nccl``,
``gloo`` or ``none`` for no process group); calls ``FUNCTION(config)`` with ``spec.config`` when
the function takes one argument, or ``FUNCTION()`` when it takes none; destroys the group; and
exits 0, or 1 with the traceback on stderr (the container's log) when the function raised.
Standalone (no TrainJob environment) the group has one process on a free local port, so the
same function runs on a laptop, as ``TorchTrainer`` with one worker.

``--source-env NAME FUNCTION`` takes the module's source from the environment variable ``NAME``
instead: how a function submitted from a notebook travels in its TrainJob (Kubeflow's trainer
ships a function's source in the job too), so no image needs the notebook's files.

A target that cannot be run (no such module, file or function, a function that takes more
than one argument) is one line on stderr and exit status 2, before anything is initialised.
torch is needed only for the process group: without it, ``--backend none`` is the default.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import inspect
import os
import socket
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

BACKEND_ENV = "TRAINJOB_DIST_BACKEND"
BACKENDS = ("nccl", "gloo", "none")
USAGE_ERROR = 2


class TargetError(Exception):
    """The target cannot be run: a one-line message, exit status 2."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m worker_sdk.run",
        description="Run a training function as Ray's TorchTrainer runs train_loop_per_worker.",
    )
    parser.add_argument(
        "target", help="MODULE:FUNCTION or path/to/file.py:FUNCTION (FUNCTION with --source-env)"
    )
    parser.add_argument(
        "--source-env", metavar="NAME", help="the module's source is in environment variable NAME"
    )
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        help=f"torch.distributed backend (default: ${BACKEND_ENV}, else nccl with CUDA, gloo without)",
    )
    args = parser.parse_args(argv)
    try:
        chosen = _chosen_backend(args.backend)
        target = _source_file(args.source_env, args.target) if args.source_env else args.target
        function = load_target(target)
        takes_config = _takes_config(function, args.target)
        backend = _backend(chosen)
    except TargetError as error:
        print(f"python -m worker_sdk.run: {error}", file=sys.stderr, flush=True)
        return USAGE_ERROR
    try:
        with _process_group(backend):
            import worker_sdk

            if takes_config:
                function(worker_sdk.get_context().get_config())
            else:
                function()
    except SystemExit as error:  # the function's own sys.exit(): its status
        return error.code if isinstance(error.code, int) else (0 if error.code is None else 1)
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        return 1
    return 0


def load_target(target: str) -> Callable[..., Any]:
    """The function ``MODULE:FUNCTION`` or ``FILE.py:FUNCTION`` names (``a.b`` for a nested
    attribute). The module's own import errors propagate: they are the program's, with a traceback."""
    where, sep, name = target.rpartition(":")
    if not sep or not where or not name:
        raise TargetError(f"target {target!r} is not MODULE:FUNCTION or path/to/file.py:FUNCTION")
    module = _load_file(Path(where)) if where.endswith(".py") or os.sep in where else _load_module(where)
    found: Any = module
    for part in name.split("."):
        if not hasattr(found, part):
            raise TargetError(f"{where} has no function {name!r}")
        found = getattr(found, part)
    if not callable(found):
        raise TargetError(f"{where}:{name} is a {type(found).__name__}, not a function")
    function: Callable[..., Any] = found
    return function


def _source_file(variable: str, function: str) -> str:
    """Write the source in ``$variable`` to a file (tracebacks then show its lines) and name the
    function in it."""
    source = os.environ.get(variable)
    if not source:
        raise TargetError(f"--source-env {variable}: the environment variable is not set or empty")
    if ":" in function:
        raise TargetError(f"with --source-env the target is the function's name alone, not {function!r}")
    directory = Path(tempfile.mkdtemp(prefix="trainjob-function-"))
    path = directory / "trainjob_function.py"
    path.write_text(source)
    return f"{path}:{function}"


def _load_module(name: str) -> ModuleType:
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, "")  # as `python -m` does: modules next to the working directory
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        spec = None  # a parent package that is missing
    if spec is None:
        raise TargetError(f"no module named {name!r} (from {Path.cwd()}, sys.path as python -m sees it)")
    return importlib.import_module(name)


def _load_file(path: Path) -> ModuleType:
    if not path.is_file():
        raise TargetError(f"no such file: {path}")
    name = path.stem if path.stem.isidentifier() else "train_module"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise TargetError(f"{path} cannot be imported as a Python module")
    sys.path.insert(0, str(path.resolve().parent))  # its sibling modules import as when run directly
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # pickling, dataclasses and typing look the module up by name
    spec.loader.exec_module(module)
    return module


def _takes_config(function: Callable[..., Any], target: str) -> bool:
    """Whether to pass the config: one positional parameter yes, none no, as Ray decides."""
    try:
        parameters = list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError):
        raise TargetError(f"{target}: cannot read the function's signature") from None
    positional = [
        p
        for p in parameters
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    if len(positional) > 1 or any(p.kind == p.KEYWORD_ONLY and p.default is p.empty for p in parameters):
        raise TargetError(
            f"{target} must take no argument or one (the config), as train_loop_per_worker: "
            f"it takes {inspect.signature(function)}"
        )
    if positional:
        return True
    return any(p.kind in (p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL) for p in parameters)


def _chosen_backend(flag: str | None) -> str:
    """The backend asked for ('' for the default), checked before anything is imported."""
    chosen = flag or os.environ.get(BACKEND_ENV, "")
    if chosen and chosen not in BACKENDS:
        raise TargetError(f"{BACKEND_ENV}={chosen!r}: expected one of {', '.join(BACKENDS)}")
    return chosen


def _backend(chosen: str) -> str:
    """The backend to initialise: the one asked for, else NCCL with CUDA, gloo without, none
    without torch."""
    if chosen == "none":
        return chosen  # no process group: torch is not imported for it
    try:
        import torch
        import torch.distributed as dist
    except ImportError:
        if chosen:
            raise TargetError(f"backend {chosen!r} needs torch: pip install 'trainjob-sdk[torch]'") from None
        return "none"
    if chosen:
        return chosen
    return "nccl" if torch.cuda.is_available() and dist.is_nccl_available() else "gloo"


@contextlib.contextmanager
def _process_group(backend: str) -> Iterator[None]:
    if backend == "none":
        yield
        return
    import torch
    import torch.distributed as dist

    from worker_sdk.torch import get_device

    if backend == "nccl":
        torch.cuda.set_device(get_device())
    if "MASTER_ADDR" in os.environ and "WORLD_SIZE" in os.environ:
        dist.init_process_group(backend, init_method="env://")
    else:  # standalone: a group of one, so collectives in the function work as with one worker
        dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{_free_port()}", world_size=1, rank=0)
    try:
        yield
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


if __name__ == "__main__":
    sys.exit(main())
