"""A job as the operator's pods run it, without Kubernetes: a ``trainjob coordinator`` process and
the environment each rank gets (the contract in README.md, "The worker SDK"), on 127.0.0.1 and
free ports. :class:`LocalJob` is that job; the integration tests' :class:`JobRunner` and the
benchmarks' ``bench.common.Job`` are kinds of it.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.processes import REPO_ROOT, clean_env, free_port, wait_until


@dataclass
class CoordinatorProcess:
    """A running ``trainjob coordinator``: its URL, token, file status sink and log."""

    process: subprocess.Popen[bytes]
    url: str
    port: int
    token: str
    status_path: Path
    log_path: Path

    def request(self, method: str, path: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        request = urllib.request.Request(  # noqa: S310 - http on loopback
            f"{self.url}{path}",
            data=None if payload is None else json.dumps(payload).encode(),
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            body: dict[str, Any] = json.loads(response.read())
        return body

    def state(self) -> dict[str, Any]:
        return self.request("GET", "/v1/state")

    def wait_for_state(
        self, what: str, predicate: Callable[[dict[str, Any]], bool], timeout: float = 60
    ) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            state = self.state()
            return state if predicate(state) else None

        return wait_until(what, probe, timeout)

    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = json.loads(self.status_path.read_text())
        return status

    def stop(self) -> None:
        """SIGTERM: the coordinator lets a commit in flight finish and flushes the status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        assert self.process.returncode == 0, self.log_path.read_text()[-3000:]

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()


def start_coordinator(
    *,
    job: str,
    namespace: str,
    world_size: int,
    attempt: int,
    storage_uri: str,
    token: str,
    token_file: Path,
    status_path: Path,
    log_path: Path,
    env: dict[str, str],
    port: int | None = None,
    extra_args: Sequence[str] = (),
) -> CoordinatorProcess:
    """Start ``trainjob coordinator`` with a file status sink, its output appended to ``log_path``;
    return once it listens (an AssertionError with its log if it exits or does not listen within
    60 s). The caller stops it (by pid) when done."""
    port = port or free_port()
    token_file.write_text(token)
    args = [
        sys.executable, "-m", "trainjob_operator.cli", "coordinator",
        "--job", job, "--namespace", namespace,
        "--world-size", str(world_size), "--attempt", str(attempt),
        "--storage", storage_uri, "--host", "127.0.0.1", "--port", str(port),
        "--token-file", str(token_file), "--status-sink", f"file:{status_path}", *extra_args,
    ]  # fmt: skip
    with open(log_path, "ab") as log:
        process = subprocess.Popen(args, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)

    def listening() -> bool:
        if process.poll() is not None:
            tail = log_path.read_text()[-3000:]
            raise AssertionError(f"coordinator exited with {process.returncode}: {tail}")
        return "coordinator listening on http://" in log_path.read_text()

    try:
        wait_until("the coordinator to listen", listening, timeout=60, interval=0.05)
    except BaseException:
        process.kill()
        process.wait()
        raise
    return CoordinatorProcess(process, f"http://127.0.0.1:{port}", port, token, status_path, log_path)


@dataclass
class LocalJob:
    """One job's identity (name, namespace, token, storage) and the processes started for it on
    127.0.0.1: its coordinator, and the environment the operator would give each of its ranks.
    Whoever uses it stops ``processes`` (by pid) at the end, also on failure."""

    directory: Path
    storage_uri: str
    world_size: int
    name: str = field(default_factory=lambda: f"job-{uuid.uuid4().hex[:8]}")
    namespace: str = "ml"
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    # TRAINJOB_FINAL_WAIT_SECONDS: how long a rank's last call waits for the attempt to settle.
    final_wait_seconds: float = 60

    def base_env(self) -> dict[str, str]:
        return clean_env()

    def coordinator_process(
        self,
        attempt: int,
        *,
        status_path: Path,
        log_path: Path,
        port: int | None = None,
        extra_args: Sequence[str] = (),
    ) -> CoordinatorProcess:
        coordinator = start_coordinator(
            job=self.name,
            namespace=self.namespace,
            world_size=self.world_size,
            attempt=attempt,
            storage_uri=self.storage_uri,
            token=self.token,
            token_file=self.directory / "token",
            status_path=status_path,
            log_path=log_path,
            env=self.base_env(),
            port=port,
            extra_args=extra_args,
        )
        self.processes.append(coordinator.process)
        return coordinator

    def rank_env(
        self, rank: int, attempt: int, coordinator: CoordinatorProcess, master_port: int
    ) -> dict[str, str]:
        """The variables the operator gives rank ``rank`` of a single-node job (one process per
        rank, gloo over loopback), on top of :meth:`base_env`."""
        return {
            **self.base_env(),
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
            "TRAINJOB_FINAL_WAIT_SECONDS": f"{self.final_wait_seconds:g}",
        }


@dataclass
class JobRunner(LocalJob):
    """A job whose coordinators and ranks an integration test starts, each logging to a file of
    its own; the ``job_runner`` fixture kills every process it started when the test ends."""

    logs: dict[str, Path] = field(default_factory=dict)

    @property
    def tmp_path(self) -> Path:
        return self.directory

    @property
    def job(self) -> str:
        return self.name

    def _spawn(
        self, name: str, args: Sequence[str], env: dict[str, str], **kwargs: Any
    ) -> subprocess.Popen[bytes]:
        log_path = self.directory / f"{name}.log"
        self.logs[name] = log_path
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                list(args), cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, **kwargs
            )
        self.processes.append(process)
        return process

    def start_coordinator(
        self,
        attempt: int,
        *,
        port: int | None = None,
        num_to_keep: int | None = None,
        score_attribute: str | None = None,
        score_order: str = "min",
    ) -> CoordinatorProcess:
        name = f"coordinator-{attempt}-{len(self.processes)}"
        args = ["--status-interval", "0.2"]
        if num_to_keep is not None:
            args += ["--num-to-keep", str(num_to_keep)]
        if score_attribute is not None:
            args += ["--score-attribute", score_attribute, "--score-order", score_order]
        self.logs[name] = self.directory / f"{name}.log"
        return self.coordinator_process(
            attempt,
            status_path=self.directory / "status.json",
            log_path=self.logs[name],
            port=port,
            extra_args=args,
        )

    def worker_env(
        self, rank: int, attempt: int, coordinator: CoordinatorProcess, master_port: int
    ) -> dict[str, str]:
        return {
            **self.rank_env(rank, attempt, coordinator, master_port),
            "TRAINJOB_HTTP_TIMEOUT_SECONDS": "3",
        }

    def start_workers(
        self,
        attempt: int,
        coordinator: CoordinatorProcess,
        config: dict[str, Any],
        *,
        env: dict[str, str] | None = None,
        args: Sequence[str] = ("-m", "examples.digits.train"),
    ) -> list[subprocess.Popen[bytes]]:
        master_port = free_port()
        workers = []
        for rank in range(self.world_size):
            worker_env = {
                **self.worker_env(rank, attempt, coordinator, master_port),
                "TRAINJOB_CONFIG": json.dumps(config),
                **(env or {}),
            }
            workers.append(self._spawn(f"rank-{rank}-attempt-{attempt}", [sys.executable, *args], worker_env))
        return workers

    def log(self, name: str) -> str:
        return self.logs[name].read_text()

    def wait(self, workers: Sequence[subprocess.Popen[bytes]], timeout: float = 120) -> list[int]:
        deadline = time.monotonic() + timeout
        for worker in workers:
            try:
                worker.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise AssertionError(f"workers still running after {timeout}s:\n{self.tails()}") from None
        return [worker.returncode for worker in workers]

    def tails(self) -> str:
        return "\n".join(f"--- {name}\n{path.read_text()[-2000:]}" for name, path in self.logs.items())

    def kill(self, processes: Sequence[subprocess.Popen[bytes]]) -> None:
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.wait()

    def stop_everything(self) -> None:
        self.kill(self.processes)
