"""Disruption notices end to end (README "Disruption notices"): a drain, a preemption by a
higher-priority pod and a suspend each become a notice the digits trainer answers with one more
checkpoint, so the next attempt resumes where the gang stopped — on three local nodes, kubectl as
the client.

Each test runs digits with a checkpoint only every 100 epochs, so the only commit that can save
the work is the one the notice asks for: "lost" below is the iterations the gang had reported
before it stopped minus the iteration the next attempt resumed from. One multi-node stack per
module (per xdist worker), a namespace per test; each test prints the seconds from its fault to
the notice on the job's status (the scenario table).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from tests.support.kube import KUBECTL, Cluster
from tests.support.manifests import digits_job
from tests.support.nodes import StatusWatch, multinode_stack, node_of, trainer_log, wait_for_value
from tests.support.processes import stop_process
from trainjob_operator.local.stack import LocalStack

pytestmark = pytest.mark.slow

EPOCHS = 6


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """Overrides the session's one-node stack for this module: three nodes (the GPU one lost)."""
    with multinode_stack(tmp_path_factory.mktemp("disruptions")) as running:
        yield running


@pytest.fixture
def s3_credentials(stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> None:
    assert stack.seaweedfs is not None
    for key, value in stack.seaweedfs.credentials_env.items():
        monkeypatch.setenv(key, value)


def start_digits(cluster: Cluster, name: str) -> StatusWatch:
    """Digits on two workers, no periodic checkpoint before the last epoch; returns once the gang
    has reported an iteration (so the fault lands mid-run)."""
    cluster.apply(digits_job(name, epochs=EPOCHS, step_sleep=0.08, checkpoint_every=100))
    watch = StatusWatch(cluster, name)
    watch.until("the gang to report", lambda s: (s.get("iteration") or 0) >= 1, 180)
    return watch


def resumed_iteration(cluster: Cluster, pod_name: str) -> int:
    """The iteration the digits trainer of `pod_name` resumed from (its log says "at epoch N":
    the epoch after the checkpoint's, which is the checkpoint's iteration)."""
    log = trainer_log(cluster, pod_name)
    lines = [line for line in log.splitlines() if "resumed from" in line]
    assert lines, f"{pod_name} did not resume from a checkpoint:\n{log[-2000:]}"
    return int(lines[0].rsplit("at epoch", 1)[1])


def check_noticed_and_resumed(
    cluster: Cluster, watch: StatusWatch, name: str, *, resumed_attempt: int
) -> tuple[int, int]:
    """The notice's stop iteration was committed, the next attempt resumed from it, the job
    Succeeded at the last epoch; returns (iterations lost, the stop iteration)."""
    status = watch.until("the job to finish", lambda s: s.get("phase") in ("Succeeded", "Failed"), 240)
    assert status["phase"] == "Succeeded", status.get("message")
    assert status["iteration"] == EPOCHS
    assert status.get("restarts", 0) == 0, status
    stop_at = watch.first("stopAt")
    assert stop_at is not None and stop_at["attempt"] == 0, [s.get("stopAt") for s in watch.seen]
    before = max((s.get("iteration") or 0) for s in watch.seen if (s.get("attempt") or 0) == 0)
    resumed = resumed_iteration(cluster, f"{name}-{resumed_attempt}-0")
    # No periodic checkpoint before the last epoch: only the notice's can be the one resumed from.
    assert 0 < resumed < EPOCHS, f"resumed from {resumed}"
    assert resumed >= stop_at["iteration"], f"resumed from {resumed}, the notice stopped at {stop_at}"
    # Committed within the grace: before the notice's deadline.
    notice = watch.first("notice")
    saved = next(
        (
            s["latestCheckpoint"]
            for s in watch.seen
            if (s.get("latestCheckpoint") or {}).get("iteration") == resumed
        ),
        None,
    )
    assert saved is not None, "the status never showed the checkpoint resumed from as the latest"
    assert when(saved["committedAt"]) <= when(notice["deadline"]), (saved, notice)
    # The status may not show the last iterations before the stop; the gang went no further than
    # the stop iteration, since every rank's should_stop() was True from there.
    lost = max(0, max(before, stop_at["iteration"]) - resumed)
    assert lost <= 1, f"reported {before} before the stop, resumed from {resumed}"
    old_log = trainer_log(cluster, f"{name}-{resumed_attempt}-1")  # still there: the last attempt's
    assert "Traceback" not in old_log, old_log[-2000:]
    return lost, int(stop_at["iteration"])


def others_on(cluster: Cluster, node: str, pod_name: str) -> list[str]:
    """The pods bound to `node` that hold resources there (not finished), besides `pod_name`."""
    out = cluster.kubectl("get", "pods", "-A", "--field-selector", f"spec.nodeName={node}", "-o", "json")
    return [
        f"{p['metadata']['namespace']}/{p['metadata']['name']}"
        for p in json.loads(out)["items"]
        if p["metadata"]["name"] != pod_name and p["status"].get("phase") not in ("Succeeded", "Failed")
    ]


def when(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp)


def has_notice(status: dict[str, Any]) -> bool:
    return status.get("notice") is not None


def report(scenario: str, seconds: float, lost: int) -> None:
    print(f"\n[scenario] {scenario}: {seconds:.1f} s from the fault to the notice on the status; lost {lost}")


def test_a_drained_node_costs_at_most_one_iteration(
    cluster: Cluster, stack: LocalStack, s3_credentials: None
) -> None:
    watch = start_digits(cluster, "drain")
    node = node_of(cluster, "drain-0-1")
    drained_at = time.monotonic()
    drain = subprocess.Popen(
        [
            KUBECTL,
            "--kubeconfig",
            str(stack.kubeconfig),
            "drain",
            node,
            "--ignore-daemonsets",
            "--delete-emptydir-data",
            "--force",
            "--timeout=120s",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        said = watch.seconds_until(drained_at, "the notice", has_notice, 60)
        notice = watch.poll().get("notice") or watch.first("notice")
        assert notice["reason"] == "EvictionByEvictionAPI", notice
        assert 1 in notice["ranks"], notice
        out, _ = drain.communicate(timeout=150)
        assert drain.returncode == 0, out
        lost, _ = check_noticed_and_resumed(cluster, watch, "drain", resumed_attempt=1)
        assert watch.poll().get("disruptions") == 1
        assert node_of(cluster, "drain-1-1") != node and node_of(cluster, "drain-1-0") != node
    finally:
        stop_process(drain)
        cluster.kubectl("uncordon", node, check=False)
    report("kubectl drain", said, lost)


def test_a_higher_priority_pod_preempting_a_worker_costs_at_most_one_iteration(
    cluster: Cluster, stack: LocalStack, s3_credentials: None
) -> None:
    priority_class = f"urgent-{cluster.namespace}"
    cluster.apply(
        {
            "apiVersion": "scheduling.k8s.io/v1",
            "kind": "PriorityClass",
            "metadata": {"name": priority_class},
            "value": 1000000,
        }
    )
    watch = start_digits(cluster, "preempt")
    node = node_of(cluster, "preempt-0-1")
    # Pods of earlier tests still terminating there hold cpu too, and would leave the preemptor
    # no victim that frees enough: wait until rank 1 is all the node runs.
    wait_for_value(
        lambda: others_on(cluster, node, "preempt-0-1") == [] or None,
        60,
        f"{node} to run only rank 1",
        cluster,
    )
    allocatable = json.loads(cluster.kubectl("get", "node", node, "-o", "json"))["status"]["allocatable"]
    # Fits on rank 1's node only once the worker's 500m are free.
    cpu = f"{int(float(allocatable['cpu']) * 1000) - 250}m"
    hog = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "urgent"},
        "spec": {
            "priorityClassName": priority_class,
            "nodeSelector": {"kubernetes.io/hostname": node},
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "urgent",
                    "image": "local",
                    "command": ["python", "-c", "import time; time.sleep(600)"],
                    "resources": {"requests": {"cpu": cpu}},
                }
            ],
        },
    }
    preempted_at = time.monotonic()
    cluster.apply(hog)
    try:
        said = watch.seconds_until(preempted_at, "the notice", has_notice, 60)
        notice = watch.poll().get("notice") or watch.first("notice")
        assert notice["reason"] == "PreemptionByScheduler", notice
        lost, _ = check_noticed_and_resumed(cluster, watch, "preempt", resumed_attempt=1)
        assert watch.poll().get("disruptions") == 1
        wait_for_value(
            lambda: (cluster.get("pod", "urgent") or {}).get("status", {}).get("phase") == "Running",
            30,
            "the preemptor to run",
            cluster,
        )
    finally:
        cluster.kubectl("delete", "pod", "urgent", "--grace-period=0", "--force", check=False)
        cluster.kubectl("delete", "priorityclass", priority_class, check=False)
    report("preemption by a higher-priority pod", said, lost)


def test_suspend_and_resume_lose_nothing(cluster: Cluster, s3_credentials: None) -> None:
    watch = start_digits(cluster, "suspend")
    suspended_at = time.monotonic()
    cluster.kubectl("patch", "trainjob", "suspend", "--type", "merge", "-p", '{"spec": {"suspend": true}}')
    said = watch.seconds_until(suspended_at, "the notice", has_notice, 60)
    assert (watch.poll().get("notice") or watch.first("notice"))["reason"] == "Suspended"
    suspended = watch.until("the job to be suspended", lambda s: s.get("phase") == "Suspended", 90)
    stop_at = watch.first("stopAt")
    assert stop_at is not None
    assert suspended["latestCheckpoint"]["iteration"] >= stop_at["iteration"], suspended
    wait_for_value(
        lambda: (
            not [p for p in cluster.pods("suspend") if p["status"].get("phase") in ("Pending", "Running")]
        ),
        30,
        "the suspended job's pods to stop",
        cluster,
    )
    cluster.kubectl("patch", "trainjob", "suspend", "--type", "merge", "-p", '{"spec": {"suspend": false}}')
    lost, _ = check_noticed_and_resumed(cluster, watch, "suspend", resumed_attempt=1)
    assert lost == 0, "a suspend loses nothing"
    assert not watch.poll().get("disruptions"), "a suspend is not a disruption"
    report("suspend and resume", said, lost)
