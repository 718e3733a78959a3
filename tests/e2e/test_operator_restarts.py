"""The operator killed (SIGKILL) at random moments while it creates a gang and while it restarts
one: deterministic names and idempotent creation mean no duplicate or orphaned children, and the
job ends as it would have."""

from __future__ import annotations

import random
import signal
import time

import pytest

from tests.support.kube import Cluster
from tests.support.manifests import python, trainjob

# Rank 1 of attempt 0 dies by SIGKILL after a second: one restart, then success.
RESTART_ONCE = python(
    "import os, signal, time; time.sleep(1.5)\n"
    "if os.environ['TRAINJOB_ATTEMPT'] == '0' and os.environ['RANK'] == '1':\n"
    "    os.kill(os.getpid(), signal.SIGKILL)"
)


def _uids_by_pod(cluster: Cluster, job: str, seen: dict[str, set[str]]) -> None:
    for pod in cluster.pods(job):
        seen.setdefault(pod["metadata"]["name"], set()).add(pod["metadata"]["uid"])


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_operator_killed_during_creation_and_restart_leaves_no_duplicates(
    cluster: Cluster, seed: int
) -> None:
    rng = random.Random(seed)
    name = f"chaos{seed}"
    cluster.apply(trainjob(name, RESTART_ONCE, workers=3, failure_policy={"maxRestarts": 3}))
    seen: dict[str, set[str]] = {}
    kills = 0
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline:
        time.sleep(rng.uniform(0.0, 1.2))
        _uids_by_pod(cluster, name, seen)
        if kills < 3:
            cluster.stack.stop_operator(signal.SIGKILL)
            kills += 1
            _uids_by_pod(cluster, name, seen)
            time.sleep(rng.uniform(0.0, 0.5))
            cluster.stack.start_operator()
        if cluster.status(name).get("phase") in ("Succeeded", "Failed"):
            break

    status = cluster.wait_for_phase(name, "Succeeded", timeout=120)
    assert kills == 3
    assert status["restarts"] == 1, status
    # Each pod name was created once: never a second object under the same name.
    assert all(len(uids) == 1 for uids in seen.values()), seen
    assert set(seen) <= {f"{name}-{a}-{r}" for a in (0, 1) for r in range(3)}
    for kind in ("secret", "serviceaccount", "role", "rolebinding", "service"):
        items = cluster.kubectl("get", kind, "-l", f"trainjob.dev/name={name}", "-o", "name").split()
        assert len(items) == 1, (kind, items)
