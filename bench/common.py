"""What every scenario shares: the machine description, percentiles, the one JSON line each scenario
prints, SeaweedFS, a coordinator process, rank processes with the env contract, and the Ray peer's
interpreter (``.venv-bench``).

Every process a scenario starts is stopped by the scenario itself, by pid, also when it fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


# A scenario stopped with SIGTERM (a timeout in the smoke tests, Ctrl-C's cousin in CI) unwinds its
# `with` blocks, so the clusters, servers and ranks it started are stopped too.
if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)

RAY_PYTHON = REPO_ROOT / ".venv-bench" / "bin" / "python"
MiB = 1024 * 1024


# -- the machine --------------------------------------------------------------------------------
def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _version(module: str, python: Path | None = None) -> str | None:
    if python is None:
        try:
            imported = __import__(module)
        except ImportError:
            return None
        return str(getattr(imported, "__version__", "?"))
    if not python.exists():
        return None
    result = subprocess.run(
        [str(python), "-c", f"import {module}; print({module}.__version__)"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return result.stdout.strip() or None if result.returncode == 0 else None


_MACHINE: dict[str, Any] | None = None


def machine() -> dict[str, Any]:
    """Cores, CPU model, Python, torch and ray versions (ray: the peer's venv, if made)."""
    global _MACHINE
    if _MACHINE is None:
        _MACHINE = {
            "cores": os.cpu_count(),
            "cpu": _cpu_model(),
            "python": platform.python_version(),
            "torch": _version("torch"),
            "ray": _version("ray", RAY_PYTHON),
        }
    return _MACHINE


# -- numbers ------------------------------------------------------------------------------------
def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear interpolation; nan for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summary_ms(seconds: Sequence[float]) -> dict[str, float]:
    """p50/p99/mean/max in milliseconds of durations given in seconds."""
    ms = [s * 1000 for s in seconds]
    return {
        "n": len(ms),
        "p50_ms": round(percentile(ms, 50), 4),
        "p99_ms": round(percentile(ms, 99), 4),
        "mean_ms": round(statistics.fmean(ms), 4) if ms else float("nan"),
        "max_ms": round(max(ms), 4) if ms else float("nan"),
    }


def ratio(peer: float | None, ours: float | None) -> float | None:
    """How many times ``ours`` is smaller than ``peer`` (None when either is missing or zero)."""
    if peer is None or ours is None or ours <= 0:
        return None
    return round(peer / ours, 2)


def emit(
    scenario: str,
    parameters: dict[str, Any],
    ours: dict[str, Any],
    peer: dict[str, Any] | None,
    ratio_value: dict[str, Any] | float | None,
    goal: dict[str, Any],
    **extra: Any,
) -> dict[str, Any]:
    """Print the scenario's one JSON line (and return it)."""
    line = {
        "scenario": scenario,
        "parameters": parameters,
        "ours": ours,
        "peer": peer,
        "ratio": ratio_value,
        "goal": goal,
        **extra,
        "machine": machine(),
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    print(json.dumps(line), flush=True)
    return line


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# -- processes ----------------------------------------------------------------------------------
def free_port() -> int:
    from trainjob_operator.local.seaweedfs import free_port as _free_port

    return _free_port()


def stop_process(process: subprocess.Popen[Any], sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(sig)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def base_env() -> dict[str, str]:
    skip = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINJOB_") and k not in skip}
    env.update({"PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"})
    paths = [str(REPO_ROOT), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    return env


@contextlib.contextmanager
def seaweedfs(directory: Path) -> Iterator[Any]:
    from trainjob_operator.local.seaweedfs import SeaweedFS

    server = SeaweedFS(directory / "seaweedfs").start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def workdir(prefix: str) -> Iterator[Path]:
    """A temporary directory (under $BENCH_TMP if set: /tmp may be small or tmpfs)."""
    with tempfile.TemporaryDirectory(prefix=f"bench-{prefix}-", dir=os.environ.get("BENCH_TMP")) as d:
        yield Path(d)


@dataclass
class Coordinator:
    process: subprocess.Popen[bytes]
    url: str
    token: str
    status_path: Path
    log_path: Path

    def state(self) -> dict[str, Any]:
        import urllib.request

        request = urllib.request.Request(  # noqa: S310 - loopback
            f"{self.url}/v1/state", headers={"Authorization": f"Bearer {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            state: dict[str, Any] = json.loads(response.read())
        return state

    def stop(self) -> None:
        stop_process(self.process)


@dataclass
class Job:
    """One job's coordinator and ranks, as the operator's pods run them, on 127.0.0.1."""

    directory: Path
    storage_uri: str
    world_size: int
    extra_env: dict[str, str] = field(default_factory=dict)
    name: str = field(default_factory=lambda: f"bench-{uuid.uuid4().hex[:8]}")
    namespace: str = "bench"
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start_coordinator(self, attempt: int = 0, *extra_args: str) -> Coordinator:
        port = free_port()
        token_file = self.directory / "token"
        token_file.write_text(self.token)
        status_path = self.directory / f"status-{attempt}.json"
        log_path = self.directory / f"coordinator-{attempt}.log"
        args = [
            sys.executable, "-m", "trainjob_operator.cli", "coordinator",
            "--job", self.name, "--namespace", self.namespace,
            "--world-size", str(self.world_size), "--attempt", str(attempt),
            "--storage", self.storage_uri, "--host", "127.0.0.1", "--port", str(port),
            "--token-file", str(token_file), "--status-sink", f"file:{status_path}", *extra_args,
        ]  # fmt: skip
        with open(log_path, "ab") as log_file:
            process = subprocess.Popen(
                args,
                cwd=REPO_ROOT,
                env={**base_env(), **self.extra_env},
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        self.processes.append(process)
        deadline = time.monotonic() + 60
        while "coordinator listening on http://" not in log_path.read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the coordinator did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.05)
        return Coordinator(process, f"http://127.0.0.1:{port}", self.token, status_path, log_path)

    def rank_env(self, rank: int, attempt: int, coordinator: Coordinator, master_port: int) -> dict[str, str]:
        return {
            **base_env(),
            **self.extra_env,
            "TRAINJOB_NAME": self.name,
            "TRAINJOB_NAMESPACE": self.namespace,
            "TRAINJOB_ATTEMPT": str(attempt),
            "WORLD_SIZE": str(self.world_size),
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "LOCAL_WORLD_SIZE": str(self.world_size),
            "NODE_RANK": "0",
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(master_port),
            "GLOO_SOCKET_IFNAME": "lo",
            "TRAINJOB_COORDINATOR_URL": coordinator.url,
            "TRAINJOB_REPORT_TOKEN": self.token,
            "TRAINJOB_STORAGE_URI": self.storage_uri,
            "TRAINJOB_FINAL_WAIT_SECONDS": "120",
        }

    def start_ranks(
        self, coordinator: Coordinator, args: Sequence[str], attempt: int = 0
    ) -> list[subprocess.Popen[bytes]]:
        master_port = free_port()
        ranks = []
        for rank in range(self.world_size):
            process = subprocess.Popen(
                [sys.executable, *args],
                cwd=REPO_ROOT,
                env=self.rank_env(rank, attempt, coordinator, master_port),
                stdout=subprocess.PIPE,
                stderr=open(self.directory / f"rank-{rank}-{attempt}.log", "ab"),  # noqa: SIM115
            )
            ranks.append(process)
            self.processes.append(process)
        return ranks

    def stop(self) -> None:
        for process in reversed(self.processes):
            stop_process(process, timeout=10)


def collect_json(processes: Sequence[subprocess.Popen[bytes]], timeout: float) -> list[dict[str, Any]]:
    """The last JSON line each process prints on stdout; fails when one exits non-zero."""
    results = []
    deadline = time.monotonic() + timeout
    for process in processes:
        try:
            out, _ = process.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise RuntimeError(f"process {process.args!r} still running after {timeout}s") from None
        if process.returncode != 0:
            raise RuntimeError(f"process {process.args!r} exited {process.returncode}")
        results.append(last_json_line(out.decode()))
    return results


def last_json_line(text: str) -> dict[str, Any]:
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            parsed: dict[str, Any] = json.loads(line)
            return parsed
    raise RuntimeError(f"no JSON line in output:\n{text[-2000:]}")


# -- the Ray peer -------------------------------------------------------------------------------
def ray_available() -> bool:
    return RAY_PYTHON.exists() and machine()["ray"] is not None


def run_peer(
    script: str, params: dict[str, Any], env: dict[str, str] | None = None, timeout: float = 600
) -> dict[str, Any]:
    """Run ``bench/peer/<script>`` under the Ray venv's interpreter; its last JSON line."""
    peer_env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "VIRTUAL_ENV") and not k.startswith("TRAINJOB_")
    }
    peer_env.update(
        {"PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "RAY_USAGE_STATS_ENABLED": "0", **(env or {})}
    )
    with workdir("ray") as tmp:
        peer_env["RAY_TMPDIR"] = str(tmp)
        result = subprocess.run(
            [str(RAY_PYTHON), str(REPO_ROOT / "bench" / "peer" / script), json.dumps(params)],
            cwd=tmp,
            env=peer_env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    if result.returncode != 0:
        raise RuntimeError(f"peer {script} exited {result.returncode}:\n{result.stderr[-4000:]}")
    return last_json_line(result.stdout)


def with_ray() -> bool:
    """Whether to run the peer: ``--no-ray`` / BENCH_NO_RAY=1 turn it off (the smoke tests do)."""
    return "--no-ray" not in sys.argv and os.environ.get("BENCH_NO_RAY") != "1" and ray_available()
