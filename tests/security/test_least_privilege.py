"""Least privilege with RBAC enforced: the operator under exactly the chart's ClusterRole runs a
real TrainJob to Succeeded (the rules are sufficient), each rule is needed, the coordinator's
token reaches nothing but its own job's status, workers hold no token, secrets never leak, and
every pod is "restricted" by the Pod Security Standards.

One real training job in the whole suite (`digits_run`); the per-rule checks call the operation
the rule serves directly, with the token of a ServiceAccount bound to the ClusterRole less that
rule (mutations with `dryRun=All`: authorization happens first, nothing is changed).
"""

from __future__ import annotations

import base64
import contextlib
import json
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.security.security_support import JOB_NAMESPACE, S3_ACCESS_KEY, S3_SECRET_KEY, Secure, wait_for
from tests.support.chart import NAMESPACE, RELEASE, by_kind
from tests.support.pod_security import assert_restricted
from trainjob_operator.api import constants

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

JSON = dict[str, Any]
JOB = "digits-a"
OTHER = "other-b"
JOBS = f"/apis/trainjob.dev/v1alpha1/namespaces/{JOB_NAMESPACE}/trainjobs"
SA_TOKEN_PATH = "/var/run/secrets/kubernetes.io/serviceaccount/token"
# The trainer refuses to train when a Kubernetes token is visible in its mount namespace.
TRAINER = (
    "import os, runpy, sys\n"
    f"if os.path.exists({SA_TOKEN_PATH!r}):\n"
    "    sys.exit('a Kubernetes ServiceAccount token is mounted in the trainer container')\n"
    "runpy.run_module('examples.digits.train', run_name='__main__')\n"
)
RESTRICTED_CONTAINER = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "runAsNonRoot": True,
}


def trainjob(name: str, *, suspend: bool = False) -> JSON:
    return {
        "apiVersion": "trainjob.dev/v1alpha1",
        "kind": "TrainJob",
        "metadata": {"name": name, "namespace": JOB_NAMESPACE},
        "spec": {
            "workers": 2,
            "suspend": suspend,
            "template": {
                "spec": {
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 65532,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": "trainer",
                            "image": "ghcr.io/trainjob-dev/trainjob-worker:0.1.0",
                            "command": ["python", "-c", TRAINER],
                            "securityContext": RESTRICTED_CONTAINER,
                        }
                    ],
                }
            },
            "config": {"epochs": 2},
            # a score: without one the coordinator's status patch carries `score: null`, which the
            # CRD refuses (422), a bug outside this suite
            "checkpoints": {"scoreAttribute": "val_loss", "scoreOrder": "min"},
            "storage": {"uri": f"s3://trainjob/security/{name}", "credentialsSecret": "s3-creds"},
            "failurePolicy": {"maxRestarts": 0},
        },
    }


@dataclass
class Run:
    job: JSON
    pods: dict[str, JSON]
    metrics: str
    coordinator_log: str
    report_token: str


def _fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - a local pod
        return str(resp.read().decode(errors="replace"))


@pytest.fixture(scope="module")
def digits_run(secure: Secure) -> Run:
    """The suite's one training job (job A), watched to the end: its pods, its coordinator's
    /metrics and log are captured while it runs. Job B exists beside it, suspended."""
    secure.admin("POST", JOBS, trainjob(OTHER, suspend=True))
    secure.admin("POST", JOBS, trainjob(JOB))
    pods: dict[str, JSON] = {}
    seen = {"metrics": "", "log": ""}
    selector = f"labelSelector={constants.LABEL_NAME}%3D{JOB}"

    def finished() -> bool:
        for pod in secure.admin("GET", f"/api/v1/namespaces/{JOB_NAMESPACE}/pods?{selector}")["items"]:
            pods[pod["metadata"]["name"]] = pod
            ip = (pod.get("status") or {}).get("podIP")
            if pod["metadata"]["labels"].get(constants.LABEL_RANK) == "0":
                with contextlib.suppress(OSError):
                    if ip:
                        seen["metrics"] = _fetch(f"http://{ip}:{constants.COORDINATOR_PORT}/metrics")
                log = secure.text(
                    f"/api/v1/namespaces/{JOB_NAMESPACE}/pods/{pod['metadata']['name']}/log?container=coordinator"
                )
                if not log.startswith("(none"):
                    seen["log"] = log
        status = secure.admin("GET", f"{JOBS}/{JOB}").get("status") or {}
        assert status.get("phase") != "Failed", json.dumps(status) + "\n" + secure.diagnose()
        return status.get("phase") == "Succeeded"

    wait_for(f"TrainJob {JOB} Succeeded", finished, 300, secure.diagnose)
    secret = secure.admin("GET", f"/api/v1/namespaces/{JOB_NAMESPACE}/secrets/{JOB}-token")
    # kept beside the cluster's logs, for a failing run
    (secure.cluster.directory / "coordinator.log").write_text(seen["log"])
    (secure.cluster.directory / "operator.log").write_text(secure.operator_log())
    token = base64.b64decode(secret["data"][constants.TOKEN_SECRET_KEY]).decode()
    return Run(secure.admin("GET", f"{JOBS}/{JOB}"), pods, seen["metrics"], seen["log"], token)


# ---- sufficient ---------------------------------------------------------------------------------


def test_operator_under_the_chart_role_runs_a_job_to_success(secure: Secure, digits_run: Run) -> None:
    status = digits_run.job["status"]
    assert status["phase"] == "Succeeded"
    assert status["workers"]["succeeded"] == 2, status
    # written by the coordinator sidecar, with its own projected token, under its Role
    assert status.get("iteration") == 2, status
    # the operator really is the chart's ServiceAccount, and RBAC is on
    spec = secure.operator_pod["spec"]
    assert spec["serviceAccountName"] == RELEASE
    anonymous = secure.request("GET", "/api/v1/namespaces", token="x").status
    assert anonymous == 401


def test_worker_containers_hold_no_kubernetes_token(digits_run: Run) -> None:
    # The trainer exits non-zero when the token file exists (the job would have failed), and
    # every pod keeps the token out of all but the coordinator sidecar.
    assert len(digits_run.pods) == 2
    for pod in digits_run.pods.values():
        spec = pod["spec"]
        assert spec["automountServiceAccountToken"] is False
        trainer = next(c for c in spec["containers"] if c["name"] == constants.TRAINER_CONTAINER)
        mounts = [m["mountPath"] for m in trainer.get("volumeMounts") or []]
        assert not any(m.startswith("/var/run/secrets/kubernetes.io") for m in mounts), mounts
        assert trainer["command"][-1] == TRAINER


# ---- confined -----------------------------------------------------------------------------------


def test_coordinator_token_reaches_only_its_own_job_status(secure: Secure, digits_run: Run) -> None:
    token = secure.token_for(JOB_NAMESPACE, f"{JOB}-coordinator")
    user = f"system:serviceaccount:{JOB_NAMESPACE}:{JOB}-coordinator"

    def call(method: str, path: str, body: Any = None) -> int:
        ctype = "application/merge-patch+json" if method == "PATCH" else "application/json"
        return secure.request(method, path, body, token=token, content_type=ctype).status

    # what it is for
    assert call("GET", f"{JOBS}/{JOB}/status") == 200
    assert call("PATCH", f"{JOBS}/{JOB}/status?dryRun=All", {"status": {}}) == 200
    # job B
    assert call("GET", f"{JOBS}/{OTHER}/status") == 403
    assert call("PATCH", f"{JOBS}/{OTHER}/status?dryRun=All", {"status": {"phase": "Failed"}}) == 403
    assert call("GET", f"{JOBS}/{OTHER}") == 403
    # its own job's spec (only /status)
    r = secure.request(
        "PATCH",
        f"{JOBS}/{JOB}?dryRun=All",
        {"spec": {"workers": 3}},
        token=token,
        content_type="application/merge-patch+json",
    )
    assert r.status == 403
    assert r.body["message"] == (
        f'trainjobs.trainjob.dev "{JOB}" is forbidden: User "{user}" cannot patch resource '
        f'"trainjobs" in API group "trainjob.dev" in the namespace "{JOB_NAMESPACE}"'
    )
    assert call("GET", f"{JOBS}/{JOB}") == 403
    assert call("GET", JOBS) == 403
    # secrets, including its own job's report token and the S3 credentials
    assert call("GET", f"/api/v1/namespaces/{JOB_NAMESPACE}/secrets") == 403
    assert call("GET", f"/api/v1/namespaces/{JOB_NAMESPACE}/secrets/{JOB}-token") == 403
    assert call("GET", f"/api/v1/namespaces/{JOB_NAMESPACE}/secrets/s3-creds") == 403
    # pods
    probe = {"metadata": {"name": "probe"}, "spec": {"containers": [{"name": "c", "image": "x"}]}}
    r = secure.request("POST", f"/api/v1/namespaces/{JOB_NAMESPACE}/pods?dryRun=All", probe, token=token)
    assert r.status == 403
    assert r.body["message"] == (
        f'pods is forbidden: User "{user}" cannot create resource "pods" in API group "" '
        f'in the namespace "{JOB_NAMESPACE}"'
    )
    # nor can it widen its own Role
    role = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{JOB_NAMESPACE}/roles/{JOB}-coordinator"
    assert call("PATCH", role, {"rules": []}) == 403


# ---- no leaks -----------------------------------------------------------------------------------


def test_secrets_never_leak(secure: Secure, digits_run: Run) -> None:
    assert digits_run.metrics and "trainjob" in digits_run.metrics, "no /metrics scraped from the coordinator"
    assert digits_run.coordinator_log, "no coordinator log captured"
    events = [
        *secure.admin("GET", f"/api/v1/namespaces/{JOB_NAMESPACE}/events")["items"],
        *secure.admin("GET", f"/api/v1/namespaces/{NAMESPACE}/events")["items"],
    ]
    assert events, "the operator posted no events"
    places = {
        "TrainJob status": json.dumps(digits_run.job.get("status")),
        "TrainJob (whole)": json.dumps(digits_run.job),
        "events": json.dumps(events),
        "operator log": secure.operator_log(),
        "coordinator log": digits_run.coordinator_log,
        "coordinator /metrics": digits_run.metrics,
    }
    assert places["operator log"].strip() and not places["operator log"].startswith("(none"), (
        "no operator log"
    )
    secrets = {
        "report token": digits_run.report_token,
        "S3 access key": S3_ACCESS_KEY,
        "S3 secret key": S3_SECRET_KEY,
    }
    leaks = [
        f"{what} in {where}"
        for where, text in places.items()
        for what, value in secrets.items()
        if value in text
    ]
    assert not leaks, leaks


# ---- restricted pods ----------------------------------------------------------------------------


def test_pods_are_restricted(secure: Secure, digits_run: Run) -> None:
    ranks = sorted(p["metadata"]["labels"][constants.LABEL_RANK] for p in digits_run.pods.values())
    assert ranks == ["0", "1"]
    for pod in digits_run.pods.values():
        assert_restricted(pod["spec"], pod["metadata"].get("annotations"))
    operator = secure.operator_pod
    assert_restricted(operator["spec"], operator["metadata"].get("annotations"))


# ---- needed -------------------------------------------------------------------------------------

Op = Callable[[Secure, str], int]


def op(method: str, path: str, body: Any = None, ctype: str = "application/json") -> Op:
    def run(secure: Secure, token: str) -> int:
        return secure.request(method, path, body, token=token, content_type=ctype).status

    run.__name__ = f"{method} {path.split('?')[0]}"
    return run


MERGE = "application/merge-patch+json"
ML = f"/api/v1/namespaces/{JOB_NAMESPACE}"
RBAC_ML = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{JOB_NAMESPACE}"
PROBE_ROLE = "probe-coordinator"
PEERINGS = "/apis/kopf.dev/v1/clusterkopfpeerings"
WATCH = "watch=true&timeoutSeconds=1"


def coordinator_like_role(name: str) -> JSON:
    return {
        "metadata": {"name": name},
        "rules": [
            {
                "apiGroups": ["trainjob.dev"],
                "resources": ["trainjobs/status"],
                "resourceNames": [OTHER],
                "verbs": ["get", "patch"],
            }
        ],
    }


# Each rule of the chart's ClusterRole (apiGroups, resources, verbs, resourceNames) -> the
# operations that need it, as the operator (kopf and its own writes) performs them.
NEEDED: dict[tuple[tuple[str, ...], ...], tuple[str, list[Op]]] = {
    (("trainjob.dev",), ("trainjobs",), ("list", "watch", "patch", "delete"), ()): (
        "kopf lists/watches TrainJobs, patches finalizer/annotations; TTL deletes finished jobs",
        [
            op("GET", "/apis/trainjob.dev/v1alpha1/trainjobs"),
            op("GET", f"/apis/trainjob.dev/v1alpha1/trainjobs?{WATCH}"),
            op("PATCH", f"{JOBS}/{OTHER}?dryRun=All", {"metadata": {"annotations": {"probe": "1"}}}, MERGE),
            op("DELETE", f"{JOBS}/{OTHER}?dryRun=All"),
        ],
    ),
    (("trainjob.dev",), ("trainjobs/status",), ("get", "patch"), ()): (
        "the operator patches .status; get+patch are what it grants each coordinator's Role",
        [
            op("PATCH", f"{JOBS}/{OTHER}/status?dryRun=All", {"status": {}}, MERGE),
            op("GET", f"{JOBS}/{OTHER}/status"),
            # escalation prevention: it can only create the coordinator's Role while holding it
            op("POST", f"{RBAC_ML}/roles?dryRun=All", coordinator_like_role("probe")),
        ],
    ),
    (("",), ("pods",), ("list", "watch", "create", "patch", "delete"), ()): (
        "kopf's pod index lists/watches worker pods; the operator creates them, removes the gang's "
        "scheduling gate, and deletes them",
        [
            op("GET", "/api/v1/pods"),
            op("GET", f"/api/v1/pods?{WATCH}"),
            op(
                "POST",
                f"{ML}/pods?dryRun=All",
                {"metadata": {"name": "probe"}, "spec": {"containers": [{"name": "c", "image": "x"}]}},
            ),
            op("PATCH", f"{ML}/pods/probe?dryRun=All", {"metadata": {"labels": {"probe": "1"}}}, MERGE),
            op("DELETE", f"{ML}/pods/probe?dryRun=All"),
        ],
    ),
    (("",), ("secrets", "services", "serviceaccounts"), ("create",), ()): (
        "per job: the report-token Secret, the headless Service, the coordinator's ServiceAccount",
        [
            op("POST", f"{ML}/secrets?dryRun=All", {"metadata": {"name": "probe"}, "stringData": {"k": "v"}}),
            op(
                "POST",
                f"{ML}/services?dryRun=All",
                {"metadata": {"name": "probe"}, "spec": {"clusterIP": "None", "ports": [{"port": 80}]}},
            ),
            op("POST", f"{ML}/serviceaccounts?dryRun=All", {"metadata": {"name": "probe"}}),
        ],
    ),
    (("rbac.authorization.k8s.io",), ("roles", "rolebindings"), ("create",), ()): (
        "per job: the coordinator's Role and RoleBinding",
        [
            op("POST", f"{RBAC_ML}/roles?dryRun=All", coordinator_like_role("probe")),
            op(
                "POST",
                f"{RBAC_ML}/rolebindings?dryRun=All",
                {
                    "metadata": {"name": "probe"},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": PROBE_ROLE},
                    "subjects": [{"kind": "ServiceAccount", "name": "probe", "namespace": JOB_NAMESPACE}],
                },
            ),
        ],
    ),
    (("",), ("events",), ("create",), ()): (
        "kopf posts Events on TrainJobs",
        [
            op(
                "POST",
                f"{ML}/events?dryRun=All",
                {
                    "metadata": {"name": "probe.1"},
                    "involvedObject": {"kind": "TrainJob", "namespace": JOB_NAMESPACE, "name": OTHER},
                    "reason": "Probe",
                    "message": "probe",
                    "type": "Normal",
                },
            )
        ],
    ),
    (("kopf.dev",), ("clusterkopfpeerings",), ("list", "watch"), ()): (
        "kopf peering: each replica lists/watches the peering objects",
        [op("GET", PEERINGS), op("GET", f"{PEERINGS}?{WATCH}")],
    ),
    (("kopf.dev",), ("clusterkopfpeerings",), ("patch",), ("trainjob-operator",)): (
        "kopf peering: the heartbeat patch of this release's peering object",
        [op("PATCH", f"{PEERINGS}/trainjob-operator?dryRun=All", {"status": {}}, MERGE)],
    ),
    (("",), ("nodes",), ("list", "watch"), ()): (
        "the operator's node index: a pod's node not Ready for nodeLossSeconds is a lost node",
        [op("GET", "/api/v1/nodes"), op("GET", f"/api/v1/nodes?{WATCH}")],
    ),
    (("coordination.k8s.io",), ("leases",), ("list", "watch"), ()): (
        "the operator's node Lease index: a failure that would end a job waits for the nodes' heartbeats",
        [
            op("GET", "/apis/coordination.k8s.io/v1/leases"),
            op("GET", f"/apis/coordination.k8s.io/v1/leases?{WATCH}"),
        ],
    ),
    (("apiextensions.k8s.io",), ("customresourcedefinitions",), ("list", "watch"), ()): (
        "kopf's resource observer lists/watches CRDs",
        [
            op("GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"),
            op("GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions?{WATCH}"),
        ],
    ),
}


def rule_key(rule: JSON) -> tuple[tuple[str, ...], ...]:
    return tuple(tuple(rule.get(k) or ()) for k in ("apiGroups", "resources", "verbs", "resourceNames"))


def bind_probe(secure: Secure, name: str, cluster_role: str) -> str:
    """A ServiceAccount bound to `cluster_role` cluster-wide, as the chart binds the operator's;
    returns its token."""
    secure.admin("POST", f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts", {"metadata": {"name": name}})
    secure.admin(
        "POST",
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
        {
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cluster_role},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": NAMESPACE}],
        },
    )
    return secure.token_for(NAMESPACE, name)


def test_each_chart_rule_is_needed(secure: Secure, digits_run: Run) -> None:
    (chart_role,) = by_kind(secure.rendered, "ClusterRole")
    rules: list[JSON] = chart_role["rules"]
    assert sorted(map(rule_key, rules)) == sorted(NEEDED), "the table must list each rule of the chart"
    secure.admin("POST", f"{RBAC_ML}/roles", coordinator_like_role(PROBE_ROLE))
    full = bind_probe(secure, "probe-full", chart_role["metadata"]["name"])
    started = time.monotonic()
    failures = []
    for index, rule in enumerate(rules):
        why, operations = NEEDED[rule_key(rule)]
        without = f"probe-without-{index}"
        secure.admin(
            "POST",
            "/apis/rbac.authorization.k8s.io/v1/clusterroles",
            {"metadata": {"name": without}, "rules": [r for r in rules if r is not rule]},
        )
        token = bind_probe(secure, without, without)
        for operation in operations:
            with_rule, without_rule = operation(secure, full), operation(secure, token)
            if with_rule in (401, 403) or without_rule != 403:
                failures.append(
                    f"{rule_key(rule)} ({why}): {operation.__name__}: {with_rule} / {without_rule}"
                )
    assert not failures, "\n".join(failures)
    assert time.monotonic() - started < 30
