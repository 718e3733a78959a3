"""A container instance as a local process, and the readiness probes that run against it.

Each instance runs in its own session (so its own process group): signals go to the whole group,
so a shell, torchrun or a multiprocessing pool and its children are stopped together, as a
container's cgroup would be. When the main process exits, whatever is left of its group is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp

from localcluster.node.sandbox import SandboxMode, enter_command

log = logging.getLogger(__name__)

JSON = dict[str, Any]


class ContainerProcess:
    def __init__(self, argv: Sequence[str], env: Mapping[str, str], cwd: str | None, log_file: Path) -> None:
        self.argv = list(argv)
        self.env = dict(env)
        self.cwd = cwd
        self.log_file = log_file
        self._proc: asyncio.subprocess.Process | None = None
        self.started_monotonic = 0.0
        self.returncode: int | None = None
        self.exited = asyncio.Event()

    @property
    def pid(self) -> int:
        return self._proc.pid if self._proc is not None else 0

    async def start(self) -> int:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as out:  # noqa: ASYNC230 - a local open, no I/O wait
            self._proc = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
            )
        self.started_monotonic = time.monotonic()
        return self._proc.pid

    async def wait(self) -> int:
        assert self._proc is not None
        rc = await self._proc.wait()
        self.returncode = rc
        self.exited.set()
        # The container ends with its main process: nothing of its group may outlive it.
        self.signal_group(signal.SIGKILL)
        return rc

    def signal_group(self, sig: int) -> None:
        if self._proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, sig)

    @property
    def alive(self) -> bool:
        return self._proc is not None and self.returncode is None


async def stop_processes(procs: Sequence[ContainerProcess], grace: float) -> None:
    """SIGTERM every process group, wait up to `grace` seconds, SIGKILL what is left."""
    live = [p for p in procs if p.alive]
    if not live:
        return
    for p in live:
        p.signal_group(signal.SIGTERM)
    waits = [asyncio.ensure_future(_wait_exit(p)) for p in live]
    _, pending = await asyncio.wait(waits, timeout=max(0.0, grace))
    for p in live:
        if p.alive:
            p.signal_group(signal.SIGKILL)
    if pending:
        await asyncio.wait(pending, timeout=10)


async def _wait_exit(p: ContainerProcess) -> None:
    if p.alive:
        await p.exited.wait()


async def run_probe(probe: JSON, *, pod_ip: str, pid: int, mode: SandboxMode, env: Mapping[str, str]) -> bool:
    """One exec / httpGet / tcpSocket probe; True when it succeeds within its timeout."""
    timeout = float(probe.get("timeoutSeconds") or 1)
    try:
        if "exec" in probe:
            argv = enter_command(mode, pid, probe["exec"].get("command") or ["true"])
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                env=dict(env),
            )
            try:
                _, err = await asyncio.wait_for(proc.communicate(), timeout)
                if proc.returncode != 0:
                    log.debug("exec probe %s: exit %s %s", argv, proc.returncode, err[-500:])
                return proc.returncode == 0
            except TimeoutError:
                proc.kill()
                await proc.wait()
                return False
        if "httpGet" in probe:
            h = probe["httpGet"]
            host = h.get("host") or pod_ip
            scheme = str(h.get("scheme") or "HTTP").lower()
            url = f"{scheme}://{host}:{h.get('port')}{h.get('path') or '/'}"
            headers = {x["name"]: x["value"] for x in h.get("httpHeaders") or []}
            async with (
                aiohttp.ClientSession() as s,
                s.get(url, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout), ssl=False) as r,
            ):
                return 200 <= r.status < 400
        if "tcpSocket" in probe:
            t = probe["tcpSocket"]
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(t.get("host") or pod_ip, int(t.get("port"))), timeout
            )
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return True
    except (OSError, TimeoutError, aiohttp.ClientError, ValueError):
        return False
    return True
