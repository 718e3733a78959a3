"""The coordinator sidecar of rank 0 SIGKILLed mid-run: the node agent restarts it (a native
sidecar, restartPolicy Always), the SDK re-sends what it had not delivered, the in-flight
iteration commits, the status catches up and the attempt goes on to success without a restart."""

from __future__ import annotations

import json
import os
import random
import signal
import time

import pytest

from tests.chaos.chaos_support import StatusSampler, check_committed_checkpoints, container_pid, digits_job
from tests.support.kube import Cluster
from tests.support.processes import wait_for
from worker_sdk.storage import join_key, open_storage

SEED = 7
EPOCHS = 10


@pytest.mark.slow
def test_a_killed_coordinator_is_restarted_and_no_report_is_lost(
    cluster: Cluster, s3_credentials: None
) -> None:
    rng = random.Random(SEED)
    name = "coordkill"
    manifest = digits_job(name, epochs=EPOCHS, step_sleep=0.03)
    cluster.apply(manifest)
    kill_after = rng.randint(2, 4)
    with StatusSampler(cluster, name) as sampler:

        def reached() -> int | None:
            iteration = int(cluster.status(name).get("iteration") or 0)
            return iteration if iteration >= kill_after else None

        wait_for(reached, 120, f"iteration {kill_after}", cluster.describe_job(name))
        time.sleep(rng.uniform(0.0, 0.5))
        pid = container_pid(cluster, f"{name}-0-0", "coordinator")
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        killed_at = int(cluster.status(name).get("iteration") or 0)

        def restarted() -> bool:
            pod = cluster.get("pod", f"{name}-0-0") or {}
            statuses = (pod.get("status") or {}).get("initContainerStatuses") or []
            return any(s["name"] == "coordinator" and s.get("restartCount", 0) >= 1 for s in statuses)

        wait_for(restarted, 60, "the coordinator to be restarted", cluster.describe_job(name))
        status = cluster.wait_for_phase(name, "Succeeded", "Failed", timeout=180)

    print(f"coordinator killed at iteration {killed_at} (seed {SEED})")
    assert status["phase"] == "Succeeded", status.get("message")
    assert status["attempt"] == 0 and status.get("restarts", 0) == 0, status
    assert status["iteration"] == EPOCHS
    assert status["latestCheckpoint"]["iteration"] == EPOCHS
    sampler.check_iteration(EPOCHS)
    committed = check_committed_checkpoints(manifest["spec"]["storage"]["uri"], cluster.namespace, name)
    # Every iteration from the kill on was committed: none in flight was lost.
    assert set(range(killed_at + 1, EPOCHS + 1)) <= set(committed), (killed_at, committed)
    # The metric history of the attempt has every iteration exactly once.
    storage = open_storage(manifest["spec"]["storage"]["uri"], retry_budget_seconds=10)
    history = join_key(cluster.namespace, name, "metrics", "attempt-0")
    iterations = []
    for obj in sorted(storage.list_objects(history), key=lambda o: o.key):
        data = storage.get_bytes(obj.key) or b""
        iterations += [json.loads(line)["iteration"] for line in data.decode().splitlines() if line]
    assert sorted(set(iterations)) == list(range(1, EPOCHS + 1)), iterations
