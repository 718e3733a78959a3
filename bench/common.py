"""What every scenario shares: the machine description, percentiles, the one JSON line each scenario
prints, SeaweedFS, a coordinator process, rank processes with the env contract, and the Ray peer's
interpreter (``.venv-bench``).

Every process a scenario starts is stopped by the scenario itself, by pid, also when it fails.
"""

from __future__ import annotations

import argparse
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

from tests.support.job import CoordinatorProcess, LocalJob

# REPO_ROOT and stop_process are re-exported: the scenarios take them from here.
from tests.support.processes import REPO_ROOT as REPO_ROOT
from tests.support.processes import clean_env, free_port
from tests.support.processes import stop_process as stop_process


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
def base_env() -> dict[str, str]:
    """A child's environment: no rank contract of our own, and the repository importable."""
    env = clean_env()
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
class Job(LocalJob):
    """One job's coordinator and ranks, as the operator's pods run them, on 127.0.0.1."""

    name: str = field(default_factory=lambda: f"bench-{uuid.uuid4().hex[:8]}")
    namespace: str = "bench"
    final_wait_seconds: float = 120
    extra_env: dict[str, str] = field(default_factory=dict)

    def base_env(self) -> dict[str, str]:
        return {**base_env(), **self.extra_env}

    def start_coordinator(self, attempt: int = 0, *extra_args: str) -> CoordinatorProcess:
        return self.coordinator_process(
            attempt,
            status_path=self.directory / f"status-{attempt}.json",
            log_path=self.directory / f"coordinator-{attempt}.log",
            extra_args=extra_args,
        )

    def start_ranks(
        self, coordinator: CoordinatorProcess, args: Sequence[str], attempt: int = 0
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


def scenario_parser(description: str | None) -> argparse.ArgumentParser:
    """The argument parser every scenario starts from. It knows ``--no-ray``, which ``python -m
    bench`` passes to every scenario: one that did not know it refused the whole run."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray peer (BENCH_NO_RAY=1 too)")
    return parser


def with_ray() -> bool:
    """Whether to run the peer: ``--no-ray`` / BENCH_NO_RAY=1 turn it off (the smoke tests do)."""
    return "--no-ray" not in sys.argv and os.environ.get("BENCH_NO_RAY") != "1" and ray_available()
