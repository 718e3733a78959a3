"""Processes that must not outlive the command that started them, and finding those that did.

`up` (of `python -m localcluster` and of `trainjob local`) starts long-running children in their
own sessions, so that a Ctrl-C in the terminal reaches `up` alone and `up` stops them in order.
A session survives its parent, though: killed hard (SIGKILL, OOM, a closed terminal), `up` would
leave its API server, node agent, SeaweedFS and operator running. Two things prevent that:

- `die_with_parent()` is a preexec hook that asks Linux for a signal (PR_SET_PDEATHSIG) when the
  parent dies; the child then stops as on `down` (the node agent stops its pods first);
- `holders(directory)` finds the processes of this user whose command line names the state
  directory (each child is started with its paths there), so `status`, `down` and the next `up`
  see and stop what an earlier `up` left, even one that died before it recorded their pids.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: signal.Signals = signal.SIGTERM) -> Callable[[], None] | None:
    """A `preexec_fn` that has the child receive `sig` when this process dies; None where Linux's
    parent-death signal does not apply.

    The kernel sends it when the *thread* that forked the child ends, so it is set only for
    children started from the main thread (a worker thread that starts a cluster and returns
    would otherwise stop it); those others are still found by `holders`.
    """
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:
            # The parent died between fork and prctl: nobody will send the signal now.
            os.kill(os.getpid(), sig)

    return preexec


@dataclass(frozen=True)
class Holder:
    pid: int
    command: str

    def __str__(self) -> str:
        command = self.command if len(self.command) <= 160 else self.command[:157] + "..."
        return f"pid {self.pid}: {command}"


def _names(arg: str, directory: str) -> bool:
    value = arg.split("=", 1)[1] if arg.startswith("-") and "=" in arg else arg
    return value == directory or value.startswith(directory + os.sep)


def holders(directory: str | Path) -> list[Holder]:
    """This user's live processes (not this one nor its parents) with an argument naming `directory` or a path
    under it, e.g. `--kubeconfig DIR/cluster/kubeconfig` or `-dir=DIR/seaweedfs/data`."""
    target = str(Path(directory).resolve())
    found: list[Holder] = []
    # Not this process nor what runs it (`timeout 60 trainjob local down --dir DIR` names DIR too).
    mine = _ancestors()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in mine:
            continue
        with contextlib.suppress(OSError):
            if entry.stat().st_uid != os.getuid():
                continue
            raw = (entry / "cmdline").read_bytes()
            if not raw or _zombie(entry):
                continue
            args = raw.rstrip(b"\0").decode(errors="replace").split("\0")
            if any(_names(a, target) for a in args[1:]):
                found.append(Holder(int(entry.name), " ".join(args)))
    return sorted(found, key=lambda h: h.pid)


def _ancestors() -> set[int]:
    """This process and its parents up to init."""
    out: set[int] = set()
    pid = os.getpid()
    while pid > 1 and pid not in out:
        out.add(pid)
        try:
            pid = int((Path(f"/proc/{pid}") / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return out


def _zombie(proc: Path) -> bool:
    stat = (proc / "stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def stop_holders(directory: str | Path, timeout: float = 20.0) -> list[Holder]:
    """SIGTERM every holder of `directory`, SIGKILL what is left after `timeout`; returns them."""
    found = holders(directory)
    for h in found:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(h.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    alive = list(found)
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [h for h in alive if _running(h.pid)]
    for h in alive:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(h.pid, signal.SIGKILL)
    return found


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        return not _zombie(Path(f"/proc/{pid}"))
    return False
