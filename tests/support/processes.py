"""Processes, ports and waiting, for tests and benchmarks alike.

Every process a test or a scenario starts is stopped by it, by pid, also when it fails; the
environment a child gets carries none of the rank contract of the process that started it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.error
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from trainjob_operator.local.ports import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
# torchrun's variables: a child must not inherit them from whoever started the tests.
CONTRACT_VARIABLES = (
    "WORLD_SIZE",
    "RANK",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "NODE_RANK",
    "MASTER_ADDR",
    "MASTER_PORT",
)
# What probing a server that is starting or restarting may raise: refused or reset connections,
# half-formed answers.
NOT_READY = (urllib.error.URLError, OSError, KeyError, ValueError, TypeError)
T = TypeVar("T")

__all__ = [
    "CONTRACT_VARIABLES",
    "NOT_READY",
    "REPO_ROOT",
    "clean_env",
    "free_port",
    "stop_process",
    "wait_for",
    "wait_until",
]


def clean_env() -> dict[str, str]:
    """This process's environment without the rank contract and ``TRAINJOB_*`` (so a child is not
    mistaken for a rank of some other job), unbuffered and on one thread."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("TRAINJOB_") and k not in CONTRACT_VARIABLES
    }
    env.update({"PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"})
    return env


def stop_process(process: subprocess.Popen[Any], sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
    """``sig`` to the process by pid, then SIGKILL if it is still there after ``timeout``."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(sig)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_until(
    what: str,
    probe: Callable[[], T | None],
    timeout: float = 60.0,
    explain: Callable[[], str] | None = None,
    *,
    interval: float = 0.1,
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """``probe()``'s first truthy result, polled every ``interval`` seconds. After ``timeout``
    seconds an AssertionError names ``what``, the last result and ``explain()`` (the state that
    tells why). A probe raising one of ``ignore`` (a server restarting) counts as a falsy result."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        try:
            last = probe()
        except ignore:
            last = None
        if last:
            return last
        if time.monotonic() > deadline:
            detail = f"\n{explain()}" if explain else ""
            raise AssertionError(
                f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r}){detail}"
            )
        time.sleep(interval)


def wait_for(
    probe: Callable[[], T | None], timeout: float, what: str, explain: Callable[[], str] | None = None
) -> T:
    """:func:`wait_until` in the end-to-end tests' argument order, polling every 0.25 s (each probe
    there is a kubectl call)."""
    return wait_until(what, probe, timeout, explain, interval=0.25)


def wait_for_server(what: str, check: Callable[[], Any], timeout: float, diagnose: Callable[[], str]) -> Any:
    """:func:`wait_until` every half second, where a server not answering yet is not a failure
    (installing the chart, starting pods)."""
    return wait_until(what, check, timeout, diagnose, interval=0.5, ignore=NOT_READY)
