"""The local cluster's API server stopped mid-run and started again on its port and state file,
once with SIGTERM and once with SIGKILL, at seeded moments: the operator, the node agent and the
coordinator reconnect, the pods keep running, no answered write is lost, and the job succeeds as
if nothing had happened (same attempt, same pods, status caught up)."""

from __future__ import annotations

import random
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.chaos_support import BackgroundSampler, StatusSampler, digits_job
from tests.support.kube import Cluster
from tests.support.processes import REPO_ROOT, wait_for
from trainjob_operator.api import constants
from trainjob_operator.local.stack import LocalStack

SEED = 11
EPOCHS = 20


@pytest.fixture
def restartable(tmp_path: Path) -> Iterator[Cluster]:
    """A stack of its own (restarting the shared one's API server would disturb other tests)
    whose API server keeps its objects in a state file."""
    directory = tmp_path / "stack"
    with LocalStack(
        directory, root=REPO_ROOT, namespaces=(), state_file=directory / "apiserver-state.json"
    ) as stack:
        namespace = f"chaos-{uuid.uuid4().hex[:8]}"
        stack.prepare_namespace(namespace)
        yield Cluster(stack, namespace)


class PodUids(BackgroundSampler):
    """Samples the uid of every pod of a job: a pod name seen with two uids was created twice."""

    def __init__(self, cluster: Cluster, job: str) -> None:
        super().__init__()
        self.cluster = cluster
        self.job = job
        self.seen: dict[str, set[str]] = {}

    def sample(self) -> None:
        for pod in self.cluster.pods(self.job):
            self.seen.setdefault(pod["metadata"]["name"], set()).add(pod["metadata"]["uid"])


def just_written(stack: LocalStack, namespace: str, name: str) -> dict[str, Any]:
    """The job right after a write to it was answered (its resourceVersion moved; the coordinator
    patches the status about once a second): stopping the server now tests that the write is kept."""
    path = f"/apis/{constants.GROUP}/{constants.VERSION}/namespaces/{namespace}/{constants.PLURAL}/{name}"
    seen = stack.api("GET", path)["metadata"]["resourceVersion"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        job: dict[str, Any] = stack.api("GET", path)
        if job["metadata"]["resourceVersion"] != seen:
            return job
        time.sleep(0.005)
    raise AssertionError(f"no write to {namespace}/{name} in 30 s")


@pytest.mark.slow
def test_api_server_restarts_are_survived(restartable: Cluster) -> None:
    cluster = restartable
    stack = cluster.stack
    assert stack.cluster is not None and stack.operator is not None
    rng = random.Random(SEED)
    name = "apirestart"
    cluster.apply(digits_job(name, epochs=EPOCHS, step_sleep=0.08))
    operator_pid = stack.operator.pid
    agent_pid = stack.cluster.pids["agent"]
    # Stop points: an iteration for the SIGTERM, a later one for the SIGKILL. Training goes on
    # while the server is down (a few iterations), so both land well before the last epoch.
    first = rng.randint(1, 3)
    plan = [(signal.SIGTERM, first), (signal.SIGKILL, rng.randint(first + 2, first + 4))]
    with StatusSampler(cluster, name) as sampler, PodUids(cluster, name) as uids:
        for sig, iteration in plan:

            def reached(at: int = iteration) -> int | None:
                now = int(cluster.status(name).get("iteration") or 0)
                return now if now >= at else None

            wait_for(reached, 120, f"iteration {iteration}", cluster.describe_job(name))
            time.sleep(rng.uniform(0.0, 1.0))
            uids.sample()
            before = just_written(stack, cluster.namespace, name)
            stack.cluster.stop_apiserver(sig)
            down = rng.uniform(0.5, 3.0)
            time.sleep(down)
            stack.cluster.start_apiserver()
            after = cluster.job(name)
            print(
                f"API server {sig.name} at iteration {before['status'].get('iteration')}, down {down:.1f}s; "
                f"back at {after['status'].get('iteration')}"
            )
            assert before["status"].get("iteration", 0) < EPOCHS, "the job was done before the stop"
            # What the server answered before it went away is still there (SIGKILL included).
            assert int(after["metadata"]["resourceVersion"]) >= int(before["metadata"]["resourceVersion"])
            assert after["status"].get("iteration", 0) >= before["status"].get("iteration", 0)
        status = cluster.wait_for_phase(name, "Succeeded", "Failed", timeout=180)
        uids.sample()

    assert status["phase"] == "Succeeded", status.get("message")
    # The same attempt went on: nothing was restarted.
    assert status["attempt"] == 0 and status.get("restarts", 0) == 0, status
    assert status["iteration"] == EPOCHS
    assert status["latestCheckpoint"]["iteration"] == EPOCHS
    sampler.check_iteration(EPOCHS)
    # The operator and the node agent lived through it (same processes).
    assert stack.operator is not None and stack.operator.pid == operator_pid
    assert stack.operator.poll() is None
    assert stack.cluster.pids["agent"] == agent_pid and stack.cluster.agent is not None
    assert stack.cluster.agent.poll() is None
    # Each pod was created once, and its containers ran once (the agent kept them running).
    assert uids.seen.keys() == {f"{name}-0-0", f"{name}-0-1"}, uids.seen
    assert all(len(u) == 1 for u in uids.seen.values()), uids.seen
    for pod in cluster.pods(name):
        pod_status = pod["status"]
        containers = pod_status.get("containerStatuses", []) + pod_status.get("initContainerStatuses", [])
        assert containers and all(c.get("restartCount", 0) == 0 for c in containers), pod_status
