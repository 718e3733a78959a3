"""The chart installed into the local cluster through Helm's engine, and a TrainJob run under it.

The local cluster has no Deployment controller, so the test plays the ReplicaSet controller: it
creates one Pod from the installed Deployment's pod template. The node agent runs its command,
`trainjob operator ...`, as a local process with the ServiceAccount token projected at the usual
path (it honours `automountServiceAccountToken`), so the operator logs in as the chart's
ServiceAccount from its in-cluster environment, exactly as in a real pod.
"""

from __future__ import annotations

import contextlib
import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import helm_python
import pytest

from localcluster import LocalCluster
from tests.support.chart import CHART, JSON, NAMESPACE, RELEASE, ROOT, pod_from_template
from tests.support.pod_security import assert_restricted
from tests.support.processes import free_port
from tests.support.processes import wait_for_server as wait_for
from trainjob_operator.local.seaweedfs import SeaweedFS

pytestmark = pytest.mark.slow

JOB_NAMESPACE = "ml"
CREDENTIALS = "s3-creds"
TRAINER = "import os; print('rank', os.environ['RANK'], 'of', os.environ['WORLD_SIZE'])"


def get(cluster: LocalCluster, path: str) -> JSON | None:
    """The object, or None on 404."""
    try:
        result: JSON = cluster.api("GET", path)
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return None
        raise
    return result


def pod_log(cluster: LocalCluster, namespace: str, pod: str, container: str, lines: int = 60) -> str:
    url = (
        f"{cluster.url}/api/v1/namespaces/{namespace}/pods/{pod}/log?container={container}&tailLines={lines}"
    )
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {cluster.token}"})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - the local cluster
            text: str = response.read().decode(errors="replace")
            return text
    except (urllib.error.URLError, OSError) as error:
        return f"(no log: {error})"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    """The API server and node agent; stopped by pid (with every pod) even when the test fails."""
    with LocalCluster(tmp_path / "cluster", root=ROOT) as running:
        yield running


def trainjob(name: str, storage_uri: str) -> JSON:
    return {
        "apiVersion": "trainjob.dev/v1alpha1",
        "kind": "TrainJob",
        "metadata": {"name": name, "namespace": JOB_NAMESPACE},
        "spec": {
            "workers": 2,
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "trainer",
                            "image": "ghcr.io/trainjob-dev/trainjob-worker:0.1.0",
                            "command": ["python", "-c", TRAINER],
                        }
                    ]
                }
            },
            "storage": {"uri": storage_uri, "credentialsSecret": CREDENTIALS},
            "failurePolicy": {"maxRestarts": 0},
        },
    }


@pytest.mark.parametrize("scope", ["clusterwide", "namespaced"])
def test_helm_install_runs_a_trainjob(cluster: LocalCluster, seaweedfs: SeaweedFS, scope: str) -> None:
    """Cluster-wide: ClusterRole and ClusterKopfPeering. Namespaced (`watchNamespaces`): a Role and
    a KopfPeering in the job's namespace, `--namespace` flags, no cluster-scoped grant."""
    namespaced = scope == "namespaced"
    liveness, metrics = free_port(), free_port()
    values: JSON = {
        **({"watchNamespaces": [JOB_NAMESPACE]} if namespaced else {}),
        "probes": {"port": liveness},
        "metrics": {"port": metrics},
        "defaultStorageEndpoint": seaweedfs.endpoint,
        # Pods of the local cluster share the host's network: per-job rendezvous ports. It serves
        # plain HTTP, which the operator and its coordinators are told (never inferred).
        "extraArgs": ["--per-job-master-port", "--api-plain-http"],
    }
    helm = helm_python.Config(kubeconfig_path=str(cluster.kubeconfig), namespace=NAMESPACE)
    operator_pod: str | None = None

    def diagnose() -> str:
        parts = [f"node agent:\n{cluster.log_tail('node', 30)}"]
        if operator_pod is not None:
            with contextlib.suppress(Exception):
                pod = get(cluster, f"/api/v1/namespaces/{NAMESPACE}/pods/{operator_pod}") or {}
                parts.append("operator pod status: " + json.dumps(pod.get("status"))[:2000])
            parts.append("operator log:\n" + pod_log(cluster, NAMESPACE, operator_pod, "operator"))
        with contextlib.suppress(Exception):
            jobs = cluster.api("GET", f"/apis/trainjob.dev/v1alpha1/namespaces/{JOB_NAMESPACE}/trainjobs")
            parts.append("trainjobs: " + json.dumps([j.get("status") for j in jobs["items"]])[:3000])
        return "\n".join(parts)

    rbac = "/apis/rbac.authorization.k8s.io/v1"
    if namespaced:
        role = f"{rbac}/namespaces/{JOB_NAMESPACE}/roles/{RELEASE}"
        peering_path = f"/apis/kopf.dev/v1/namespaces/{JOB_NAMESPACE}/kopfpeerings/{RELEASE}"
        # A namespaced install's Roles go into namespaces that exist already.
        cluster.api("POST", "/api/v1/namespaces", {"metadata": {"name": JOB_NAMESPACE}})
    else:
        role = f"{rbac}/clusterroles/{RELEASE}"
        peering_path = f"/apis/kopf.dev/v1/clusterkopfpeerings/{RELEASE}"
    try:
        # ---- install --------------------------------------------------------------------------
        helm.install(str(CHART), RELEASE, values, namespace=NAMESPACE, create_namespace=True, timeout=120)
        crd_path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
        for crd in ("trainjobs.trainjob.dev", "clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"):
            assert get(cluster, f"{crd_path}/{crd}") is not None, crd
        assert get(cluster, role) is not None
        assert get(cluster, role.replace("roles/", "rolebindings/")) is not None
        assert (get(cluster, f"{rbac}/clusterroles/{RELEASE}") is None) == namespaced
        assert get(cluster, f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts/{RELEASE}") is not None
        assert get(cluster, peering_path) is not None
        deployment_path = f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{RELEASE}"
        deployment = get(cluster, deployment_path)
        assert deployment is not None and deployment["spec"]["replicas"] == 2

        # ---- upgrade with changed values ------------------------------------------------------
        liveness = free_port()
        values = {**values, "replicaCount": 1, "probes": {"port": liveness}, "logFormat": "text"}
        helm.upgrade(str(CHART), RELEASE, values, namespace=NAMESPACE, timeout=120)
        deployment = get(cluster, deployment_path)
        assert deployment is not None
        assert deployment["spec"]["replicas"] == 1 and deployment["metadata"]["generation"] == 2
        command = deployment["spec"]["template"]["spec"]["containers"][0]["command"]
        assert f"--liveness-port={liveness}" in command and "--log-format=text" in command
        assert len(helm.history(RELEASE)) == 2

        # ---- play the ReplicaSet controller: one pod from the template --------------------------
        pod = pod_from_template(deployment)
        assert_restricted(pod["spec"], pod["metadata"]["annotations"])
        operator_pod = pod["metadata"]["name"]
        cluster.api("POST", f"/api/v1/namespaces/{NAMESPACE}/pods", pod)
        pod_path = f"/api/v1/namespaces/{NAMESPACE}/pods/{operator_pod}"

        def pod_ready() -> bool:
            status = (get(cluster, pod_path) or {}).get("status") or {}
            return any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions") or [])

        wait_for("the operator pod Ready (its /healthz)", pod_ready, 90, diagnose)

        # ---- a TrainJob under that install ------------------------------------------------------
        with contextlib.suppress(urllib.error.HTTPError):
            cluster.api("POST", "/api/v1/namespaces", {"metadata": {"name": JOB_NAMESPACE}})
        cluster.api(
            "POST",
            f"/api/v1/namespaces/{JOB_NAMESPACE}/secrets",
            {"metadata": {"name": CREDENTIALS}, "stringData": seaweedfs.credentials_env},
        )
        name = f"helm-{uuid.uuid4().hex[:6]}"
        jobs = f"/apis/trainjob.dev/v1alpha1/namespaces/{JOB_NAMESPACE}/trainjobs"
        cluster.api("POST", jobs, trainjob(name, f"s3://{seaweedfs.bucket}/helm-install/{name}"))

        def phase() -> str | None:
            status = (get(cluster, f"{jobs}/{name}") or {}).get("status") or {}
            value = status.get("phase")
            assert value != "Failed", status
            return value if value == "Succeeded" else None

        outside = "/apis/trainjob.dev/v1alpha1/namespaces/default/trainjobs"
        if namespaced:
            # A job in a namespace the install does not watch is left alone.
            stray = {**trainjob("stray", f"s3://{seaweedfs.bucket}/helm-install/stray")}
            stray["metadata"] = {"name": "stray", "namespace": "default"}
            cluster.api("POST", outside, stray)

        wait_for(f"TrainJob {name} Succeeded", phase, 180, diagnose)
        if namespaced:
            assert f"--namespace={JOB_NAMESPACE}" in command
            assert not (get(cluster, f"{outside}/stray") or {}).get("status")
            assert not (cluster.api("GET", "/api/v1/namespaces/default/pods") or {}).get("items")
        job = get(cluster, f"{jobs}/{name}")
        assert job is not None
        assert job["status"]["workers"]["succeeded"] == 2, job["status"]

        # The replica took part in peering through the chart's peering object.
        peering = get(cluster, peering_path)
        assert peering is not None and peering.get("status"), peering

        # ---- uninstall --------------------------------------------------------------------------
        helm.uninstall(RELEASE, timeout=120)
        release_paths = [
            deployment_path,
            role,
            peering_path,
        ]
        for path in release_paths:
            assert get(cluster, path) is None, path
        # The pod goes with its owner (garbage collection); CRDs stay, as Helm documents.
        wait_for("the operator pod deleted", lambda: get(cluster, pod_path) is None, 60, diagnose)
        assert get(cluster, f"{crd_path}/trainjobs.trainjob.dev") is not None
    finally:
        helm.close()
