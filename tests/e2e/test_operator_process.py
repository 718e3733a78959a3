"""The operator process itself: liveness and Prometheus metrics endpoints, as a Deployment's
probes and a ServiceMonitor use them."""

from __future__ import annotations

import urllib.request

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
