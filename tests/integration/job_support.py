"""Run a job the way the operator's pods do, without Kubernetes: a `trainjob coordinator` process
and one process per rank with the env contract (DESIGN §4), on 127.0.0.1 and free ports.

Every process is started through :class:`JobRunner`; the ``job_runner`` fixture stops them all
(by pid) at the end of the test, whether it passed or not.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from trainjob_operator.local.seaweedfs import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:  # examples/ is a directory of programs, not an installed package
    sys.path.insert(0, str(REPO_ROOT))
CONTRACT_VARIABLES = (
    "WORLD_SIZE",
    "RANK",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "NODE_RANK",
    "MASTER_ADDR",
    "MASTER_PORT",
)
T = TypeVar("T")


def wait_until(what: str, probe: Callable[[], T | None], timeout: float = 60.0, interval: float = 0.1) -> T:
    """``probe()``'s first truthy result; fails the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


@dataclass
class CoordinatorProcess:
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


@dataclass
class JobRunner:
    """One job (name, namespace, storage) whose coordinators and ranks a test starts and stops."""

    tmp_path: Path
    storage_uri: str
    world_size: int
    job: str = field(default_factory=lambda: f"job-{uuid.uuid4().hex[:8]}")
    namespace: str = "ml"
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: dict[str, Path] = field(default_factory=dict)

    def _spawn(
        self, name: str, args: Sequence[str], env: dict[str, str], **kwargs: Any
    ) -> subprocess.Popen[bytes]:
        log_path = self.tmp_path / f"{name}.log"
        self.logs[name] = log_path
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                list(args), cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, **kwargs
            )
        self.processes.append(process)
        return process

    def base_env(self) -> dict[str, str]:
        return {
            **{
                k: v
                for k, v in os.environ.items()
                if not k.startswith("TRAINJOB_") and k not in CONTRACT_VARIABLES
            },
            "PYTHONUNBUFFERED": "1",
            "OMP_NUM_THREADS": "1",
        }

    def start_coordinator(
        self,
        attempt: int,
        *,
        port: int | None = None,
        num_to_keep: int | None = None,
        score_attribute: str | None = None,
        score_order: str = "min",
    ) -> CoordinatorProcess:
        port = port or free_port()
        token_file = self.tmp_path / "token"
        token_file.write_text(self.token)
        status_path = self.tmp_path / "status.json"
        name = f"coordinator-{attempt}-{len(self.processes)}"
        args = [
            sys.executable, "-m", "trainjob_operator.cli", "coordinator",
            "--job", self.job, "--namespace", self.namespace,
            "--world-size", str(self.world_size), "--attempt", str(attempt),
            "--storage", self.storage_uri, "--host", "127.0.0.1", "--port", str(port),
            "--token-file", str(token_file), "--status-sink", f"file:{status_path}",
            "--status-interval", "0.2",
        ]  # fmt: skip
        if num_to_keep is not None:
            args += ["--num-to-keep", str(num_to_keep)]
        if score_attribute is not None:
            args += ["--score-attribute", score_attribute, "--score-order", score_order]
        process = self._spawn(name, args, self.base_env())
        log_path = self.logs[name]

        def listening() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"coordinator exited with {process.returncode}: {log_path.read_text()}")
            return "coordinator listening on http://" in log_path.read_text()

        wait_until("the coordinator to listen", listening, timeout=60)
        return CoordinatorProcess(
            process, f"http://127.0.0.1:{port}", port, self.token, status_path, log_path
        )

    def worker_env(
        self, rank: int, attempt: int, coordinator: CoordinatorProcess, master_port: int
    ) -> dict[str, str]:
        return {
            **self.base_env(),
            "TRAINJOB_NAME": self.job,
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
            "TRAINJOB_FINAL_WAIT_SECONDS": "60",
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
