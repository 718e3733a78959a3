"""The Helm chart: renders for default and other values, lints, validates as Kubernetes objects,
refuses bad values, grants the operator exactly what it uses, and deploy/ is its default render."""

from __future__ import annotations

import copy
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import helm_python
import pytest
import yaml

from tests.support.chart import (
    CHART,
    JSON,
    ROOT,
    by_kind,
    component,
    load_chart,
    objects,
    one,
    operator_args,
    render,
    render_script,
    validate,
)
from tests.support.pod_security import assert_restricted, restricted_violations
from trainjob_operator.api import constants
from trainjob_operator.api.types import TrainJob
from trainjob_operator.controller.acting import CHILD_KINDS
from trainjob_operator.reconciling import OperatorSettings
from trainjob_operator.reconciling.children import coordinator_role, worker_pod

VARIANTS: dict[str, JSON] = {
    "default": {},
    "namespaced": {"watchNamespaces": ["team-a", "team-b"]},
    "single-replica-no-peering": {"replicaCount": 1, "peering": {"enabled": False}},
    "service-monitor": {"metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}}},
    "custom-images": {
        "image": {"repository": "registry.example/ml/trainjob-operator", "tag": "0.1.0-rc1"},
        "coordinator": {"image": {"repository": "registry.example/ml/coordinator", "tag": "abc123"}},
        "imagePullSecrets": [{"name": "regcred"}],
        "defaultStorageEndpoint": "http://seaweedfs.storage:8333",
        "extraArgs": ["--per-job-master-port"],
        "logFormat": "text",
        "serviceAccount": {"create": True, "name": "custom-sa", "annotations": {"a": "b"}},
        "podLabels": {"team": "ml"},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}],
    },
    "dashboard": {"dashboard": {"enabled": True, "storageCredentialsSecret": "s3-read"}},
}


@pytest.fixture(params=sorted(VARIANTS))
def variant(request: pytest.FixtureRequest) -> tuple[str, list[JSON]]:
    return request.param, objects(VARIANTS[request.param])


# ---- rendering, lint, schemas ---------------------------------------------------------------


def test_chart_metadata() -> None:
    chart = load_chart()
    meta = chart.metadata
    assert meta["apiVersion"] == "v2" and meta["appVersion"] == "0.1.0" and chart.name == "trainjob-operator"


@pytest.mark.parametrize("values", sorted(VARIANTS), ids=str)
def test_helm_lint_is_clean(values: str) -> None:
    report = helm_python.lint(CHART, VARIANTS[values], strict=True)
    # Severity 1 is "info" (e.g. "icon is recommended"); warnings and errors fail.
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert not problems and not report["errors"], report


def test_every_object_validates(variant: tuple[str, list[JSON]]) -> None:
    _, objs = variant
    assert objs
    for obj in objs:
        validate(obj)


def test_crds_validate() -> None:
    for path in sorted((CHART / "crds").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            validate(doc)


def test_labels_are_the_standard_ones(variant: tuple[str, list[JSON]]) -> None:
    _, objs = variant
    for obj in objs:
        labels = obj["metadata"]["labels"]
        # The dashboard names itself apart, so the operator's selector never matches its pods.
        dashboard = labels.get("app.kubernetes.io/component") == "dashboard"
        assert labels["app.kubernetes.io/name"] == "trainjob-operator" + (
            "-dashboard" if dashboard else ""
        ), obj
        assert labels["app.kubernetes.io/part-of"] == "trainjob-operator"
        assert labels["app.kubernetes.io/instance"] == "trainjob-operator"
        assert labels["app.kubernetes.io/version"] == "0.1.0"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["helm.sh/chart"] == "trainjob-operator-0.1.0"


def test_default_deployment() -> None:
    objs = objects()
    deployment = one(objs, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]
    container = pod["spec"]["containers"][0]
    assert container["image"] == "ghcr.io/trainjob-dev/trainjob-operator:0.1.0"
    assert operator_args(objs) == [
        "trainjob",
        "operator",
        "--log-format=json",
        "--liveness-port=8080",
        "--metrics-port=9090",
        "--coordinator-image=ghcr.io/trainjob-dev/trainjob-operator:0.1.0",
        "--peering=trainjob-operator",
    ]
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "healthz"}
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"healthz": 8080, "metrics": 9090}
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    assert pod["spec"]["serviceAccountName"] == one(objs, "ServiceAccount")["metadata"]["name"]
    assert pod["spec"]["automountServiceAccountToken"] is True
    assert one(objs, "ServiceAccount")["automountServiceAccountToken"] is False
    # The selector is a subset of the pod's labels and of the metrics Service's selector.
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod["metadata"]["labels"].items()
    assert one(objs, "Service")["spec"]["selector"] == selector
    assert one(objs, "ClusterKopfPeering")["metadata"]["name"] == "trainjob-operator"
    assert not by_kind(objs, "ServiceMonitor")


def test_operator_flags_exist() -> None:
    """Every flag the chart passes is one `trainjob operator` knows."""
    result = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "trainjob"), "operator", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    for name in sorted(VARIANTS):
        for arg in operator_args(objects(VARIANTS[name]))[2:]:
            assert arg.split("=")[0] in result.stdout, arg


def test_namespaced_install() -> None:
    objs = objects(VARIANTS["namespaced"])
    assert not by_kind(objs, "ClusterRole") and not by_kind(objs, "ClusterRoleBinding")
    assert not by_kind(objs, "ClusterKopfPeering")
    roles = by_kind(objs, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    bindings = by_kind(objs, "RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    for binding in bindings:
        assert binding["roleRef"]["kind"] == "Role"
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "trainjob-operator", "namespace": "trainjob-system"}
        ]
    assert sorted(p["metadata"]["namespace"] for p in by_kind(objs, "KopfPeering")) == ["team-a", "team-b"]
    args = operator_args(objs)
    assert args.count("--namespace=team-a") == 1 and args.count("--namespace=team-b") == 1
    for role in roles:
        resources = {r for rule in role["rules"] for r in rule["resources"]}
        assert "kopfpeerings" in resources and "clusterkopfpeerings" not in resources
        assert "customresourcedefinitions" not in resources


def test_single_replica_without_peering() -> None:
    objs = objects(VARIANTS["single-replica-no-peering"])
    assert one(objs, "Deployment")["spec"]["replicas"] == 1
    assert not any(a.startswith("--peering") for a in operator_args(objs))
    assert not by_kind(objs, "ClusterKopfPeering")
    resources = {r for rule in one(objs, "ClusterRole")["rules"] for r in rule["resources"]}
    assert "clusterkopfpeerings" not in resources


def test_service_monitor() -> None:
    objs = objects(VARIANTS["service-monitor"])
    monitor = one(objs, "ServiceMonitor")
    service = one(objs, "Service")
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"] == "metrics"
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"


def test_custom_images_and_flags() -> None:
    objs = objects(VARIANTS["custom-images"])
    pod = one(objs, "Deployment")["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == "registry.example/ml/trainjob-operator:0.1.0-rc1"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["serviceAccountName"] == "custom-sa" == one(objs, "ServiceAccount")["metadata"]["name"]
    assert one(objs, "ClusterRoleBinding")["subjects"][0]["name"] == "custom-sa"
    args = operator_args(objs)
    assert "--coordinator-image=registry.example/ml/coordinator:abc123" in args
    assert "--default-storage-endpoint=http://seaweedfs.storage:8333" in args
    assert "--log-format=text" in args and args[-1] == "--per-job-master-port"


def test_notes_say_how_to_submit_and_watch() -> None:
    notes = render()["trainjob-operator/templates/NOTES.txt"]
    assert "kubectl -n default apply -f deploy/examples/digits.yaml" in notes
    assert "get tj -w" in notes
    namespaced = render(VARIANTS["namespaced"])["trainjob-operator/templates/NOTES.txt"]
    assert "kubectl -n team-a apply" in namespaced and "team-a, team-b" in namespaced
    assert "port-forward" not in notes
    with_dashboard = render(VARIANTS["dashboard"])["trainjob-operator/templates/NOTES.txt"]
    assert "port-forward svc/trainjob-operator-dashboard 8080:8080" in with_dashboard


# ---- values.schema.json refusals --------------------------------------------------------------

REFUSED: dict[str, tuple[JSON, str]] = {
    "unknown-top-level-key": ({"replicas": 2}, "replicas"),
    "unknown-nested-key": ({"metrics": {"serviceMonitor": {"enabled": True, "namespace": "x"}}}, "namespace"),
    "zero-replicas": ({"replicaCount": 0}, "replicaCount"),
    "replicas-not-integer": ({"replicaCount": "2"}, "replicaCount"),
    "replicas-without-peering": ({"peering": {"enabled": False}}, "replicaCount"),
    "bad-namespace-name": ({"watchNamespaces": ["Team_A"]}, "watchNamespaces"),
    "duplicate-namespace": ({"watchNamespaces": ["a", "a"]}, "watchNamespaces"),
    "bad-log-format": ({"logFormat": "xml"}, "logFormat"),
    "dashboard-unknown-key": ({"dashboard": {"enabled": True, "replicas": 2}}, "replicas"),
    "dashboard-bad-port": ({"dashboard": {"port": 0}}, "port"),
    "bad-pull-policy": ({"image": {"pullPolicy": "Sometimes"}}, "pullPolicy"),
    "bad-image-tag": ({"image": {"tag": "latest please"}}, "tag"),
    "bad-port": ({"metrics": {"port": 70000}}, "port"),
    "root-user": ({"runAsUser": 0}, "runAsUser"),
    "monitor-without-service": (
        {"metrics": {"service": {"enabled": False}, "serviceMonitor": {"enabled": True}}},
        "enabled",
    ),
    "bad-service-type": ({"metrics": {"service": {"type": "ExternalName"}}}, "type"),
    "bad-resource-quantity": ({"resources": {"limits": {"memory": "lots"}}}, "memory"),
    "unknown-resource-name": ({"resources": {"limits": {"gpu": "1"}}}, "gpu"),
    "bad-storage-endpoint": ({"defaultStorageEndpoint": "seaweedfs:8333"}, "defaultStorageEndpoint"),
    "extra-arg-not-a-flag": ({"extraArgs": ["rm -rf /"]}, "extraArgs"),
    "bad-peering-name": ({"peering": {"name": "Trainjob_Operator"}}, "name"),
    "bad-monitor-interval": ({"metrics": {"serviceMonitor": {"interval": "30 seconds"}}}, "interval"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_schema_refuses(case: str) -> None:
    values, field = REFUSED[case]
    chart = load_chart()
    with pytest.raises(helm_python.HelmValuesError, match=field):
        chart.validate_schema(values)


def test_schema_accepts_every_variant() -> None:
    chart = load_chart()
    for values in VARIANTS.values():
        chart.validate_schema(values)


def test_lint_reports_bad_values() -> None:
    report = helm_python.lint(CHART, {"replicaCount": 0}, strict=True)
    assert report["errors"] or any(m["severity"] >= 3 for m in report["messages"]), report


# ---- Pod Security Standard "restricted" ------------------------------------------------------


def test_operator_pod_is_restricted(variant: tuple[str, list[JSON]]) -> None:
    """Every Deployment's pod (the operator's, and the dashboard's where it is enabled)."""
    _, objs = variant
    for deployment in by_kind(objs, "Deployment"):
        template = deployment["spec"]["template"]
        assert_restricted(template["spec"], template["metadata"].get("annotations"))
        container = template["spec"]["containers"][0]
        sc = container["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True and sc["runAsUser"] > 0
        tmp = next(m for m in container["volumeMounts"] if m["mountPath"] == "/tmp")
        assert any(v["name"] == tmp["name"] and "emptyDir" in v for v in template["spec"]["volumes"])


def test_pod_security_check_catches_violations() -> None:
    """The checker itself: a compliant spec passes, each broken control is reported."""
    good: JSON = {
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [
            {
                "name": "c",
                "image": "x",
                "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
            }
        ],
        "volumes": [{"name": "v", "emptyDir": {}}],
    }
    assert restricted_violations(good) == []

    def broken(change: Callable[[JSON], Any]) -> list[str]:
        spec: JSON = copy.deepcopy(good)
        change(spec)
        return restricted_violations(spec)

    def container(spec: JSON) -> JSON:
        first: JSON = spec["containers"][0]
        return first

    cases: dict[str, Callable[[JSON], Any]] = {
        "hostNetwork": lambda s: s.update(hostNetwork=True),
        "hostPID": lambda s: s.update(hostPID=True),
        "hostIPC": lambda s: s.update(hostIPC=True),
        "hostPath": lambda s: s["volumes"].append({"name": "h", "hostPath": {"path": "/"}}),
        "type nfs": lambda s: s["volumes"].append({"name": "n", "nfs": {"server": "a", "path": "/"}}),
        "privileged": lambda s: container(s)["securityContext"].update(privileged=True),
        "allowPrivilegeEscalation": lambda s: container(s)["securityContext"].pop("allowPrivilegeEscalation"),
        "runAsNonRoot": lambda s: s["securityContext"].pop("runAsNonRoot"),
        "runAsUser must not be 0": lambda s: container(s)["securityContext"].update(runAsUser=0),
        "seccompProfile": lambda s: s["securityContext"].pop("seccompProfile"),
        "Unconfined": lambda s: s["securityContext"].update(seccompProfile={"type": "Unconfined"}),
        "drop must include ALL": lambda s: container(s)["securityContext"].pop("capabilities"),
        "SYS_ADMIN": lambda s: container(s)["securityContext"]["capabilities"].update(add=["SYS_ADMIN"]),
        "hostPort": lambda s: container(s).update(ports=[{"containerPort": 80, "hostPort": 80}]),
        "procMount": lambda s: container(s)["securityContext"].update(procMount="Unmasked"),
        "sysctl": lambda s: s["securityContext"].update(sysctls=[{"name": "kernel.msgmax", "value": "1"}]),
        "seLinuxOptions.type": lambda s: s["securityContext"].update(seLinuxOptions={"type": "spc_t"}),
        "initContainers[i]": lambda s: s.update(initContainers=[{"name": "i", "image": "x"}]),
    }
    for expected, change in cases.items():
        found = broken(change)
        assert any(expected in message for message in found), (expected, found)
    # NET_BIND_SERVICE is the one capability that may be added back.
    assert (
        broken(lambda s: container(s)["securityContext"]["capabilities"].update(add=["NET_BIND_SERVICE"]))
        == []
    )


def sample_job(template_spec: JSON | None = None) -> TrainJob:
    trainer = {"name": "trainer", "image": "example/digits:1", "command": ["python", "-c", "pass"]}
    return TrainJob.from_wire(
        {
            "apiVersion": constants.API_VERSION,
            "kind": constants.KIND,
            "metadata": {"name": "digits", "namespace": "ml", "uid": "uid-1", "generation": 1},
            "spec": {
                "workers": 2,
                "template": {"spec": template_spec or {"containers": [trainer]}},
                "storage": {"uri": "s3://bucket/ckpt", "credentialsSecret": "s3"},
            },
        }
    )


def test_operator_built_pods_are_restricted_given_a_restricted_template() -> None:
    """What the operator adds (coordinator sidecar, its volumes) keeps a restricted template
    restricted, on rank 0 and the other ranks."""
    restricted_trainer = {
        "name": "trainer",
        "image": "example/digits:1",
        "command": ["python", "-m", "examples.digits.train"],
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }
    template = {
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 1000,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [restricted_trainer],
    }
    tj = sample_job(template)
    for rank in (0, 1):
        pod = worker_pod(tj, 0, rank, OperatorSettings())
        assert_restricted(pod["spec"], pod["metadata"].get("annotations"))
    # The coordinator container is restricted on its own, whatever the user's template says.
    bare = worker_pod(sample_job(), 0, 0, OperatorSettings())["spec"]
    coordinator = {**bare, "containers": [], "volumes": bare["volumes"]}
    assert_restricted(coordinator)
    assert restricted_violations(bare)  # the bare trainer is not: the check does look at it


# ---- RBAC: exactly what the operator uses ----------------------------------------------------

# (apiGroup, resource, verb) -> the operation that needs it. Kept next to the code it describes:
# controller/acting.py (the operator's writes), controller/handlers.py (kopf's watches, index,
# finalizer/annotation patches, events) and reconciling/children.py (the coordinator's Role).
EXPECTED_GRANTS: dict[tuple[str, str, str], str] = {
    ("trainjob.dev", "trainjobs", "list"): "kopf: initial listing of TrainJobs (daemon per job)",
    ("trainjob.dev", "trainjobs", "watch"): "kopf: watch of TrainJobs",
    ("trainjob.dev", "trainjobs", "patch"): "kopf: finalizer and progress/diff-base annotations",
    ("trainjob.dev", "trainjobs", "delete"): "acting.delete_job: ttlSecondsAfterFinished",
    ("trainjob.dev", "trainjobs/status", "patch"): "acting.patch_status: merge patch of .status",
    ("trainjob.dev", "trainjobs/status", "get"): "held to grant it in each coordinator's Role",
    ("", "pods", "list"): "kopf: pods_by_job index / wake_on_pod_event, initial listing",
    ("", "pods", "watch"): "kopf: pods_by_job index / wake_on_pod_event",
    ("", "pods", "create"): "acting.create: worker pods",
    ("", "pods", "patch"): "acting.remove_scheduling_gate: the gang's gate, once every pod exists",
    ("", "pods", "delete"): "acting.delete_pod: end of an attempt, suspend",
    ("", "secrets", "create"): "acting.create: <job>-token",
    ("", "services", "create"): "acting.create: headless Service",
    ("", "serviceaccounts", "create"): "acting.create: <job>-coordinator",
    ("rbac.authorization.k8s.io", "roles", "create"): "acting.create: coordinator Role",
    ("rbac.authorization.k8s.io", "rolebindings", "create"): "acting.create: coordinator RoleBinding",
    ("", "events", "create"): "kopf: kopf.event / warnings posted as Events",
    ("kopf.dev", "clusterkopfpeerings", "list"): "kopf peering: initial listing",
    ("kopf.dev", "clusterkopfpeerings", "watch"): "kopf peering: other replicas' heartbeats",
    ("kopf.dev", "clusterkopfpeerings", "patch"): "kopf peering: own heartbeat (named object only)",
    ("", "nodes", "list"): "kopf: nodes_by_name index (lost nodes), initial listing",
    ("", "nodes", "watch"): "kopf: nodes_by_name index / wake_jobs_on_node_event",
    ("coordination.k8s.io", "leases", "list"): "kopf: node_leases_by_name index, initial listing",
    ("coordination.k8s.io", "leases", "watch"): "kopf: node_leases_by_name index (node heartbeats)",
    ("apiextensions.k8s.io", "customresourcedefinitions", "list"): "kopf: resource observer",
    ("apiextensions.k8s.io", "customresourcedefinitions", "watch"): "kopf: resource observer",
}


def _grants(rules: list[JSON]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def test_cluster_role_grants_exactly_what_the_operator_uses() -> None:
    rules = one(objects(), "ClusterRole")["rules"]
    assert _grants(rules) == set(EXPECTED_GRANTS)
    for rule in rules:
        assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"], rule
    patch_peering = next(
        r for r in rules if r["resources"] == ["clusterkopfpeerings"] and "patch" in r["verbs"]
    )
    assert patch_peering["resourceNames"] == ["trainjob-operator"]


def test_every_rule_says_why() -> None:
    text = (CHART / "templates" / "_helpers.tpl").read_text()
    block = text[text.index('define "trainjob-operator.rules"') :]
    lines = [line.strip() for line in block.splitlines()]
    for index, line in enumerate(lines):
        if line.startswith("- apiGroups:"):
            assert lines[index - 1].startswith(("#", "{{-")), f"rule without a comment: {line}"


def test_role_covers_what_the_operator_creates() -> None:
    """Tied to the code: every kind acting.py can create, and the coordinator Role the operator
    grants (RBAC refuses a Role granting more than its creator holds)."""
    plural = {
        "Pod": ("", "pods"),
        "Secret": ("", "secrets"),
        "Service": ("", "services"),
        "ServiceAccount": ("", "serviceaccounts"),
        "Role": ("rbac.authorization.k8s.io", "roles"),
        "RoleBinding": ("rbac.authorization.k8s.io", "rolebindings"),
    }
    for values in (VARIANTS["default"], VARIANTS["namespaced"]):
        objs = objects(values)
        role = one(objs, "ClusterRole") if not values else by_kind(objs, "Role")[0]
        grants = _grants(role["rules"])
        for kind in [*CHILD_KINDS, "Pod"]:
            group, resource = plural[kind]
            assert (group, resource, "create") in grants, kind
        for rule in coordinator_role(sample_job())["rules"]:
            for verb in rule["verbs"]:
                for resource in rule["resources"]:
                    assert (constants.GROUP, resource, verb) in grants, (resource, verb)


# ---- the dashboard -----------------------------------------------------------------------------

READ_ONLY_VERBS = {"get", "list", "watch"}


def test_dashboard_is_off_by_default() -> None:
    assert component(objects(), "dashboard") == []


def test_dashboard_objects_are_its_own() -> None:
    """Enabled: its own ServiceAccount, read-only ClusterRole bound to it alone, Deployment and
    Service, none of which the operator's selectors match (and the other way round)."""
    objs = objects(VARIANTS["dashboard"])
    dashboard = component(objs, "dashboard")
    assert sorted(o["kind"] for o in dashboard) == sorted(
        ["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Deployment", "Service"]
    )
    account = one(dashboard, "ServiceAccount")["metadata"]["name"]
    binding = one(dashboard, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == one(dashboard, "ClusterRole")["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account, "namespace": "trainjob-system"}
    ]
    deployment = one(dashboard, "Deployment")
    pod = deployment["spec"]["template"]
    assert pod["spec"]["serviceAccountName"] == account
    command = pod["spec"]["containers"][0]["command"]
    assert command[:2] == ["trainjob", "dashboard"] and "--all-namespaces" in command
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert one(dashboard, "Service")["spec"]["selector"] == selector
    operator_labels = one(component(objs, "operator"), "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert not set(selector.items()) <= set(operator_labels.items())
    operator_selector = one(component(objs, "operator"), "Deployment")["spec"]["selector"]["matchLabels"]
    assert not set(operator_selector.items()) <= set(pod["metadata"]["labels"].items())
    env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["name"] == "s3-read"


def test_dashboard_role_only_reads() -> None:
    (role,) = by_kind(component(objects(VARIANTS["dashboard"]), "dashboard"), "ClusterRole")
    grants = _grants(role["rules"])
    assert {verb for _, _, verb in grants} <= READ_ONLY_VERBS
    assert not any(resource == "secrets" for _, resource, _ in grants), "the dashboard reads no Secrets"
    assert grants == {
        (constants.GROUP, "trainjobs", "list"),
        (constants.GROUP, "trainjobs", "watch"),
        ("", "pods", "list"),
        ("", "pods", "watch"),
        ("", "events", "list"),
        ("", "events", "watch"),
        ("", "pods/log", "get"),
    }


# ---- deploy/ and the chart's crds/ ------------------------------------------------------------


def test_deploy_equals_the_default_render() -> None:
    script = render_script()
    files: dict[Path, str] = script.expected_files()
    differ = [
        str(p.relative_to(ROOT)) for p, text in files.items() if not p.exists() or p.read_text() != text
    ]
    assert not differ, f"out of date (run `make manifests`): {differ}"
    assert script.stale_files(files) == []


def test_chart_crds_equal_deploy_crds() -> None:
    chart = {p.name: p.read_text() for p in (CHART / "crds").glob("*.yaml")}
    deploy = {p.name: p.read_text() for p in (ROOT / "deploy" / "crds").glob("*.yaml")}
    assert chart == deploy
    # and the TrainJob CRD is the generated one
    from trainjob_operator.api.crd import trainjob_crd_yaml

    assert chart["trainjob.dev_trainjobs.yaml"] == trainjob_crd_yaml()


def test_kustomization_builds() -> None:
    kubectl = shutil.which("kubectl") or str(ROOT / ".venv" / "bin" / "kubectl")
    out = subprocess.run(
        [kubectl, "kustomize", str(ROOT / "deploy")], capture_output=True, text=True, check=True
    ).stdout
    built = [d for d in yaml.safe_load_all(out) if d]
    kinds = sorted(d["kind"] for d in built)
    expected = sorted(
        ["Namespace", *(o["kind"] for o in objects()), *("CustomResourceDefinition" for _ in range(3))]
    )
    assert kinds == expected


# ---- Dockerfile --------------------------------------------------------------------------------


def test_dockerfile_is_hadolint_clean() -> None:
    result = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "hadolint"), str(ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_targets_and_users() -> None:
    text = (ROOT / "Dockerfile").read_text()
    stages = [line.split()[-1] for line in text.splitlines() if line.startswith("FROM ")]
    assert stages == ["builder", "operator", "worker"]
    assert "ARG PYTHON_IMAGE=python:3.11." in text and "-slim-bookworm" in text
    assert text.count("USER 65532:65532") == 2
    assert "torch==2.13.0" in text and "download.pytorch.org/whl/cpu" in text
    assert 'ENTRYPOINT ["trainjob"]' in text and 'CMD ["operator"]' in text
    assert 'CMD ["python", "-m", "examples.digits.train"]' in text
    ignore = (ROOT / ".dockerignore").read_text()
    for path in ("worker_sdk/", "operator/", "examples/"):
        assert f"!{path}" in ignore
    # The operator image is production code only: the local cluster is not even in the context.
    assert "!localcluster/" not in ignore and "localcluster" not in text
