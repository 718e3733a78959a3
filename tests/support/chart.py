"""Rendering the chart with Helm's own engine (helm_python) and looking at what it produced."""

from __future__ import annotations

import copy
import importlib.util
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

import helm_python
import jsonschema
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "trainjob-operator"
RELEASE = "trainjob-operator"
NAMESPACE = "trainjob-system"
# Validate against the newest schemas kubernetes-validate carries.
KUBERNETES_VERSION = kubernetes_validate.latest_version()

JSON = dict[str, Any]


def load_chart() -> helm_python.Chart:
    return helm_python.Chart.load(CHART)


def render(
    values: JSON | None = None, *, namespace: str = NAMESPACE, release: str = RELEASE
) -> dict[str, str]:
    """Template path -> rendered text (values are checked against values.schema.json first, as
    `helm install` does)."""
    chart = load_chart()
    chart.validate_schema(values or {})
    return chart.render(values or {}, name=release, namespace=namespace)


def objects(values: JSON | None = None, **kwargs: Any) -> list[JSON]:
    """Every object the chart renders (NOTES.txt left out)."""
    out: list[JSON] = []
    for path, text in sorted(render(values, **kwargs).items()):
        if path.endswith("NOTES.txt"):
            continue
        out.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return out


def crds() -> list[JSON]:
    out: list[JSON] = []
    for path in sorted((CHART / "crds").glob("*.yaml")):
        out.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    return out


def by_kind(objs: list[JSON], kind: str) -> list[JSON]:
    return [o for o in objs if o.get("kind") == kind]


def one(objs: list[JSON], kind: str) -> JSON:
    found = by_kind(objs, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def component(objs: list[JSON], name: str) -> list[JSON]:
    """The objects of one component of the chart: `operator`, or `dashboard` when it is enabled."""
    return [o for o in objs if o["metadata"].get("labels", {}).get("app.kubernetes.io/component") == name]


def operator_args(objs: list[JSON]) -> list[str]:
    container = one(component(objs, "operator"), "Deployment")["spec"]["template"]["spec"]["containers"][0]
    return list(container["command"])


def validate(obj: JSON) -> None:
    """Strict validation against the Kubernetes OpenAPI schemas; custom resources against their
    CRD's schema (the chart's crds/), and the Prometheus Operator's ServiceMonitor by its shape."""
    api_version, kind = obj["apiVersion"], obj["kind"]
    group = api_version.split("/")[0] if "/" in api_version else ""
    for crd in crds():
        if crd["spec"]["group"] == group and crd["spec"]["names"]["kind"] == kind:
            version = next(v for v in crd["spec"]["versions"] if f"{group}/{v['name']}" == api_version)
            schema = _structural(version["schema"]["openAPIV3Schema"])
            jsonschema.validate({k: v for k, v in obj.items() if k not in ("apiVersion", "kind")}, schema)
            assert crd["spec"]["scope"] == ("Namespaced" if obj["metadata"].get("namespace") else "Cluster")
            return
    if api_version == "monitoring.coreos.com/v1" and kind == "ServiceMonitor":
        spec = obj["spec"]
        assert spec["selector"]["matchLabels"] and spec["endpoints"], obj
        for endpoint in spec["endpoints"]:
            assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout", "scheme"}, endpoint
        return
    kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def _structural(schema: JSON) -> JSON:
    """An OpenAPI v3 structural schema as JSON Schema (drop the x-kubernetes-* extensions; metadata
    is checked by the API server, not the CRD)."""
    schema = copy.deepcopy(schema)
    schema.setdefault("properties", {})["metadata"] = {"type": "object"}

    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if not k.startswith("x-kubernetes-")}
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    result: JSON = strip(schema)
    return result


def render_script() -> ModuleType:
    """deploy/render.py, the script behind `make manifests`."""
    spec = importlib.util.spec_from_file_location("deploy_render", ROOT / "deploy" / "render.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pod_from_template(deployment: JSON) -> JSON:
    """What the ReplicaSet controller would create for the Deployment (owned by it here, so that
    uninstalling the release garbage-collects the pod)."""
    template = deployment["spec"]["template"]
    metadata = deployment["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{metadata['name']}-{uuid.uuid4().hex[:10]}",
            "namespace": metadata["namespace"],
            "labels": {**template["metadata"]["labels"], "pod-template-hash": "local"},
            "annotations": template["metadata"].get("annotations") or {},
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": metadata["name"],
                    "uid": metadata["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": template["spec"],
    }
