"""The operator SIGKILLed at a random moment while a running TrainJob is being deleted, then
started again: the job goes away with every child (pods, their processes, service, secret,
service account, role, role binding), nothing is created twice and nothing comes back."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
import urllib.error
from typing import Any

import pytest

from localcluster.cluster import pid_alive
from tests.chaos.chaos_support import container_pid
from tests.support.kube import KUBECTL, Cluster
from tests.support.manifests import python, trainjob
from tests.support.processes import wait_for
from trainjob_operator.api import constants

CHILD_KINDS = ("pod", "service", "secret", "serviceaccount", "role", "rolebinding")
# Rank 0 also runs the coordinator sidecar; the trainer just waits to be stopped.
SLEEPER = python("import time; time.sleep(120)")


def children(cluster: Cluster, job: str) -> dict[str, list[str]]:
    """The job's children still there, by kind (kinds with none left out)."""
    out = cluster.kubectl("get", ",".join(CHILD_KINDS), "-l", f"trainjob.dev/name={job}", "-o", "name")
    found: dict[str, list[str]] = {}
    for line in out.split():
        found.setdefault(line.split("/", 1)[0].split(".", 1)[0], []).append(line)
    return found


def current(cluster: Cluster, path: str) -> dict[str, Any] | None:
    """The job now, in a millisecond (kubectl takes a tenth of a second); None when gone."""
    try:
        job: dict[str, Any] = cluster.stack.api("GET", path)
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return None
        raise
    return job


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_operator_killed_during_deletion_leaves_nothing_behind(cluster: Cluster, seed: int) -> None:
    rng = random.Random(seed)
    name = f"del{seed}"
    pods = [f"{name}-0-0", f"{name}-0-1"]
    cluster.apply(trainjob(name, SLEEPER, workers=2))

    containers = [(pods[0], "coordinator"), (pods[0], "trainer"), (pods[1], "trainer")]

    def running() -> list[int] | None:
        pids = [container_pid(cluster, pod, container) for pod, container in containers]
        return [pid for pid in pids if pid] if all(pids) else None

    processes = wait_for(running, 60, "the containers to run", cluster.describe_job(name))
    seen: dict[str, set[str]] = {}
    record_pods(cluster, name, seen)
    assert set(children(cluster, name)) == set(CHILD_KINDS), children(cluster, name)

    path = f"/apis/{constants.GROUP}/{constants.VERSION}/namespaces/{cluster.namespace}/{constants.PLURAL}"
    path += f"/{name}"
    # The operator's own part of a deletion (see the deletionTimestamp, stop the job's daemon,
    # remove the finalizer) takes tens of milliseconds; the garbage collector and the node agent
    # do the rest. To interrupt every step, the operator is frozen (SIGSTOP) at a seeded moment
    # while kubectl deletes, and SIGKILLed a seeded while later: what a frozen process has done
    # is exactly what a SIGKILL at that moment leaves, and the test can see which step it was.
    command = [KUBECTL, "--kubeconfig", str(cluster.stack.kubeconfig), "-n", cluster.namespace]
    delete = subprocess.Popen(
        [*command, "delete", "trainjob", name, "--wait=false"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    operator = cluster.stack.operator
    assert operator is not None
    try:
        deleted = time.monotonic()
        time.sleep(rng.uniform(0.0, 0.4))
        os.killpg(operator.pid, signal.SIGSTOP)
        frozen = time.monotonic() - deleted
        job = current(cluster, path)
        time.sleep(rng.uniform(0.0, 1.0))  # the deletion goes on without the operator
    finally:
        cluster.stack.stop_operator(signal.SIGKILL)
        _, stderr = delete.communicate(timeout=60)
    assert delete.returncode == 0, stderr
    time.sleep(rng.uniform(0.0, 1.0))
    cluster.stack.start_operator()
    print(f"seed {seed}: operator stopped {frozen:.2f}s after kubectl delete started, {moment(job)}")

    def all_gone() -> bool:
        record_pods(cluster, name, seen)
        return cluster.get("trainjob", name) is None and not children(cluster, name)

    wait_for(all_gone, 30, "the TrainJob and every child to be gone", lambda: str(children(cluster, name)))
    gone = time.monotonic() - deleted
    # No process of the job is left running on the node.
    wait_for(lambda: not any(pid_alive(pid) for pid in processes), 10, "the containers to exit")
    # Nothing comes back: the restarted operator must not recreate children of a deleted job.
    time.sleep(2.0)
    assert not children(cluster, name), children(cluster, name)
    assert cluster.get("trainjob", name) is None
    assert cluster.stack.operator is not None and cluster.stack.operator.poll() is None
    # Each pod name was created once: never a second object under the same name.
    assert seen.keys() == set(pods) and all(len(u) == 1 for u in seen.values()), seen
    print(f"seed {seed}: everything gone {gone:.1f}s after the delete")


def moment(job: dict[str, Any] | None) -> str:
    """Where the deletion was when the operator died."""
    if job is None:
        return "after the job was gone"
    if not job["metadata"].get("deletionTimestamp"):
        return "before the deletion reached the server"
    return "with the finalizer on" if job["metadata"].get("finalizers") else "after the finalizer came off"


def record_pods(cluster: Cluster, job: str, seen: dict[str, set[str]]) -> None:
    for pod in cluster.pods(job):
        seen.setdefault(pod["metadata"]["name"], set()).add(pod["metadata"]["uid"])
