"""The operator process itself: liveness and Prometheus metrics endpoints, as a Deployment's
probes and a ServiceMonitor use them, and the operator killed and restarted mid-work."""

from __future__ import annotations

import random
import signal
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.kube import Cluster
from tests.support.manifests import python, trainjob
from tests.support.processes import wait_for
from trainjob_operator.local.stack import LocalStack


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback
            return response.status, response.read().decode()
    except OSError:
        return 0, ""


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_operator_serves_liveness_and_metrics_that_count_its_work(
    stack: LocalStack, cluster: Cluster
) -> None:
    wait_for(lambda: _get(f"http://127.0.0.1:{stack.liveness_port}/healthz")[0] == 200, 60, "/healthz")
    metrics_url = f"http://127.0.0.1:{stack.metrics_port}/metrics"
    before = _samples(_get(metrics_url)[1])

    cluster.apply(trainjob("counted", python("pass")))
    cluster.wait_for_phase("counted", "Succeeded")

    after = _samples(_get(metrics_url)[1])
    ok = ("trainjob_operator_reconciles_total", (("outcome", "ok"),))
    assert after[ok] >= before.get(ok, 0.0) + 2
    creates = ("trainjob_operator_api_writes_total", (("verb", "create"),))
    # Secret, ServiceAccount, Role, RoleBinding, Service and two pods: each exactly once, even
    # though the pod watch lags behind the operator's own creations.
    assert after[creates] == before.get(creates, 0.0) + 7
    assert any(name == "trainjob_operator_jobs" and dict(labels).get("phase") for name, labels in after)


# ---- operator restarts -------------------------------------------------------------------------
# The operator killed (SIGKILL) at random moments while it creates a gang and while it restarts
# one: deterministic names and idempotent creation mean no duplicate or orphaned children, and the
# job ends as it would have.


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
