"""The whole product on one machine: the local cluster, SeaweedFS and the operator.

`trainjob local up`, `make demo` and the end-to-end tests start exactly this, so what the tests
prove is what a user runs. Every process is started in its own session and stopped by pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from trainjob_operator.api import constants
from trainjob_operator.api.crd import trainjob_crd
from trainjob_operator.local.ports import free_port
from trainjob_operator.local.seaweedfs import SeaweedFS

if TYPE_CHECKING:
    from localcluster import LocalCluster

# The Secret `trainjob local up` creates in each namespace it prepares; the examples name it.
CREDENTIALS_SECRET = "trainjob-s3"  # noqa: S105 - a name, not a value
INFO_FILE = "stack.json"


class StackError(RuntimeError):
    """A part of the local stack did not start; the message carries the tail of its log."""


@dataclass
class LocalStack:
    """Start with `start()` (or `with`), stop with `stop()`; `kubeconfig` is what kubectl needs."""

    directory: Path
    root: Path = field(default_factory=Path.cwd)
    namespaces: tuple[str, ...] = ("default",)
    with_operator: bool = True
    operator_args: tuple[str, ...] = ()
    keep: bool = True
    # "RBAC": the API server enforces RBAC (the operator here still uses the admin kubeconfig)
    authorization: str = "AlwaysAllow"
    # The API server keeps its objects there, so it can be restarted (None: in memory only).
    state_file: Path | None = None
    # Images the node cannot pull (shell patterns), besides those of `.invalid` registries.
    unpullable_images: tuple[str, ...] = ()
    # More LocalCluster arguments (nodes, node_capacity, node_specs, node_monitor_grace_seconds, ...).
    cluster_options: dict[str, Any] = field(default_factory=dict)
    cluster: LocalCluster | None = None
    seaweedfs: SeaweedFS | None = None
    operator: subprocess.Popen[bytes] | None = None
    # The operator's /healthz and Prometheus /metrics ports, picked free at start.
    liveness_port: int = 0
    metrics_port: int = 0
    # `trainjob dashboard` for every namespace (`trainjob local up`, `make demo`); its URL once serving.
    with_dashboard: bool = False
    dashboard: subprocess.Popen[bytes] | None = None
    dashboard_url: str | None = None

    @property
    def kubeconfig(self) -> Path:
        assert self.cluster is not None, "the stack is not started"
        return self.cluster.kubeconfig

    @property
    def operator_log(self) -> Path:
        return self.directory / "operator.log"

    def start(self) -> Self:
        # Imported here: `read_stack_info` (the CLI's) must work where the local extra is not installed.
        from localcluster import LocalCluster

        self.directory = self.directory.resolve()
        self.directory.mkdir(parents=True, exist_ok=True)
        try:
            self.cluster = LocalCluster(
                self.directory / "cluster",
                root=self.root,
                keep=True,
                authorization=self.authorization,
                state_file=self.state_file,
                unpullable_images=self.unpullable_images,
                **self.cluster_options,
            ).start()
            self.seaweedfs = SeaweedFS(self.directory / "seaweedfs").start()
            self.install_crd()
            for namespace in self.namespaces:
                self.prepare_namespace(namespace)
            if self.with_operator:
                self.start_operator()
            if self.with_dashboard:
                self.start_dashboard()
            self._write_info()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the dashboard, the operator, the cluster (and so every pod), then SeaweedFS. Idempotent."""
        _stop_group(self.dashboard, signal.SIGTERM, 15.0)
        self.dashboard = None
        self.stop_operator()
        if self.cluster is not None:
            self.cluster.stop()
        if self.seaweedfs is not None:
            self.seaweedfs.stop()
        with contextlib.suppress(OSError):
            (self.directory / INFO_FILE).unlink()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ---- the parts --------------------------------------------------------------------------

    def api(self, method: str, path: str, body: Any = None, content_type: str = "application/json") -> Any:
        assert self.cluster is not None
        return self.cluster.api(method, path, body, content_type)

    def install_crd(self, timeout: float = 30.0) -> None:
        crd = trainjob_crd()
        with contextlib.suppress(urllib.error.HTTPError):  # 409: installed already
            self.api("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
        deadline = time.monotonic() + timeout
        path = f"/apis/{constants.GROUP}/{constants.VERSION}/{constants.PLURAL}"
        while time.monotonic() < deadline:
            with contextlib.suppress(urllib.error.HTTPError):
                self.api("GET", path)
                return
            time.sleep(0.1)
        raise StackError(f"the TrainJob CRD was not served within {timeout}s")

    def prepare_namespace(self, namespace: str) -> None:
        """The namespace and the S3 credentials Secret the examples name."""
        assert self.seaweedfs is not None
        with contextlib.suppress(urllib.error.HTTPError):
            self.api("POST", "/api/v1/namespaces", {"metadata": {"name": namespace}})
        secret = {
            "metadata": {"name": CREDENTIALS_SECRET, "namespace": namespace},
            "type": "Opaque",
            "stringData": {
                constants.AWS_ACCESS_KEY_ID: self.seaweedfs.access_key,
                constants.AWS_SECRET_ACCESS_KEY: self.seaweedfs.secret_key,
            },
        }
        with contextlib.suppress(urllib.error.HTTPError):
            self.api("POST", f"/api/v1/namespaces/{namespace}/secrets", secret)

    def start_operator(self) -> None:
        from localcluster.lifetime import die_with_parent

        assert self.seaweedfs is not None
        self.liveness_port, self.metrics_port = free_port(), free_port()
        args = [
            sys.executable,
            "-m",
            "trainjob_operator",
            "operator",
            "--kubeconfig",
            str(self.kubeconfig),
            "--default-storage-endpoint",
            self.seaweedfs.endpoint,
            "--per-job-master-port",
            # The local cluster serves plain HTTP: the coordinators the operator starts are told so.
            "--api-plain-http",
            "--liveness-port",
            str(self.liveness_port),
            "--metrics-port",
            str(self.metrics_port),
            *self.operator_args,
        ]
        with open(self.operator_log, "ab") as log:
            self.operator = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.root,
                start_new_session=True,
                # Killed hard, `up` must not leave its operator running (localcluster/lifetime.py).
                preexec_fn=die_with_parent(),
            )

    def stop_operator(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 15.0) -> None:
        _stop_group(self.operator, sig, timeout)
        self.operator = None

    def start_dashboard(self, timeout: float = 60.0) -> None:
        """`trainjob dashboard --all-namespaces` on a free port; returns once it serves."""
        from localcluster.lifetime import die_with_parent

        ready = self.directory / "dashboard.url"
        with contextlib.suppress(OSError):
            ready.unlink()
        args = [
            sys.executable,
            "-m",
            "trainjob_operator",
            "dashboard",
            "--kubeconfig",
            str(self.kubeconfig),
            "--all-namespaces",
            "--port",
            str(free_port()),
            "--ready-file",
            str(ready),
        ]
        with open(self.directory / "dashboard.log", "ab") as log:
            self.dashboard = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent(),  # it stops with its owner (localcluster/lifetime.py)
            )
        deadline = time.monotonic() + timeout
        while not (ready.exists() and ready.read_text().strip()):
            if self.dashboard.poll() is not None or time.monotonic() > deadline:
                tail = (self.directory / "dashboard.log").read_text(errors="replace")[-2000:]
                raise StackError(f"the dashboard did not start:\n{tail}")
            time.sleep(0.1)
        self.dashboard_url = ready.read_text().strip()

    def _write_info(self) -> None:
        assert self.cluster is not None and self.seaweedfs is not None
        info = {
            "ownerPid": os.getpid(),
            "kubeconfig": str(self.kubeconfig),
            "s3Endpoint": self.seaweedfs.endpoint,
            "bucket": self.seaweedfs.bucket,
            "pids": {
                **self.cluster.pids,
                "seaweedfs": self.seaweedfs.process.pid if self.seaweedfs.process else None,
                "operator": self.operator.pid if self.operator else None,
                "dashboard": self.dashboard.pid if self.dashboard else None,
            },
            "operatorMetrics": f"http://127.0.0.1:{self.metrics_port}/metrics" if self.operator else None,
            "dashboard": self.dashboard_url,
        }
        (self.directory / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")


def _stop_group(process: subprocess.Popen[bytes] | None, sig: signal.Signals, timeout: float) -> None:
    """Signal a process started in its own session, then SIGKILL it after `timeout`."""
    if process is None or process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def read_stack_info(directory: Path) -> dict[str, Any] | None:
    """What a running `trainjob local up` wrote about itself; None when none runs there."""
    try:
        info = json.loads((directory / INFO_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict):
        return None
    try:
        os.kill(int(info.get("ownerPid") or 0), 0)
    except (ProcessLookupError, ValueError, OverflowError):
        return None  # its owner died without cleaning up: nothing runs
    except PermissionError:
        pass  # alive, another user's
    return info
