"""One local cluster with `--authorization RBAC` for the whole security suite, the chart's objects
applied to it (rendered with Helm's engine; applied with the admin token, since Go clients such as
Helm send no bearer token over the local cluster's plain HTTP), and the operator running as the
chart's ServiceAccount: the suite plays the ReplicaSet controller and creates the operator pod
from the Deployment's template, so the node agent projects that account's token into it.

Everything is stopped by pid at the end of the session, even on failure.
"""

from __future__ import annotations

import contextlib
import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from localcluster import LocalCluster
from tests.support.chart import CHART, NAMESPACE, RELEASE, ROOT, crds, objects, pod_from_template
from tests.support.processes import free_port
from tests.support.processes import wait_for_server as wait_for
from trainjob_operator.local.seaweedfs import SeaweedFS

JSON = dict[str, Any]
JOB_NAMESPACE = "ml"
CREDENTIALS = "s3-creds"
# Unusual S3 keys, so that finding them anywhere means they leaked.
S3_ACCESS_KEY = f"AKSEC{uuid.uuid4().hex[:12].upper()}"
S3_SECRET_KEY = f"sec-{uuid.uuid4().hex}"

# Where the kinds the chart renders are created.
PLURALS = {
    "Namespace": "namespaces",
    "ServiceAccount": "serviceaccounts",
    "Service": "services",
    "Deployment": "deployments",
    "ClusterRole": "clusterroles",
    "ClusterRoleBinding": "clusterrolebindings",
    "Role": "roles",
    "RoleBinding": "rolebindings",
    "ClusterKopfPeering": "clusterkopfpeerings",
    "KopfPeering": "kopfpeerings",
    "CustomResourceDefinition": "customresourcedefinitions",
}


def collection_path(obj: JSON) -> str:
    api_version = obj["apiVersion"]
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    namespace = obj["metadata"].get("namespace")
    scope = f"/namespaces/{namespace}" if namespace else ""
    return f"{base}{scope}/{PLURALS[obj['kind']]}"


@dataclass
class Response:
    status: int
    body: Any


@dataclass
class Secure:
    cluster: LocalCluster
    seaweedfs: SeaweedFS
    rendered: list[JSON]
    operator_pod: JSON
    captured: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.cluster.url

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        content_type: str = "application/json",
    ) -> Response:
        """A REST call with `token` (default: the admin's); never raises on an HTTP error."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)  # noqa: S310
        req.add_header("Authorization", f"Bearer {token or self.cluster.token}")
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - the local cluster
                raw, status = resp.read(), resp.status
        except urllib.error.HTTPError as error:
            raw, status = error.read(), error.code
        try:
            parsed: Any = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode(errors="replace")
        return Response(status, parsed)

    def admin(self, method: str, path: str, body: Any = None, ok: tuple[int, ...] = (200, 201)) -> Any:
        r = self.request(method, path, body)
        assert r.status in ok, f"{method} {path}: {r.status} {r.body}"
        return r.body

    def text(self, path: str) -> str:
        req = urllib.request.Request(self.url + path)  # noqa: S310
        req.add_header("Authorization", f"Bearer {self.cluster.token}")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310
                return str(resp.read().decode(errors="replace"))
        except (urllib.error.URLError, OSError) as error:
            return f"(none: {error})"

    def token_for(self, namespace: str, service_account: str) -> str:
        body = self.admin(
            "POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{service_account}/token", {"spec": {}}
        )
        token: str = body["status"]["token"]
        return token

    def operator_log(self) -> str:
        name = self.operator_pod["metadata"]["name"]
        return self.text(f"/api/v1/namespaces/{NAMESPACE}/pods/{name}/log?container=operator")

    def diagnose(self) -> str:
        parts = [
            f"node agent:\n{self.cluster.log_tail('node', 30)}",
            f"operator:\n{self.operator_log()[-4000:]}",
        ]
        with contextlib.suppress(Exception):
            jobs = self.admin("GET", f"/apis/trainjob.dev/v1alpha1/namespaces/{JOB_NAMESPACE}/trainjobs")
            parts.append("trainjobs: " + json.dumps([j.get("status") for j in jobs["items"]])[:3000])
        with contextlib.suppress(Exception):
            for pod in self.admin("GET", f"/api/v1/namespaces/{JOB_NAMESPACE}/pods")["items"]:
                name = pod["metadata"]["name"]
                log = self.text(f"/api/v1/namespaces/{JOB_NAMESPACE}/pods/{name}/log?container=trainer")
                parts.append(f"trainer of {name}:\n{log[-2000:]}")
        return "\n".join(parts)


def chart_values(seaweedfs: SeaweedFS) -> JSON:
    return {
        "replicaCount": 1,
        "probes": {"port": free_port()},
        "metrics": {"port": free_port()},
        "defaultStorageEndpoint": seaweedfs.endpoint,
        # Pods of the local cluster share the host's network: per-job rendezvous ports. It serves
        # plain HTTP, which the operator and its coordinators are told (never inferred).
        "extraArgs": ["--per-job-master-port", "--api-plain-http"],
    }


@pytest.fixture(scope="session")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secure]:
    base = tmp_path_factory.mktemp("security")
    seaweedfs = SeaweedFS(base / "seaweedfs", access_key=S3_ACCESS_KEY, secret_key=S3_SECRET_KEY)
    with contextlib.ExitStack() as stack:
        seaweedfs.start()
        stack.callback(seaweedfs.stop)
        cluster = LocalCluster(base / "cluster", root=ROOT, authorization="RBAC").start()
        stack.callback(cluster.stop)
        rendered = objects(chart_values(seaweedfs))
        env = Secure(cluster, seaweedfs, rendered, {})
        for crd in crds():
            env.admin("POST", collection_path(crd), crd)
        env.admin("POST", "/api/v1/namespaces", {"metadata": {"name": NAMESPACE}})
        wait_for(
            "the chart's CRDs served",
            lambda: env.request("GET", "/apis/kopf.dev/v1/clusterkopfpeerings").status == 200,
            30,
            env.diagnose,
        )
        for obj in rendered:
            env.admin("POST", collection_path(obj), obj)
        deployment = env.admin("GET", f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{RELEASE}")
        pod = pod_from_template(deployment)
        env.operator_pod = env.admin("POST", f"/api/v1/namespaces/{NAMESPACE}/pods", pod)
        pod_path = f"/api/v1/namespaces/{NAMESPACE}/pods/{pod['metadata']['name']}"

        def ready() -> bool:
            status = env.admin("GET", pod_path).get("status") or {}
            return any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions") or [])

        wait_for("the operator pod Ready", ready, 90, env.diagnose)
        env.admin("POST", "/api/v1/namespaces", {"metadata": {"name": JOB_NAMESPACE}})
        env.admin(
            "POST",
            f"/api/v1/namespaces/{JOB_NAMESPACE}/secrets",
            {"metadata": {"name": CREDENTIALS}, "stringData": seaweedfs.credentials_env},
        )
        yield env


__all__ = ["CHART", "JOB_NAMESPACE", "Secure", "chart_values", "wait_for"]
