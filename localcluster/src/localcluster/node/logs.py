"""Container log files and the kubelet's HTTP endpoint that serves them.

stdout and stderr of a container instance go to one file, `<pod dir>/logs/<container>/<n>.log`
where n is the instance's restart count; the previous instance's file is kept for
`kubectl logs --previous`, older ones are deleted.

The API server proxies `GET /api/v1/namespaces/{ns}/pods/{pod}/log` to
`GET /containerLogs/{ns}/{pod}/{container}?follow=&tailLines=&previous=&limitBytes=` here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from aiohttp import web

log = logging.getLogger(__name__)


def log_path(pod_dir: Path, container: str, instance: int) -> Path:
    return pod_dir / "logs" / container / f"{instance}.log"


def prune_logs(pod_dir: Path, container: str, current: int) -> None:
    """Keep the current and the previous instance's logs only."""
    directory = pod_dir / "logs" / container
    for f in directory.glob("*.log"):
        with contextlib.suppress(ValueError, OSError):
            if int(f.stem) < current - 1:
                f.unlink()


def tail_offset(path: Path, lines: int) -> int:
    """Byte offset where the last `lines` lines of the file start."""
    if lines <= 0:
        return path.stat().st_size
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        end = f.tell()
        pos = end
        newlines = 0
        # A trailing newline ends the last line; it does not start another one.
        skip_last = True
        while pos > 0:
            step = min(65536, pos)
            pos -= step
            f.seek(pos)
            chunk = f.read(step)
            for i in range(len(chunk) - 1, -1, -1):
                if chunk[i] == 0x0A:
                    if skip_last and pos + i == end - 1:
                        continue
                    newlines += 1
                    if newlines == lines:
                        return pos + i + 1
            skip_last = False
        return 0


@dataclass
class LogTarget:
    path: Path
    alive: Callable[[], bool]  # whether the instance writing this file still runs


class LogSource(Protocol):
    def find_log(
        self, namespace: str, pod: str, container: str, previous: bool
    ) -> LogTarget | str | None: ...


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "").lower() in ("true", "1", "yes")


def make_app(source: LogSource, routes: Sequence[web.RouteDef] = ()) -> web.Application:
    async def container_logs(request: web.Request) -> web.StreamResponse:
        ns, pod, container = (
            request.match_info["ns"],
            request.match_info["pod"],
            request.match_info["container"],
        )
        found = source.find_log(ns, pod, container, _flag(request, "previous"))
        if found is None or isinstance(found, str):
            text = found or f'container "{container}" in pod "{pod}" is not available'
            raise web.HTTPNotFound(text=text)
        follow = _flag(request, "follow")
        tail = request.query.get("tailLines")
        limit_raw = request.query.get("limitBytes")
        limit = int(limit_raw) if limit_raw and limit_raw.isdigit() else None
        resp = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
        await resp.prepare(request)
        sent = 0
        try:
            offset = tail_offset(found.path, int(tail)) if tail and tail.lstrip("-").isdigit() else 0
        except FileNotFoundError:
            offset = 0
        with contextlib.suppress(FileNotFoundError), open(found.path, "rb") as f:  # noqa: ASYNC230 - local file
            f.seek(offset)
            while True:
                chunk = f.read(65536)
                if chunk:
                    if limit is not None:
                        chunk = chunk[: max(0, limit - sent)]
                    await resp.write(chunk)
                    sent += len(chunk)
                    if limit is not None and sent >= limit:
                        break
                    continue
                if not follow:
                    break
                if not found.alive():
                    # One last read: the process may have written just before it exited.
                    rest = f.read()
                    if rest:
                        await resp.write(rest)
                    break
                await asyncio.sleep(0.1)
        with contextlib.suppress(ConnectionResetError):
            await resp.write_eof()
        return resp

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/containerLogs/{ns}/{pod}/{container}", container_logs)
    app.router.add_get("/healthz", healthz)
    app.router.add_routes(routes)
    return app


class KubeletServer:
    def __init__(
        self, source: LogSource, host: str = "127.0.0.1", port: int = 0, routes: Sequence[web.RouteDef] = ()
    ) -> None:
        self._app = make_app(source, routes)
        self._host, self._port = host, port
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> int:
        self._runner = web.AppRunner(self._app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        server = site._server
        assert server is not None
        self.port = int(server.sockets[0].getsockname()[1])  # type: ignore[attr-defined]
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


# The kubelet's bounds (pkg/kubelet/container/runtime.go): what a container may write to its
# terminationMessagePath, and what FallbackToLogsOnError takes from the end of its log.
MAX_TERMINATION_MESSAGE_LENGTH = 4 * 1024
MAX_TERMINATION_MESSAGE_LOG_LENGTH = 2 * 1024
MAX_TERMINATION_MESSAGE_LOG_LINES = 80
DEFAULT_TERMINATION_MESSAGE_PATH = "/dev/termination-log"


def _read_tail(path: Path, start: int, limit: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        end = f.tell()
        f.seek(max(start, end - limit))
        return f.read()


def termination_message(message_file: Path, log_file: Path, *, fallback_to_logs: bool) -> str:
    """`state.terminated.message` as the kubelet computes it for an instance that exited.

    The end of the termination message file (at most 4 KiB); with `fallback_to_logs` (policy
    FallbackToLogsOnError and a non-zero exit) and no file or an empty one, the end of the log:
    its last 80 lines, at most the last 2 KiB of them.
    """
    try:
        data = _read_tail(message_file, 0, MAX_TERMINATION_MESSAGE_LENGTH)
    except FileNotFoundError:
        data = b""
    except OSError as e:
        return f"Error on reading termination log {message_file}: {e}"
    if data or not fallback_to_logs:
        return data.decode("utf-8", "replace")
    try:
        start = tail_offset(log_file, MAX_TERMINATION_MESSAGE_LOG_LINES)
        data = _read_tail(log_file, start, MAX_TERMINATION_MESSAGE_LOG_LENGTH)
    except OSError as e:
        return f"Error on reading termination message from logs: {e}"
    return data.decode("utf-8", "replace")
