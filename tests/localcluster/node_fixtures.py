"""Fixtures and helpers for the node agent's tests: a real LocalCluster, namespaces, waiting.

Imported explicitly by tests/localcluster/test_node_*.py and test_cluster_*.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from localcluster import LocalCluster

REPO_ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
JSON = dict[str, Any]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """One API server + node agent per test module, stopped by pid at the end."""
    c = LocalCluster(tmp_path_factory.mktemp("cluster"), root=REPO_ROOT, startup_timeout=90)
    c.start()
    try:
        yield c
    finally:
        c.stop()


class Kube:
    """A namespace of the cluster, and what tests do with it."""

    def __init__(self, cluster: LocalCluster, namespace: str) -> None:
        self.cluster = cluster
        self.ns = namespace

    def api(self, method: str, path: str, body: Any = None, content_type: str = "application/json") -> Any:
        return self.cluster.api(method, path, body, content_type)

    def create(self, obj: JSON) -> JSON:
        kind = obj["kind"]
        plural = {"Pod": "pods", "Service": "services", "Secret": "secrets", "ConfigMap": "configmaps"}[kind]
        obj.setdefault("apiVersion", "v1")
        obj.setdefault("metadata", {})["namespace"] = self.ns
        result: JSON = self.api("POST", f"/api/v1/namespaces/{self.ns}/{plural}", obj)
        return result

    def pod(self, name: str) -> JSON | None:
        try:
            result: JSON = self.api("GET", f"/api/v1/namespaces/{self.ns}/pods/{name}")
            return result
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return None
            raise

    def delete_pod(self, name: str, grace: int | None = None) -> None:
        path = f"/api/v1/namespaces/{self.ns}/pods/{name}"
        if grace is not None:
            path += f"?gracePeriodSeconds={grace}"
        with contextlib.suppress(urllib.error.HTTPError):
            self.api("DELETE", path)

    def wait_pod(self, name: str, check: Callable[[JSON], bool], timeout: float = 60, what: str = "") -> JSON:
        deadline = time.monotonic() + timeout
        pod: JSON | None = None
        while time.monotonic() < deadline:
            pod = self.pod(name)
            try:
                if pod is not None and check(pod):
                    return pod
            except (AssertionError, KeyError):
                pass  # the status is not there yet
            self.cluster.check_alive()
            time.sleep(0.1)
        status = json.dumps((pod or {}).get("status"), indent=1)
        raise AssertionError(
            f"pod {self.ns}/{name}: {what or 'condition'} not met in {timeout}s; status:\n{status}\n"
            f"node agent log:\n{self.cluster.log_tail('node')}"
        )

    def wait_phase(self, name: str, *phases: str, timeout: float = 60) -> JSON:
        return self.wait_pod(name, lambda p: phase(p) in phases, timeout, f"phase in {phases}")

    def wait_ready(self, name: str, timeout: float = 60) -> JSON:
        return self.wait_pod(name, is_ready, timeout, "Ready")

    def wait_gone(self, name: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pod(name) is None:
                return
            time.sleep(0.1)
        raise AssertionError(f"pod {self.ns}/{name} still exists after {timeout}s")

    def kubectl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        exe = shutil.which("kubectl", path=f"{Path(PY).parent}{os.pathsep}{os.environ.get('PATH', '')}")
        assert exe, "kubectl not found"
        return subprocess.run(
            [exe, "--kubeconfig", str(self.cluster.kubeconfig), "-n", self.ns, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


@pytest.fixture
def kube(cluster: LocalCluster) -> Iterator[Kube]:
    """A fresh namespace; its pods are deleted at the end (the agent stops their processes)."""
    ns = "t-" + uuid.uuid4().hex[:8]
    cluster.api(
        "POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
    )
    k = Kube(cluster, ns)
    try:
        yield k
    finally:
        with contextlib.suppress(Exception):
            pods = cluster.api("GET", f"/api/v1/namespaces/{ns}/pods")
            for p in pods.get("items") or []:
                k.delete_pod(p["metadata"]["name"], grace=0)


def phase(pod: JSON) -> str:
    return str((pod.get("status") or {}).get("phase", ""))


def is_ready(pod: JSON) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


def cstatus(pod: JSON, name: str, init: bool = False) -> JSON:
    key = "initContainerStatuses" if init else "containerStatuses"
    for s in (pod.get("status") or {}).get(key) or []:
        if s["name"] == name:
            return dict(s)
    raise AssertionError(f"no status for container {name}: {json.dumps(pod.get('status'))}")


def container_pid(pod: JSON, name: str) -> int:
    cid = str(cstatus(pod, name).get("containerID", ""))
    assert cid.startswith("local://"), cid
    return int(cid.removeprefix("local://"))


def pid_alive(pid: int) -> bool:
    from localcluster.cluster import pid_alive as alive

    return alive(pid)


def py(code: str) -> list[str]:
    """A container command running Python code (`python` is the project's interpreter)."""
    return ["python", "-c", code]


def pod(name: str, containers: list[JSON], **spec: Any) -> JSON:
    labels = spec.pop("labels", {})
    return {
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": containers, "terminationGracePeriodSeconds": 5, **spec},
    }


def out_volume(path: Path) -> JSON:
    """A hostPath volume: how a test reads what a pod wrote."""
    return {"name": "out", "hostPath": {"path": str(path), "type": "DirectoryOrCreate"}}
