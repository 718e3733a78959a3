"""`kubectl exec` and port-forward on the node: the kubelet's streaming endpoints.

The API server upgrades the client's request to a WebSocket and opens one to this agent, which
speaks the same channel protocol the kubelet's streaming server does, so frames are relayed as
they are:

- `GET /exec/{namespace}/{pod}/{container}?command=..&stdin=&stdout=&stderr=&tty=`, subprotocol
  `v5.channel.k8s.io` or `v4.channel.k8s.io`. Every binary message starts with its channel:
  0 stdin, 1 stdout, 2 stderr, 3 error (the exit as a `metav1.Status` in JSON), 4 resize
  (`{"Width": w, "Height": h}`); v5 adds 255 + channel (the client closed that stream: stdin's
  end). An empty message on the lowest writable channel tells the client the streams are up.
- `GET /portForward/{namespace}/{pod}?port=P[&port=Q]`, subprotocol `v4.channel.k8s.io`: per
  port a data channel (2i) and an error channel (2i+1), each opened with the port number as two
  little-endian bytes; one TCP connection per port to the pod's IP.

The command runs in the container's context: its environment, its working directory, and inside
its mount (and UTS) namespace through `nsenter` where the agent uses namespaces (as exec probes
do, see sandbox.py). With `tty` it gets a pseudo-terminal as its controlling terminal, sized by
the resize channel. Its process group is killed when the connection ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import pty
import shutil
import signal
import struct
import termios
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

from aiohttp import WSMessage, WSMsgType, web

from localcluster.node.containers import ContainerProcess
from localcluster.node.pod import PodWorker
from localcluster.node.sandbox import Isolation, SandboxMode, enter_command

log = logging.getLogger(__name__)

EXEC_PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
PORT_FORWARD_PROTOCOLS = ("v4.channel.k8s.io",)
STDIN, STDOUT, STDERR, ERROR, RESIZE = 0, 1, 2, 3, 4
CLOSE = 255
# how long a terminal's command waits for the client's first size (kubectl sends it at once)
INITIAL_SIZE_WAIT = 2.0


class StreamSource(Protocol):
    """What of the node agent these endpoints use: its pods and how their processes are sandboxed."""

    workers: dict[str, PodWorker]
    sandbox: SandboxMode


def routes(source: StreamSource) -> list[web.RouteDef]:
    async def exec_handler(request: web.Request) -> web.StreamResponse:
        return await _exec(source, request)

    async def port_forward_handler(request: web.Request) -> web.StreamResponse:
        return await _port_forward(source, request)

    return [
        web.route("*", "/exec/{ns}/{pod}/{container}", exec_handler),
        web.route("*", "/portForward/{ns}/{pod}", port_forward_handler),
    ]


def _worker(source: StreamSource, namespace: str, name: str) -> PodWorker | None:
    return next((w for w in source.workers.values() if w.namespace == namespace and w.name == name), None)


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "").lower() in ("true", "1")


def exit_status(code: int, command: list[str]) -> dict[str, Any]:
    """The error channel's last word, as the kubelet writes it (v4 and later)."""
    if code == 0:
        return {"metadata": {}, "status": "Success"}
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"command terminated with non-zero exit code: error executing command "
        f"[{' '.join(command)}], exit code {code}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }


def _start_error(message: str) -> dict[str, Any]:
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"Internal error occurred: error executing command in container: {message}",
        "reason": "InternalError",
        "details": {"causes": [{"message": f"error executing command in container: {message}"}]},
        "code": 500,
    }


class _Channels:
    """Writes to the WebSocket, one message per write, tagged with its channel."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws

    async def send(self, channel: int, data: bytes) -> None:
        if not self.ws.closed:
            with contextlib.suppress(ConnectionResetError):
                await self.ws.send_bytes(bytes([channel]) + data)


async def _exec(source: StreamSource, request: web.Request) -> web.StreamResponse:
    ns, name, container = (request.match_info[k] for k in ("ns", "pod", "container"))
    worker = _worker(source, ns, name)
    if worker is None:
        raise web.HTTPNotFound(text="pod does not exist")
    proc = worker.procs.get(container)
    if proc is None or not proc.alive:
        raise web.HTTPNotFound(text=f'container not found ("{container}")')
    command = request.query.getall("command", [])
    if not command:
        raise web.HTTPBadRequest(text="you must specify at least 1 command")
    tty = _flag(request, "tty")
    want_stdin, want_stdout = _flag(request, "stdin"), _flag(request, "stdout")
    want_stderr = _flag(request, "stderr") and not tty
    ws = web.WebSocketResponse(protocols=EXEC_PROTOCOLS, max_msg_size=0)
    if not ws.can_prepare(request).ok:
        raise web.HTTPBadRequest(text="Upgrade request required")
    await ws.prepare(request)
    out = _Channels(ws)
    # The kubelet's "streams are up" signal: an empty message on the lowest writable channel.
    await out.send(STDOUT if want_stdout else STDERR if want_stderr else ERROR, b"")
    sup = worker.containers.get(container)
    workdir = (sup.spec.get("workingDir") if sup else None) or str(worker.settings.root_dir)
    argv, cwd = _in_container(source.sandbox, proc, workdir, command)
    missing = _missing_executable(command, proc.env)
    if missing is not None:
        await out.send(ERROR, json.dumps(_start_error(missing)).encode())
        await ws.close()
        return ws
    runner: _Runner
    reader: asyncio.Task[None] | None = None
    pumps: list[asyncio.Task[None]] = []
    try:
        if tty:
            runner = tty_runner = _TtyExec(argv, proc.env, cwd)
            # kubectl sends the terminal's size first: the command starts with it (stty, editors)
            reader = asyncio.create_task(_read_client(ws, runner, want_stdin))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(tty_runner.sized.wait(), INITIAL_SIZE_WAIT)
        else:
            runner = _PipeExec(argv, proc.env, cwd, want_stdin)
        await runner.start()
    except OSError as e:
        if reader is not None:
            reader.cancel()
        await out.send(ERROR, json.dumps(_start_error(str(e))).encode())
        await ws.close()
        return ws
    pumps = [asyncio.create_task(p) for p in runner.pumps(out, want_stdout, want_stderr)]
    if reader is None:
        reader = asyncio.create_task(_read_client(ws, runner, want_stdin))
    try:
        code = await runner.wait()
        await asyncio.gather(*pumps, return_exceptions=True)
        await out.send(ERROR, json.dumps(exit_status(code, command)).encode())
    finally:
        runner.kill()
        reader.cancel()
        for p in pumps:
            p.cancel()
        await ws.close()
    return ws


def _in_container(
    mode: SandboxMode, proc: ContainerProcess, workdir: str, command: list[str]
) -> tuple[list[str], str | None]:
    """(argv, cwd): the command in the container's namespaces, started in its working directory."""
    if mode.isolation is Isolation.NONE:
        return list(command), workdir
    # `cd` inside the namespace: the working directory may be a path only mounted there.
    script = 'cd "$1" && shift && exec "$@"'
    wrapped = ["/bin/sh", "-c", script, "localcluster-exec", workdir, *command]
    return enter_command(mode, proc.pid, wrapped), None


def _missing_executable(command: list[str], env: dict[str, str]) -> str | None:
    exe = command[0]
    if "/" in exe:
        return None if os.access(exe, os.X_OK) else f'exec: "{exe}": stat {exe}: no such file or directory'
    if shutil.which(exe, path=env.get("PATH", os.defpath)) is None:
        return f'exec: "{exe}": executable file not found in $PATH'
    return None


async def _read_client(ws: web.WebSocketResponse, runner: _Runner, want_stdin: bool) -> None:
    """Client -> process: stdin data, stdin's close (v5), terminal sizes; a closed socket kills it."""
    async for msg in ws:
        raw = _payload(msg)
        if not raw:
            continue
        channel, data = raw[0], raw[1:]
        if channel == STDIN and want_stdin:
            await runner.write_stdin(data)
        elif channel == CLOSE and data[:1] == bytes([STDIN]):
            runner.close_stdin()
        elif channel == RESIZE:
            with contextlib.suppress(ValueError, TypeError, KeyError):
                size = json.loads(data)
                runner.resize(int(size["Width"]), int(size["Height"]))
    runner.kill()


def _payload(msg: WSMessage) -> bytes:
    """A data message's bytes: clients may send text frames too (the kubernetes client sends
    str data that way), which the kubelet reads like binary ones."""
    if msg.type == WSMsgType.BINARY:
        return bytes(msg.data)
    if msg.type == WSMsgType.TEXT:
        return str(msg.data).encode()
    return b""


class _Runner(Protocol):
    async def start(self) -> None: ...

    def pumps(self, out: _Channels, stdout: bool, stderr: bool) -> list[Coroutine[Any, Any, None]]: ...

    async def write_stdin(self, data: bytes) -> None: ...

    def close_stdin(self) -> None: ...

    def resize(self, width: int, height: int) -> None: ...

    async def wait(self) -> int: ...

    def kill(self) -> None: ...


def _exit_code(rc: int) -> int:
    return 128 - rc if rc < 0 else rc  # killed by a signal: 128 + its number, as a shell says


class _PipeExec:
    def __init__(self, argv: list[str], env: dict[str, str], cwd: str | None, stdin: bool) -> None:
        self.argv, self.env, self.cwd, self.stdin = argv, env, cwd, stdin
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        pipe, null = asyncio.subprocess.PIPE, asyncio.subprocess.DEVNULL
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=pipe if self.stdin else null,
            stdout=pipe,
            stderr=pipe,
            env=self.env,
            cwd=self.cwd,
            start_new_session=True,
        )

    def pumps(self, out: _Channels, stdout: bool, stderr: bool) -> list[Coroutine[Any, Any, None]]:
        assert self.proc is not None and self.proc.stdout is not None and self.proc.stderr is not None
        return [
            _pump(self.proc.stdout.read, out, STDOUT if stdout else None),
            _pump(self.proc.stderr.read, out, STDERR if stderr else None),
        ]

    async def write_stdin(self, data: bytes) -> None:
        if self.proc is not None and self.proc.stdin is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.write(data)
            with contextlib.suppress(ConnectionResetError, BrokenPipeError):
                await self.proc.stdin.drain()

    def close_stdin(self) -> None:
        if self.proc is not None and self.proc.stdin is not None:
            self.proc.stdin.close()

    def resize(self, width: int, height: int) -> None:
        pass  # no terminal without tty

    async def wait(self) -> int:
        assert self.proc is not None
        return _exit_code(await self.proc.wait())

    def kill(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)


async def _pump(read: Callable[[int], Awaitable[bytes]], out: _Channels, channel: int | None) -> None:
    """Copy a stream until its end (discarding it when the client did not ask for it)."""
    while True:
        chunk = await read(65536)
        if not chunk:
            return
        if channel is not None:
            await out.send(channel, chunk)


class _TtyExec:
    def __init__(self, argv: list[str], env: dict[str, str], cwd: str | None) -> None:
        self.argv, self.env, self.cwd = argv, env, cwd
        self.proc: asyncio.subprocess.Process | None = None
        # open from the start: the first size and early input reach the terminal before the command
        self.master, self.slave = pty.openpty()
        os.set_blocking(self.master, False)
        self.sized = asyncio.Event()

    async def start(self) -> None:
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=self.slave,
                stdout=self.slave,
                stderr=self.slave,
                env={**self.env, "TERM": self.env.get("TERM", "xterm")},
                cwd=self.cwd,
                start_new_session=True,
                # the pty becomes the new session's controlling terminal (setsid runs first)
                preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
            )
        finally:
            os.close(self.slave)
            self.slave = -1

    def pumps(self, out: _Channels, stdout: bool, stderr: bool) -> list[Coroutine[Any, Any, None]]:
        return [self._pump(out if stdout else None)]

    async def _pump(self, out: _Channels | None) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[bytes] = asyncio.Queue()

        def readable() -> None:
            try:
                data = os.read(self.master, 65536)
            except BlockingIOError:
                return
            except OSError:  # EIO: every process holding the terminal has ended
                data = b""
            if not data:
                loop.remove_reader(self.master)
            queue.put_nowait(data)

        loop.add_reader(self.master, readable)
        try:
            while chunk := await queue.get():
                if out is not None:
                    await out.send(STDOUT, chunk)
        finally:
            loop.remove_reader(self.master)

    async def write_stdin(self, data: bytes) -> None:
        while data and self.master >= 0:
            try:
                n = os.write(self.master, data)
            except BlockingIOError:
                await asyncio.sleep(0.01)
                continue
            except OSError:
                return
            data = data[n:]

    def close_stdin(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self.master, b"\x04")  # end of input at the terminal (^D)

    def resize(self, width: int, height: int) -> None:
        with contextlib.suppress(OSError):
            fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))
        self.sized.set()

    async def wait(self) -> int:
        assert self.proc is not None
        return _exit_code(await self.proc.wait())

    def kill(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        if self.master >= 0:
            with contextlib.suppress(OSError):
                asyncio.get_running_loop().remove_reader(self.master)
            os.close(self.master)
            self.master = -1
        if self.slave >= 0:
            os.close(self.slave)
            self.slave = -1


async def _port_forward(source: StreamSource, request: web.Request) -> web.StreamResponse:
    ns, name = request.match_info["ns"], request.match_info["pod"]
    worker = _worker(source, ns, name)
    if worker is None:
        raise web.HTTPNotFound(text="pod does not exist")
    ports: list[int] = []
    for raw in request.query.getall("port", []):
        for p in raw.split(","):
            if not p.isdigit() or not 0 < int(p) < 65536:
                raise web.HTTPBadRequest(text=f'unable to parse "{raw}" as a port')
            ports.append(int(p))
    if not ports:
        raise web.HTTPBadRequest(text='query parameter "port" is required')
    ws = web.WebSocketResponse(protocols=PORT_FORWARD_PROTOCOLS, max_msg_size=0)
    if not ws.can_prepare(request).ok:
        raise web.HTTPBadRequest(text="Upgrade request required")
    await ws.prepare(request)
    out = _Channels(ws)
    for i, port in enumerate(ports):
        for channel in (2 * i, 2 * i + 1):
            await out.send(channel, struct.pack("<H", port))
    writers: dict[int, asyncio.StreamWriter] = {}
    tasks: list[asyncio.Task[None]] = []
    for i, port in enumerate(ports):
        try:
            reader, writer = await asyncio.open_connection(worker.ip or "127.0.0.1", port)
        except OSError as e:
            why = os.strerror(e.errno).lower() if e.errno else str(e)
            address = f"{worker.ip or '127.0.0.1'}:{port}"
            await out.send(
                2 * i + 1,
                f"error forwarding port {port} to pod {name}, uid {worker.uid}: failed to connect to "
                f"{address}: dial tcp4 {address}: connect: {why}".encode(),
            )
            continue
        writers[2 * i] = writer
        tasks.append(asyncio.create_task(_pump(reader.read, out, 2 * i)))
    try:
        if tasks:
            client = asyncio.create_task(_forward_client(ws, writers))
            await asyncio.wait([client, *tasks], return_when=asyncio.FIRST_COMPLETED)
            client.cancel()
    finally:
        for t in tasks:
            t.cancel()
        for w in writers.values():
            w.close()
        await ws.close()
    return ws


async def _forward_client(ws: web.WebSocketResponse, writers: dict[int, asyncio.StreamWriter]) -> None:
    async for msg in ws:
        raw = _payload(msg)
        if raw and raw[0] in writers:
            w = writers[raw[0]]
            w.write(raw[1:])
            with contextlib.suppress(ConnectionResetError, BrokenPipeError):
                await w.drain()
