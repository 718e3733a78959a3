"""kubectl (the image's 1.32 and the venv's pinned build) against the API server."""

from __future__ import annotations

import json
import subprocess
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.localcluster.api_harness import HTTP, APIServerProcess, kubectl_binaries
from tests.support.processes import stop_process

BINARIES = kubectl_binaries()

WIDGET = """
apiVersion: example.dev/v1
kind: Widget
metadata:
  name: {name}
  labels: {{tier: {tier}}}
spec:
  size: {size}
"""

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: nginx:1.25
        env: [{name: A, value: "1"}, {name: B, value: "2"}]
        ports: [{containerPort: 80}]
      - name: side
        image: busybox:1
"""


@pytest.fixture(params=BINARIES, ids=lambda b: "kubectl-" + ("system" if b.startswith("/usr") else "venv"))
def kubectl_bin(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def kc(
    server: APIServerProcess, binary: str, *args: str, check: bool = True, input: str | None = None
) -> str:
    return server.kubectl(*args, binary=binary, check=check, input=input).stdout


def test_apply_get_describe_delete(
    apiserver: APIServerProcess, widget_crd: dict[str, Any], namespace: str, kubectl_bin: str, tmp_path: Path
) -> None:
    manifest = tmp_path / "w.yaml"
    manifest.write_text(
        WIDGET.format(name="w1", tier="a", size=3) + "---" + WIDGET.format(name="w2", tier="b", size=5)
    )
    out = kc(apiserver, kubectl_bin, "apply", "-n", namespace, "-f", str(manifest))
    assert "widget.example.dev/w1 created" in out and "widget.example.dev/w2 created" in out
    # printer columns of the CRD
    table = kc(apiserver, kubectl_bin, "get", "widgets", "-n", namespace)
    lines = table.splitlines()
    assert lines[0].split() == ["NAME", "SIZE", "PHASE", "READY", "AGE"]
    assert lines[1].split()[:2] == ["w1", "3"] and lines[2].split()[:2] == ["w2", "5"]
    # short name, label selector, -o yaml
    assert (
        kc(apiserver, kubectl_bin, "get", "wd", "-n", namespace, "-l", "tier=b", "-o", "name")
        == "widget.example.dev/w2\n"
    )
    obj = yaml.safe_load(kc(apiserver, kubectl_bin, "get", "wd", "w1", "-n", namespace, "-o", "yaml"))
    assert obj["spec"] == {"size": 3, "color": "red", "nested": {"level": 5}}
    # re-apply with a change: a patch, not a create
    manifest.write_text(WIDGET.format(name="w1", tier="a", size=4))
    assert "widget.example.dev/w1 configured" in kc(
        apiserver, kubectl_bin, "apply", "-n", namespace, "-f", str(manifest)
    )
    assert "unchanged" in kc(apiserver, kubectl_bin, "apply", "-n", namespace, "-f", str(manifest))
    assert (
        json.loads(kc(apiserver, kubectl_bin, "get", "wd", "w1", "-n", namespace, "-o", "json"))["spec"][
            "size"
        ]
        == 4
    )
    described = kc(apiserver, kubectl_bin, "describe", "wd", "w1", "-n", namespace)
    assert "Name:         w1" in described and "Size:" in described
    # a schema error from the server reaches the user as on a real cluster
    manifest.write_text(WIDGET.format(name="w3", tier="a", size=0))
    r = apiserver.kubectl("apply", "-n", namespace, "-f", str(manifest), binary=kubectl_bin, check=False)
    assert r.returncode != 0
    assert (
        'The Widget "w3" is invalid: spec.size: Invalid value: 0: '
        "spec.size in body should be greater than or equal to 1" in r.stderr
    )
    assert 'widget.example.dev "w1" deleted' in kc(
        apiserver, kubectl_bin, "delete", "wd", "w1", "-n", namespace
    )
    assert "w1" not in kc(apiserver, kubectl_bin, "get", "wd", "-n", namespace, "-o", "name")
    # kubectl get all includes custom resources in the "all" category
    assert "widget.example.dev/w2" in kc(apiserver, kubectl_bin, "get", "all", "-n", namespace)


def test_server_side_apply(
    apiserver: APIServerProcess, namespace: str, kubectl_bin: str, tmp_path: Path
) -> None:
    manifest = tmp_path / "d.yaml"
    manifest.write_text(DEPLOYMENT)
    out = kc(apiserver, kubectl_bin, "apply", "--server-side", "-n", namespace, "-f", str(manifest))
    assert "deployment.apps/web serverside-applied" in out
    obj = json.loads(
        kc(
            apiserver,
            kubectl_bin,
            "get",
            "deploy",
            "web",
            "-n",
            namespace,
            "-o",
            "json",
            "--show-managed-fields",
        )
    )
    managers = {(m["manager"], m["operation"]) for m in obj["metadata"]["managedFields"]}
    assert ("kubectl", "Apply") in managers
    fields = obj["metadata"]["managedFields"][0]["fieldsV1"]
    assert 'k:{"name":"web"}' in fields["f:spec"]["f:template"]["f:spec"]["f:containers"]
    # drop a container and an env var: server-side apply removes what the manager no longer applies
    trimmed = yaml.safe_load(DEPLOYMENT)
    trimmed["spec"]["template"]["spec"]["containers"] = [trimmed["spec"]["template"]["spec"]["containers"][0]]
    trimmed["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "A", "value": "1"}]
    manifest.write_text(yaml.safe_dump(trimmed))
    kc(apiserver, kubectl_bin, "apply", "--server-side", "-n", namespace, "-f", str(manifest))
    obj = json.loads(kc(apiserver, kubectl_bin, "get", "deploy", "web", "-n", namespace, "-o", "json"))
    containers = obj["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["web"] and containers[0]["env"] == [
        {"name": "A", "value": "1"}
    ]
    # another manager changing an applied field: a conflict unless forced
    kc(apiserver, kubectl_bin, "scale", "deploy", "web", "-n", namespace, "--replicas=5")
    r = apiserver.kubectl(
        "apply", "--server-side", "-n", namespace, "-f", str(manifest), binary=kubectl_bin, check=False
    )
    assert r.returncode != 0 and "conflict" in r.stderr.lower() and ".spec.replicas" in r.stderr
    kc(
        apiserver,
        kubectl_bin,
        "apply",
        "--server-side",
        "--force-conflicts",
        "-n",
        namespace,
        "-f",
        str(manifest),
    )
    obj = json.loads(kc(apiserver, kubectl_bin, "get", "deploy", "web", "-n", namespace, "-o", "json"))
    assert obj["spec"]["replicas"] == 2


def test_client_side_apply_strategic_merge(
    apiserver: APIServerProcess, namespace: str, kubectl_bin: str, tmp_path: Path
) -> None:
    manifest = tmp_path / "d.yaml"
    manifest.write_text(DEPLOYMENT)
    kc(apiserver, kubectl_bin, "apply", "-n", namespace, "-f", str(manifest))
    # someone else adds an env var; a re-apply that drops container "side" keeps it (three-way merge)
    kc(apiserver, kubectl_bin, "set", "env", "deploy/web", "-c", "web", "-n", namespace, "EXTRA=yes")
    trimmed = yaml.safe_load(DEPLOYMENT)
    trimmed["spec"]["template"]["spec"]["containers"] = [trimmed["spec"]["template"]["spec"]["containers"][0]]
    trimmed["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:1.26"
    manifest.write_text(yaml.safe_dump(trimmed))
    assert "configured" in kc(apiserver, kubectl_bin, "apply", "-n", namespace, "-f", str(manifest))
    obj = json.loads(kc(apiserver, kubectl_bin, "get", "deploy", "web", "-n", namespace, "-o", "json"))
    containers = obj["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["web"]
    assert containers[0]["image"] == "nginx:1.26"
    assert {e["name"] for e in containers[0]["env"]} == {"A", "B", "EXTRA"}


def test_get_watch_and_wait(
    apiserver: APIServerProcess, http: HTTP, widget_crd: dict[str, Any], namespace: str, kubectl_bin: str
) -> None:
    base = f"/apis/example.dev/v1/namespaces/{namespace}/widgets"
    http.post(
        base,
        {"apiVersion": "example.dev/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 1}},
    )
    watcher = subprocess.Popen(
        [kubectl_bin, "get", "wd", "-n", namespace, "-w", "--request-timeout=4s"],
        env=apiserver.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.0)
        http.patch(base + "/w", {"spec": {"size": 9}})
        http.patch(
            base + "/w/status",
            {"status": {"phase": "Ready", "conditions": [{"type": "Ready", "status": "True"}]}},
        )
        out = kc(
            apiserver, kubectl_bin, "wait", "--for=condition=Ready", "wd/w", "-n", namespace, "--timeout=10s"
        )
        assert "condition met" in out
        out = kc(
            apiserver,
            kubectl_bin,
            "wait",
            "--for=jsonpath={.status.phase}=Ready",
            "wd/w",
            "-n",
            namespace,
            "--timeout=10s",
        )
        assert "condition met" in out
        stdout, _ = watcher.communicate(timeout=15)
    finally:
        stop_process(watcher)
    lines = [line.split() for line in stdout.splitlines()]
    assert lines[0][:3] == ["NAME", "SIZE", "PHASE"]
    assert ["w", "9"] in [line[:2] for line in lines[1:]]
    assert any(line[:3] == ["w", "9", "Ready"] for line in lines[1:])
    # wait --for=delete
    http.delete(base + "/w")
    kc(apiserver, kubectl_bin, "wait", "--for=delete", "wd/w", "-n", namespace, "--timeout=10s", check=False)


def test_explain_a_crd(apiserver: APIServerProcess, widget_crd: dict[str, Any], kubectl_bin: str) -> None:
    out = kc(apiserver, kubectl_bin, "explain", "widgets.spec")
    assert "KIND:       Widget" in out and "What the widget should be." in out
    assert "size\t<integer> -required-" in out and "How big." in out
    out = kc(apiserver, kubectl_bin, "explain", "widgets.spec.size")
    assert "FIELD: size <integer>" in out


def test_builtin_kinds_with_kubectl(apiserver: APIServerProcess, namespace: str, kubectl_bin: str) -> None:
    manifest = textwrap.dedent(
        f"""
        apiVersion: v1
        kind: ConfigMap
        metadata: {{name: cfg, namespace: {namespace}}}
        data: {{a: "1"}}
        ---
        apiVersion: v1
        kind: Secret
        metadata: {{name: sec, namespace: {namespace}}}
        stringData: {{pw: x}}
        ---
        apiVersion: v1
        kind: Pod
        metadata: {{name: pod, namespace: {namespace}, labels: {{app: x}}}}
        spec:
          containers: [{{name: main, image: busybox}}]
        ---
        apiVersion: v1
        kind: Service
        metadata: {{name: svc, namespace: {namespace}}}
        spec:
          selector: {{app: x}}
          ports: [{{port: 80, targetPort: 8080}}]
        """
    )
    out = kc(apiserver, kubectl_bin, "apply", "-f", "-", input=manifest)
    assert "configmap/cfg created" in out and "pod/pod created" in out and "service/svc created" in out
    pods = kc(apiserver, kubectl_bin, "get", "pods", "-n", namespace, "-o", "wide").splitlines()
    assert pods[0].split()[:5] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert pods[1].split()[:3] == ["pod", "0/1", "Pending"] and pods[1].split()[6] == "<none>"  # not bound
    svc = kc(apiserver, kubectl_bin, "get", "svc", "svc", "-n", namespace).splitlines()
    assert svc[0].split()[:3] == ["NAME", "TYPE", "CLUSTER-IP"] and "80/TCP" in svc[1]
    assert "Node:             <none>" in kc(apiserver, kubectl_bin, "describe", "pod", "pod", "-n", namespace)
    assert (
        kc(apiserver, kubectl_bin, "get", "secret", "sec", "-n", namespace, "-o", "jsonpath={.data.pw}")
        == "eA=="
    )
    assert "configmap/cfg labeled" in kc(apiserver, kubectl_bin, "label", "cm", "cfg", "-n", namespace, "x=y")
    assert "annotated" in kc(apiserver, kubectl_bin, "annotate", "cm", "cfg", "-n", namespace, "note=hi")
    out = kc(apiserver, kubectl_bin, "delete", "-f", "-", input=manifest)
    assert 'pod "pod" deleted' in out and 'configmap "cfg" deleted' in out
    assert kc(apiserver, kubectl_bin, "get", "cm", "-n", namespace, "-o", "name").strip() == ""


def test_kubectl_create_subcommands_send_protobuf(
    apiserver: APIServerProcess, namespace: str, kubectl_bin: str
) -> None:
    """Typed client-go calls (kubectl create ..., auth can-i, create token) encode bodies as protobuf."""
    n = ["-n", namespace]
    kc(apiserver, kubectl_bin, "create", "configmap", "cm", "--from-literal=a=1", "--from-literal=empty=", *n)
    kc(apiserver, kubectl_bin, "create", "secret", "generic", "sec", "--from-literal=pw=x", *n)
    kc(apiserver, kubectl_bin, "create", "serviceaccount", "robot", *n)
    kc(apiserver, kubectl_bin, "create", "role", "r", "--verb=get", "--resource=pods", *n)
    kc(
        apiserver,
        kubectl_bin,
        "create",
        "rolebinding",
        "rb",
        "--role=r",
        f"--serviceaccount={namespace}:robot",
        *n,
    )
    kc(
        apiserver,
        kubectl_bin,
        "create",
        "deployment",
        "d",
        "--image=nginx:1.25",
        "--replicas=0",
        "--port=80",
        *n,
    )
    kc(apiserver, kubectl_bin, "create", "job", "j", "--image=busybox", *n, "--", "echo", "hi")
    kc(apiserver, kubectl_bin, "create", "service", "clusterip", "s", "--tcp=80:8080", *n)
    kc(
        apiserver,
        kubectl_bin,
        "create",
        "priorityclass",
        f"{namespace}-high",
        "--value=1000",
        "--description=d",
    )
    kc(apiserver, kubectl_bin, "create", "priorityclass", f"{namespace}-zero", "--value=0")
    ns2 = namespace + "-x"
    kc(apiserver, kubectl_bin, "create", "namespace", ns2)
    token = kc(apiserver, kubectl_bin, "create", "token", "robot", "--duration=1h", *n).strip()
    assert token.count(".") == 2
    assert kc(apiserver, kubectl_bin, "auth", "can-i", "get", "pods", *n).strip() == "yes"

    def get(*args: str) -> Any:
        return json.loads(kc(apiserver, kubectl_bin, "get", *args, "-o", "json"))

    assert get("cm", "cm", *n)["data"] == {"a": "1", "empty": ""}
    assert get("secret", "sec", *n)["data"] == {"pw": "eA=="}
    assert get("rolebinding", "rb", *n)["subjects"][0]["name"] == "robot"
    deploy = get("deploy", "d", *n)["spec"]
    assert (
        deploy["replicas"] == 0
        and deploy["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] == 80
    )
    assert get("job", "j", *n)["spec"]["template"]["spec"]["containers"][0]["command"] == ["echo", "hi"]
    assert get("svc", "s", *n)["spec"]["ports"][0]["targetPort"] == 8080
    assert get("ns", ns2)["status"]["phase"] == "Active"
    high, zero = get("priorityclass", f"{namespace}-high"), get("priorityclass", f"{namespace}-zero")
    assert (high["value"], high["description"], high["preemptionPolicy"]) == (
        1000,
        "d",
        "PreemptLowerPriority",
    )
    assert zero["value"] == 0 and "globalDefault" not in zero
    kc(apiserver, kubectl_bin, "delete", "ns", ns2, "--wait=false")


def test_kubectl_field_validation_and_discovery_fallback(
    apiserver: APIServerProcess, http: HTTP, widget_crd: dict[str, Any], namespace: str, kubectl_bin: str
) -> None:
    """kubectl leaves field validation to the server (the OpenAPI v3 documents declare `fieldValidation`),
    and falls back to legacy discovery: the server answers aggregated-discovery requests with plain lists."""
    bad = WIDGET.format(name="typo", tier="a", size=1) + "  bogus: 1\n"
    r = apiserver.kubectl("apply", "-n", namespace, "-f", "-", input=bad, binary=kubectl_bin, check=False)
    assert r.returncode != 0
    assert (
        'Widget in version "v1" cannot be handled as a Widget: '
        'strict decoding error: unknown field "spec.bogus"' in r.stderr
    )
    r = apiserver.kubectl(
        "apply", "--validate=false", "-n", namespace, "-f", "-", input=bad, binary=kubectl_bin
    )
    assert "created" in r.stdout
    spec = json.loads(
        kc(apiserver, kubectl_bin, "get", "wd", "typo", "-n", namespace, "-o", "jsonpath={.spec}")
    )
    assert "bogus" not in spec  # pruned
    accept = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
    answer = http.get("/apis", headers={"Accept": accept})
    assert answer.body["kind"] == "APIGroupList" and answer.headers["Content-Type"].startswith(
        "application/json"
    )
    assert "kind=" not in answer.headers["Content-Type"] and "as=" not in answer.headers["Content-Type"]
    resources = kc(apiserver, kubectl_bin, "api-resources", "--api-group=example.dev")
    assert "widgets" in resources and "wd" in resources
