"""The multi-node local stack of the bad-days and disruption scenarios, and what they read off it:
which node a rank runs on, when the job's status first says something, and the checksums of every
committed checkpoint file (to prove a fault changed nothing committed)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from tests.support.kube import Cluster
from tests.support.processes import REPO_ROOT, wait_until
from trainjob_operator.local.stack import LocalStack
from worker_sdk.protocol import MANIFEST_NAME
from worker_sdk.storage import open_storage

T = TypeVar("T")

# Two plain nodes and one with a GPU, which the scenarios stop at start so a GPU can "join".
CPU_NODES = ("node-a", "node-b")
GPU_NODE = "gpu-1"
# The node controller marks a silent node Unknown after 2 s (Kubernetes: 50 s); the taint manager
# would evict its pods after 30 s more, long after the operator's own nodeLossSeconds decided.
NODE_MONITOR_GRACE_SECONDS = 2.0
DEFAULT_TOLERATION_SECONDS = 30


@contextmanager
def multinode_stack(directory: Path) -> Iterator[LocalStack]:
    """The whole product on three nodes, the GPU node already lost (NotReady, unreachable)."""
    options: dict[str, Any] = {
        "node_specs": [
            {"name": CPU_NODES[0]},
            {"name": CPU_NODES[1]},
            {"name": GPU_NODE, "capacity": {"nvidia.com/gpu": "1"}, "labels": {"accelerator": "test-gpu"}},
        ],
        "node_monitor_grace_seconds": NODE_MONITOR_GRACE_SECONDS,
        "default_toleration_seconds": DEFAULT_TOLERATION_SECONDS,
    }
    with LocalStack(directory, root=REPO_ROOT, namespaces=(), cluster_options=options) as stack:
        assert stack.cluster is not None
        stack.cluster.stop_node(GPU_NODE)
        wait_until(f"node {GPU_NODE} to be NotReady", lambda: node_ready(stack, GPU_NODE) is False, 30)
        yield stack


def node_ready(stack: LocalStack, name: str) -> bool:
    """Whether the Node's Ready condition is True (False for Unknown and False)."""
    node = stack.api("GET", f"/api/v1/nodes/{name}")
    conditions = (node.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def start_node(stack: LocalStack, name: str) -> None:
    """Bring a lost node back and wait until it is Ready again (its taints gone)."""
    assert stack.cluster is not None
    stack.cluster.start_node(name)
    wait_until(f"node {name} to be Ready", lambda: node_ready(stack, name), 30)


def pod(cluster: Cluster, name: str) -> dict[str, Any] | None:
    return cluster.get("pod", name)


def node_of(cluster: Cluster, pod_name: str) -> str:
    """The node a pod is bound to, once it is."""
    return wait_for_value(
        lambda: str(((pod(cluster, pod_name) or {}).get("spec") or {}).get("nodeName") or ""),
        60,
        f"pod {pod_name} to be bound",
        cluster,
    )


def wait_for_value(probe: Callable[[], T | None], timeout: float, what: str, cluster: Cluster) -> T:
    return wait_until(
        what, probe, timeout, lambda: cluster.kubectl("get", "pods,tj", "-o", "wide", check=False)
    )


class StatusWatch:
    """Polls a job's status, keeping every distinct status seen (the notice and stopAt are gone
    once the next attempt runs) and when a condition on it first held."""

    def __init__(self, cluster: Cluster, job: str) -> None:
        self.cluster = cluster
        self.job = job
        self.seen: list[dict[str, Any]] = []
        self.started = time.monotonic()
        # (seconds since the watch began, phase, reason) at every change of phase or reason.
        self.timeline: list[tuple[float, str, str]] = []

    def poll(self) -> dict[str, Any]:
        status = self.cluster.status(self.job)
        if not self.seen or self.seen[-1] != status:
            self.seen.append(status)
        mark = (str(status.get("phase")), str(status.get("reason")))
        if not self.timeline or self.timeline[-1][1:] != mark:
            self.timeline.append((round(time.monotonic() - self.started, 1), *mark))
        return status

    def until(self, what: str, holds: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any]:
        return wait_until(
            what,
            lambda: (lambda s: s if holds(s) else None)(self.poll()),
            timeout,
            self.cluster.describe_job(self.job),
            interval=0.2,
        )

    def seconds_until(
        self, start: float, what: str, holds: Callable[[dict[str, Any]], bool], timeout: float
    ) -> float:
        """Seconds from `start` (time.monotonic()) until the status first satisfies `holds`."""
        self.until(what, holds, timeout)
        return time.monotonic() - start

    def first(self, key: str) -> Any:
        """The first value `key` had on the status, None if it never had one."""
        return next((s[key] for s in self.seen if s.get(key) is not None), None)


def committed_checksums(stack: LocalStack, status: dict[str, Any]) -> dict[str, str]:
    """sha256 of every file under every retained committed checkpoint of the job (the manifest
    included), keyed by its URI: what "nothing committed changed" compares."""
    assert stack.seaweedfs is not None
    sums: dict[str, str] = {}
    for entry in status.get("checkpoints") or []:
        storage = open_storage(entry["uri"], endpoint_url=stack.seaweedfs.endpoint, retry_budget_seconds=10)
        objects = storage.list_objects()
        assert any(o.key.endswith(MANIFEST_NAME) for o in objects), f"{entry['uri']} has no manifest"
        for stored in objects:
            data = storage.get_bytes(stored.key)
            assert data is not None, f"{storage.uri_for(stored.key)} vanished"
            sums[storage.uri_for(stored.key)] = hashlib.sha256(data).hexdigest()
    return sums


def trainer_log(cluster: Cluster, pod_name: str) -> str:
    return cluster.kubectl("logs", pod_name, "-c", "trainer", check=False)


def container_pid(pod: dict[str, Any], container: str) -> int:
    """The process (and process group) the node agent runs a container as: its containerID is
    `local://<pid>`."""
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    cid = next(str(s.get("containerID") or "") for s in statuses if s.get("name") == container)
    assert cid.startswith("local://"), cid
    return int(cid.removeprefix("local://"))


def group_states(pgid: int) -> list[str]:
    """The states (`ps` letters: T stopped, S sleeping, ...) of the live processes of a process
    group, read from /proc; empty once the group is gone."""
    states = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses.
        fields = text.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            states.append(fields[0])
    return states


def trainjob_cli(stack: LocalStack, namespace: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`trainjob ARGS` as a user runs it, against the stack, storage credentials from the job's
    Secret (no AWS_* in its environment)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    env.pop("KUBECONFIG", None)
    command = [sys.executable, "-m", "trainjob_operator", *args]
    command += ["--kubeconfig", str(stack.kubeconfig), "-n", namespace]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)
