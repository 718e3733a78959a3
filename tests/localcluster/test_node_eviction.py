"""The `pods/eviction` subresource and PodDisruptionBudgets, with the kubernetes client and with
`kubectl cordon/drain/uncordon` against the node agent's Node."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from localcluster import LocalCluster
from tests.localcluster.api_harness import kubectl_binaries
from tests.localcluster.node_fixtures import Kube, cluster, is_ready, kube, pod, py

__all__ = ["cluster", "kube"]

SLEEPER = py("import time; time.sleep(600)")
REFUSED = "Cannot evict pod as it would violate the pod's disruption budget."


@pytest.fixture
def apis(cluster: LocalCluster) -> Iterator[tuple[Any, Any]]:
    from kubernetes import client, config

    api_client = config.new_client_from_config(config_file=str(cluster.kubeconfig))
    try:
        yield client.CoreV1Api(api_client), client.PolicyV1Api(api_client)
    finally:
        api_client.close()


def ready_pods(kube: Kube, app: str, n: int) -> list[str]:
    names = [f"{app}-{i}" for i in range(n)]
    for name in names:
        kube.create(pod(name, [{"name": "main", "command": SLEEPER}], labels={"app": app}))
    for name in names:
        kube.wait_ready(name)
    return names


def pdb(name: str, app: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": name},
        "spec": {"selector": {"matchLabels": {"app": app}}, **spec},
    }


def budget_status(kube: Kube, name: str, want: dict[str, int], timeout: float = 30) -> dict[str, Any]:
    """The budget's status once the disruption controller shows `want` (a subset of it)."""
    deadline = time.monotonic() + timeout
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = kube.api("GET", f"/apis/policy/v1/namespaces/{kube.ns}/poddisruptionbudgets/{name}")
        status = status["status"]
        if all(status.get(k) == v for k, v in want.items()):
            return status
        time.sleep(0.1)
    raise AssertionError(f"budget {name}: {status} never showed {want}")


def eviction(name: str, **delete_options: Any) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": name},
        **({"deleteOptions": delete_options} if delete_options else {}),
    }


def test_eviction_honours_the_pod_disruption_budget(kube: Kube, apis: tuple[Any, Any]) -> None:
    from kubernetes import client, watch

    core, policy = apis
    names = ready_pods(kube, "web", 3)
    policy.create_namespaced_pod_disruption_budget(kube.ns, pdb("web-pdb", "web", minAvailable=2))
    status = budget_status(kube, "web-pdb", {"currentHealthy": 3})
    assert {k: status[k] for k in ("expectedPods", "desiredHealthy", "disruptionsAllowed")} == {
        "expectedPods": 3,
        "desiredHealthy": 2,
        "disruptionsAllowed": 1,
    }
    [cond] = status["conditions"]
    assert (cond["type"], cond["status"], cond["reason"]) == ("DisruptionAllowed", "True", "SufficientPods")

    before = core.list_namespaced_pod(kube.ns).metadata.resource_version
    core.create_namespaced_pod_eviction(names[0], kube.ns, eviction(names[0]))
    # The evicted pod got the DisruptionTarget condition, then its graceful deletion.
    seen: list[dict[str, Any]] = []
    w = watch.Watch()
    for ev in w.stream(core.list_namespaced_pod, kube.ns, resource_version=before, timeout_seconds=10):
        obj = ev["raw_object"]
        if obj["metadata"]["name"] == names[0]:
            seen.append(obj)
            if obj["metadata"].get("deletionTimestamp"):
                w.stop()
    marked = [
        c
        for o in seen
        for c in o["status"].get("conditions") or []
        if c["type"] == "DisruptionTarget" and c["status"] == "True"
    ]
    assert marked and marked[0]["reason"] == "EvictionByEvictionAPI", seen
    assert seen[-1]["metadata"]["deletionTimestamp"], "evicted, but not deleted gracefully"
    status = budget_status(kube, "web-pdb", {"currentHealthy": 2, "disruptionsAllowed": 0})
    assert status["conditions"][0]["reason"] == "InsufficientPods"

    # One more would leave fewer than minAvailable: 429 with Kubernetes' message, nothing deleted.
    with pytest.raises(client.ApiException) as refused:
        core.create_namespaced_pod_eviction(names[1], kube.ns, eviction(names[1]))
    assert refused.value.status == 429
    assert refused.value.body == (
        '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",'
        f'"message":"{REFUSED}","reason":"TooManyRequests","details":{{"causes":[{{"reason":"DisruptionBudget",'
        '"message":"The disruption budget web-pdb needs 2 healthy pods and has 2 currently"}]},"code":429}\n'
    )
    assert not core.read_namespaced_pod(names[1], kube.ns).metadata.deletion_timestamp

    # A second budget over the same pods: the eviction subresource refuses to choose.
    policy.create_namespaced_pod_disruption_budget(kube.ns, pdb("web-pdb-2", "web", maxUnavailable=1))
    with pytest.raises(client.ApiException) as two:
        core.create_namespaced_pod_eviction(names[1], kube.ns, eviction(names[1]))
    assert two.value.status == 500 and two.value.body is not None
    assert json.loads(two.value.body)["message"] == (
        "Internal error occurred: This pod has more than one PodDisruptionBudget, "
        "which the eviction subresource does not support."
    )
    # maxUnavailable counts replicas from the pods' controllers; these pods have none.
    status = budget_status(kube, "web-pdb-2", {"observedGeneration": 1, "disruptionsAllowed": 0})
    assert status["conditions"][0]["reason"] == "SyncFailed"
    assert status["conditions"][0]["message"] == f'found no controllers for pod "{names[1]}"'

    with pytest.raises(client.ApiException) as mismatch:
        core.create_namespaced_pod_eviction(names[1], kube.ns, eviction(names[2]))
    assert mismatch.value.status == 400 and mismatch.value.body is not None
    assert json.loads(mismatch.value.body)["message"] == "name in URL does not match name in Eviction object"


def test_kubectl_cordon_drain_uncordon_with_and_without_a_budget(kube: Kube) -> None:
    node = kube.cluster.node_name
    kubectl = kubectl_binaries()[0]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [kubectl, "--kubeconfig", str(kube.cluster.kubeconfig), *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)

    names = ready_pods(kube, "drained", 2)
    budgets = f"/apis/policy/v1/namespaces/{kube.ns}/poddisruptionbudgets"
    kube.api("POST", budgets, pdb("all", "drained", minAvailable=2))
    budget_status(kube, "all", {"observedGeneration": 1, "currentHealthy": 2, "disruptionsAllowed": 0})
    drain = ["drain", node, "--pod-selector", "app=drained", "--force", "--ignore-daemonsets"]
    try:
        out = run("cordon", node)
        assert out.returncode == 0 and out.stdout.strip() == f"node/{node} cordoned", out.stderr
        assert kube.api("GET", f"/api/v1/nodes/{node}")["spec"]["unschedulable"] is True

        # The budget allows no disruption: drain retries the evictions until its timeout.
        blocked = run(*drain, "--timeout=7s")
        assert blocked.returncode != 0
        assert f'error when evicting pods/"{names[0]}" -n "{kube.ns}" (will retry after 5s): {REFUSED}' in (
            blocked.stderr
        )
        assert all(is_ready(kube.pod(n) or {}) for n in names)

        kube.api("DELETE", f"{budgets}/all")
        drained = run(*drain, "--timeout=90s")
        assert drained.returncode == 0, drained.stderr
        assert f"node/{node} drained" in drained.stdout
        for n in names:
            assert f"pod/{n} evicted" in drained.stdout
            assert kube.pod(n) is None  # drain waits until the pods are gone
    finally:
        out = run("uncordon", node)
    assert out.returncode == 0 and out.stdout.strip() == f"node/{node} uncordoned", out.stderr
    assert not kube.api("GET", f"/api/v1/nodes/{node}")["spec"].get("unschedulable")


def test_budget_counts_replicas_of_the_pods_controller(kube: Kube) -> None:
    """maxUnavailable and percentages count the replicas the controller asks for (the Deployment's,
    through its ReplicaSet), not the pods that happen to exist."""
    apps = f"/apis/apps/v1/namespaces/{kube.ns}"
    template = {
        "metadata": {"labels": {"app": "scaled"}},
        "spec": {"containers": [{"name": "c", "image": "i"}]},
    }
    selector = {"matchLabels": {"app": "scaled"}}
    deploy = kube.api(
        "POST",
        f"{apps}/deployments",
        {"metadata": {"name": "d"}, "spec": {"replicas": 4, "selector": selector, "template": template}},
    )
    owner = {"apiVersion": "apps/v1", "controller": True, "name": "d", "uid": deploy["metadata"]["uid"]}
    rs = kube.api(
        "POST",
        f"{apps}/replicasets",
        {
            "metadata": {"name": "d-1", "ownerReferences": [{**owner, "kind": "Deployment"}]},
            "spec": {"replicas": 4, "selector": selector, "template": template},
        },
    )
    rs_owner = {**owner, "kind": "ReplicaSet", "name": "d-1", "uid": rs["metadata"]["uid"]}
    for i in range(2):
        p = pod(f"d-1-{i}", [{"name": "main", "command": SLEEPER}], labels={"app": "scaled"})
        p["metadata"]["ownerReferences"] = [rs_owner]
        kube.create(p)
        kube.wait_ready(f"d-1-{i}")
    budgets = f"/apis/policy/v1/namespaces/{kube.ns}/poddisruptionbudgets"
    kube.api("POST", budgets, pdb("half", "scaled", maxUnavailable="50%"))
    status = budget_status(kube, "half", {"observedGeneration": 1, "currentHealthy": 2})
    # 4 expected, at most ceil(50% of 4) = 2 unavailable: 2 must stay healthy, and 2 are
    assert (status["expectedPods"], status["desiredHealthy"], status["disruptionsAllowed"]) == (4, 2, 0)
