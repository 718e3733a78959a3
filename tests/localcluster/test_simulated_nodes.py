"""Simulated nodes (`--simulated-nodes`): pods bound to them go Running and finish as a kubelet
reports them, with no process, read back with the kubernetes client as any controller would."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from localcluster import LocalCluster
from localcluster.cluster import ClusterError
from tests.localcluster.node_fixtures import PY, REPO_ROOT
from tests.support.kube_objects import name_of, present


def wait_for(what: str, check: Callable[[], Any], timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout}s (last: {last!r})")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = LocalCluster(
        tmp_path_factory.mktemp("sim") / "cluster",
        root=REPO_ROOT,
        simulated_nodes=2,
        simulated_node_capacity={"cpu": "8", "pods": "20"},
        simulated_pod_duration=600,
        node_monitor_grace_seconds=2,
        startup_timeout=90,
    )
    c.start()
    try:
        # Only the simulated nodes take pods here.
        c.api(
            "PATCH",
            f"/api/v1/nodes/{c.node_name}",
            {"spec": {"unschedulable": True}},
            "application/merge-patch+json",
        )
        yield c
    finally:
        c.stop()


@pytest.fixture
def core(cluster: LocalCluster) -> Iterator[client.CoreV1Api]:
    api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
    try:
        yield client.CoreV1Api(api)
    finally:
        api.close()


def pod(name: str, duration: str | None) -> dict[str, Any]:
    annotations = {"localcluster.io/simulated-duration": duration} if duration else {}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {
            "restartPolicy": "Never",
            "initContainers": [
                {"name": "setup", "image": "busybox", "command": ["true"]},
                {
                    "name": "sidecar",
                    "image": "busybox",
                    "command": ["sleep", "inf"],
                    "restartPolicy": "Always",
                },
            ],
            "containers": [
                {
                    "name": "trainer",
                    "image": "trainer:1",
                    "command": ["python", "-c", "raise SystemExit(3)"],  # never runs: nothing does
                    "resources": {"requests": {"cpu": "1"}},
                }
            ],
        },
    }


def test_simulated_nodes_are_ready_nodes(core: client.CoreV1Api, cluster: LocalCluster) -> None:
    nodes = {name_of(n): n for n in core.list_node().items}
    for name in ("sim-node-1", "sim-node-2"):
        node = nodes[name]
        assert node.metadata is not None and node.metadata.labels is not None
        assert node.status is not None and node.status.allocatable is not None
        assert node.status.conditions is not None
        assert node.metadata.labels["type"] == "simulated"
        assert node.status.allocatable["cpu"] == "8" and node.status.allocatable["pods"] == "20"
        ready = next(c for c in node.status.conditions if c.type == "Ready")
        assert (ready.status, ready.reason) == ("True", "KubeletReady")
    time.sleep(3)  # longer than the node monitor grace: the Lease keeps them Ready
    node = core.read_node("sim-node-1")
    assert node.status is not None and node.status.conditions is not None and node.spec is not None
    assert next(c for c in node.status.conditions if c.type == "Ready").status == "True"
    assert not node.spec.taints


def test_pod_runs_and_succeeds_as_a_kubelet_reports(core: client.CoreV1Api) -> None:
    core.create_namespaced_pod("default", pod("sim-a", "1.5s"))  # type: ignore[arg-type]  # a dict body goes as it is
    running = wait_for(
        "Running",
        lambda: present((p := core.read_namespaced_pod("sim-a", "default")).status).phase == "Running" and p,
    )
    status = running.status
    assert running.spec.node_name in ("sim-node-1", "sim-node-2")
    assert status.pod_ip.startswith("10.244.") and status.host_ip.startswith("10.244.")
    assert status.start_time is not None and status.qos_class == "Burstable"
    conds = {c.type: c.status for c in status.conditions}
    assert conds == {
        "PodReadyToStartContainers": "True",
        "Initialized": "True",
        "Ready": "True",
        "ContainersReady": "True",
        "PodScheduled": "True",
    }
    (trainer,) = status.container_statuses
    assert trainer.name == "trainer" and trainer.image == "trainer:1"
    assert trainer.ready and trainer.started and trainer.restart_count == 0
    assert trainer.state.running.started_at is not None
    setup, sidecar = status.init_container_statuses
    assert (setup.state.terminated.exit_code, setup.state.terminated.reason) == (0, "Completed")
    assert sidecar.state.running is not None and sidecar.ready
    done = wait_for(
        "Succeeded",
        lambda: (
            present((p := core.read_namespaced_pod("sim-a", "default")).status).phase == "Succeeded" and p
        ),
        timeout=20,
    )
    (trainer,) = done.status.container_statuses
    term = trainer.state.terminated
    # The command would exit 3: a simulated container exits 0 whatever it says.
    assert (term.exit_code, term.reason) == (0, "Completed") and not trainer.ready
    assert term.finished_at >= term.started_at
    ready = next(c for c in done.status.conditions if c.type == "Ready")
    assert (ready.status, ready.reason) == ("False", "PodCompleted")
    assert done.status.pod_ip == status.pod_ip
    core.delete_namespaced_pod("sim-a", "default")


def test_deleted_pod_goes_at_once_and_capacity_holds(core: client.CoreV1Api) -> None:
    # The node's 600 s.
    core.create_namespaced_pod("default", pod("sim-b", None))  # type: ignore[arg-type]  # a dict body
    wait_for(
        "Running", lambda: present(core.read_namespaced_pod("sim-b", "default").status).phase == "Running"
    )
    core.delete_namespaced_pod("sim-b", "default")  # graceful, 30 s: the simulated kubelet confirms it
    wait_for("gone", lambda: "sim-b" not in {name_of(p) for p in core.list_namespaced_pod("default").items})
    # 2 nodes x 8 cpu: the 17th one-cpu pod fits nowhere, with the scheduler's own message.
    for i in range(17):
        core.create_namespaced_pod("default", pod(f"fill-{i}", None))  # type: ignore[arg-type]  # a dict body
    message = wait_for(
        "FailedScheduling",
        lambda: next(
            (
                c.message
                for p in core.list_namespaced_pod("default").items
                if present(p.status).phase == "Pending"
                for c in present(p.status).conditions or []
                if c.type == "PodScheduled" and c.reason == "Unschedulable"
            ),
            None,
        ),
    )
    assert message == (
        "0/3 nodes are available: 1 node(s) were unschedulable, 2 Insufficient cpu. preemption: 0/3 nodes "
        "are available: 1 Preemption is not helpful for scheduling, 2 No preemption victims found for "
        "incoming pod.."
    )
    core.delete_collection_namespaced_pod("default")


def test_bad_simulated_flags_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ClusterError, match="--simulated-nodes must not be negative"):
        LocalCluster(tmp_path / "c", simulated_nodes=-1)
    out = subprocess.run(
        [
            PY,
            "-m",
            "localcluster",
            "up",
            "--dir",
            str(tmp_path / "d"),
            "--simulated-node-capacity",
            "cpu=lots",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO_ROOT,
    )
    assert out.returncode != 0
    assert "'lots' is not a quantity" in out.stderr
