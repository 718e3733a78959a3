"""CustomResourceDefinitions: serving, schema validation/defaulting/pruning, status, Table, scale."""

from __future__ import annotations

import time
from typing import Any, cast

from kubernetes import client

from tests.localcluster.api_harness import HTTP

WIDGETS = "/apis/example.dev/v1/namespaces/{ns}/widgets"


def widget(obj_name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "example.dev/v1", "kind": "Widget", "metadata": {"name": obj_name}, "spec": spec}


def test_crd_is_established_and_served(http: HTTP, widget_crd: dict[str, Any]) -> None:
    crd = http.get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.dev").body
    conds = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conds == {"NamesAccepted": "True", "Established": "True"}
    assert crd["status"]["acceptedNames"]["kind"] == "Widget" and crd["status"]["storedVersions"] == ["v1"]
    resources = {r["name"]: r for r in http.get("/apis/example.dev/v1").body["resources"]}
    assert resources["widgets"]["shortNames"] == ["wd"] and resources["widgets"]["categories"] == ["all"]
    assert "widgets/status" in resources and resources["widgets/scale"]["kind"] == "Scale"
    assert "example.dev" in [g["name"] for g in http.get("/apis").body["groups"]]


def test_validation_messages_name_each_field(http: HTTP, widget_crd: dict[str, Any], namespace: str) -> None:
    base = WIDGETS.format(ns=namespace)
    r = http.post(base, widget("x", size=0))
    assert r.status == 422
    assert r.body["message"] == (
        'Widget.example.dev "x" is invalid: spec.size: Invalid value: 0: spec.size in body should be greater '
        "than or equal to 1"
    )
    assert r.body["details"]["causes"] == [
        {
            "reason": "FieldValueInvalid",
            "message": "Invalid value: 0: spec.size in body should be greater than or equal to 1",
            "field": "spec.size",
        }
    ]
    bad = widget(
        "y",
        size=101,
        color="green",
        name="A",
        ratio=0,
        port=[1],
        tags=["a", "b", "c", "d"],
        when="yesterday",
        items=[{"value": "v"}],
    )
    r = http.post(base, bad)
    assert r.status == 422
    fields = {c["field"]: c["message"] for c in r.body["details"]["causes"]}
    assert fields["spec.size"].endswith("spec.size in body should be less than or equal to 100")
    assert fields["spec.color"] == 'Unsupported value: "green": supported values: "red", "blue"'
    assert "spec.name in body should be at least 2 chars long" in r.body["message"]
    assert "spec.name in body should match '^[a-z]+$'" in r.body["message"]
    assert fields["spec.ratio"].endswith("spec.ratio in body should be greater than 0")
    assert "spec.port" in fields and "integer,string" in fields["spec.port"]
    assert fields["spec.tags"].startswith("Too many: 4: must have at most 3 items")
    assert fields["spec.when"].endswith('spec.when in body must be of type date-time: "yesterday"')
    assert fields["spec.items[0].name"] == "Required value"
    assert r.body["message"].startswith('Widget.example.dev "y" is invalid: [')
    r = http.post(
        base, {"apiVersion": "example.dev/v1", "kind": "Widget", "metadata": {"name": "z"}, "spec": {}}
    )
    assert r.body["details"]["causes"] == [
        {"reason": "FieldValueRequired", "message": "Required value", "field": "spec.size"}
    ]
    r = http.post(base, widget("t", size="three"))
    assert r.body["details"]["causes"][0]["message"] == (
        'Invalid value: "string": spec.size in body must be of type integer: "string"'
    )
    r = http.post(base, widget("e", size=1, template={"spec": {}}))
    assert {c["field"] for c in r.body["details"]["causes"]} == {
        "spec.template.apiVersion",
        "spec.template.kind",
    }


def test_defaults_pruning_and_preserved_fields(
    http: HTTP, widget_crd: dict[str, Any], namespace: str
) -> None:
    base = WIDGETS.format(ns=namespace)
    body = widget("d", size=2, unknown="dropped", free={"anything": {"goes": [1, 2]}}, port="http")
    body["spec"]["template"] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "weird": 1},
        "x": 1,
    }
    body["extra"] = "dropped too"
    r = http.post(base + "?fieldValidation=Ignore", body)
    assert r.status == 201, r.body
    spec = r.body["spec"]
    assert "unknown" not in spec and "extra" not in r.body
    assert spec["color"] == "red" and spec["nested"] == {"level": 5}
    assert spec["free"] == {"anything": {"goes": [1, 2]}} and spec["port"] == "http"
    assert spec["template"]["metadata"] == {"name": "p"} and spec["template"]["x"] == 1
    # Strict refuses unknown fields; Warn accepts and says so in a Warning header
    r = http.post(base + "?fieldValidation=Strict", widget("s", size=1, unknown=1))
    assert r.status == 400 and 'unknown field "spec.unknown"' in r.body["message"]
    r = http.post(base + "?fieldValidation=Warn", widget("w", size=1, unknown=1))
    assert r.status == 201 and 'unknown field \\"spec.unknown\\"' in r.headers.get("Warning", "")


def test_status_subresource_and_generation(http: HTTP, widget_crd: dict[str, Any], namespace: str) -> None:
    base = WIDGETS.format(ns=namespace)
    body = widget("g", size=1)
    body["status"] = {"phase": "Ignored"}
    created = http.post(base, body).body
    assert created["metadata"]["generation"] == 1 and "status" not in created
    r = http.patch(f"{base}/g/status", {"status": {"phase": "Running"}, "spec": {"size": 50}})
    assert r.body["status"] == {"phase": "Running"} and r.body["spec"]["size"] == 1
    assert r.body["metadata"]["generation"] == 1
    r = http.patch(f"{base}/g", {"spec": {"size": 3}, "status": {"phase": "Nope"}})
    assert r.body["metadata"]["generation"] == 2 and r.body["status"] == {"phase": "Running"}
    r = http.patch(f"{base}/g", {"metadata": {"labels": {"a": "b"}}})
    assert r.body["metadata"]["generation"] == 2
    # PUT of a custom resource needs the resourceVersion
    obj = r.body
    obj["metadata"].pop("resourceVersion")
    assert http.put(f"{base}/g", obj).status == 422
    # the status subresource validates against the schema too
    r = http.patch(f"{base}/g/status", {"status": {"size": "big"}})
    assert r.status == 422 and r.body["details"]["causes"][0]["field"] == "status.size"


def test_scale_subresource(http: HTTP, widget_crd: dict[str, Any], namespace: str) -> None:
    base = WIDGETS.format(ns=namespace)
    http.post(base, widget("sc", size=2))
    scale = http.get(f"{base}/sc/scale").body
    assert scale["kind"] == "Scale" and scale["spec"]["replicas"] == 2
    r = http.patch(f"{base}/sc/scale", {"spec": {"replicas": 7}})
    assert r.status == 200 and r.body["spec"]["replicas"] == 7
    assert http.get(f"{base}/sc").body["spec"]["size"] == 7


def test_printer_columns_as_table(http: HTTP, widget_crd: dict[str, Any], namespace: str) -> None:
    base = WIDGETS.format(ns=namespace)
    http.post(base, widget("tb", size=4))
    http.patch(
        f"{base}/tb/status",
        {"status": {"phase": "Ready", "conditions": [{"type": "Ready", "status": "True"}]}},
    )
    accept = (
        "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,"
        "application/json"
    )
    table = http.get(base, headers={"Accept": accept}).body
    assert table["kind"] == "Table" and table["apiVersion"] == "meta.k8s.io/v1"
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Size", "Phase", "Ready", "Age"]
    row = table["rows"][0]
    assert row["cells"][:4] == ["tb", 4, "Ready", "True"] and row["cells"][4].endswith("s")
    assert row["object"]["kind"] == "PartialObjectMetadata"
    table = http.get(f"{base}/tb?includeObject=Object", headers={"Accept": accept}).body
    assert table["rows"][0]["object"]["spec"]["size"] == 4
    pods = http.get(f"/api/v1/namespaces/{namespace}/pods", headers={"Accept": accept}).body
    assert [c["name"] for c in pods["columnDefinitions"]][:5] == [
        "Name",
        "Ready",
        "Status",
        "Restarts",
        "Age",
    ]


def test_custom_objects_api_and_cluster_wide_list(
    k8s: client.ApiClient, widget_crd: dict[str, Any], namespace: str
) -> None:
    api = client.CustomObjectsApi(k8s)
    api.create_namespaced_custom_object("example.dev", "v1", namespace, "widgets", widget("co", size=5))
    # The custom objects API returns the JSON as it came (typed `object` by the client).
    got = cast(
        dict[str, Any], api.get_namespaced_custom_object("example.dev", "v1", namespace, "widgets", "co")
    )
    assert got["spec"]["size"] == 5
    api.patch_namespaced_custom_object_status(
        "example.dev", "v1", namespace, "widgets", "co", {"status": {"phase": "Done"}}
    )
    everywhere = cast(dict[str, Any], api.list_cluster_custom_object("example.dev", "v1", "widgets"))
    assert ("co", namespace) in [
        (i["metadata"]["name"], i["metadata"]["namespace"]) for i in everywhere["items"]
    ]
    api.delete_namespaced_custom_object("example.dev", "v1", namespace, "widgets", "co")


def test_crd_delete_stops_serving_and_removes_objects(http: HTTP, namespace: str) -> None:
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "gizmos.temp.dev"},
        "spec": {
            "group": "temp.dev",
            "scope": "Cluster",
            "names": {"plural": "gizmos", "kind": "Gizmo"},
            "versions": [
                {
                    "name": "v1beta1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                    },
                },
                {
                    "name": "v1",
                    "served": True,
                    "storage": False,
                    "schema": {
                        "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                    },
                },
            ],
        },
    }
    assert http.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd).status == 201
    assert http.get("/apis/temp.dev").body["preferredVersion"]["version"] == "v1"
    r = http.post(
        "/apis/temp.dev/v1/gizmos",
        {"apiVersion": "temp.dev/v1", "kind": "Gizmo", "metadata": {"name": "a"}, "x": 1},
    )
    assert r.status == 201 and r.body["x"] == 1
    # one storage, served at both versions
    assert http.get("/apis/temp.dev/v1beta1/gizmos/a").body["apiVersion"] == "temp.dev/v1beta1"
    http.delete("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/gizmos.temp.dev")
    deadline = time.time() + 5
    while time.time() < deadline and http.get("/apis/temp.dev/v1").status != 404:
        time.sleep(0.05)
    assert http.get("/apis/temp.dev/v1").status == 404
    assert http.get("/apis/temp.dev/v1/gizmos").status == 404
    assert http.get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/gizmos.temp.dev").status == 404
    # recreating it starts empty
    assert http.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd).status == 201
    assert http.get("/apis/temp.dev/v1/gizmos").body["items"] == []
    http.delete("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/gizmos.temp.dev")


def test_invalid_crd_is_refused(http: HTTP) -> None:
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "wrong.bad.dev"},
        "spec": {
            "group": "bad.dev",
            "scope": "Namespaced",
            "names": {"plural": "things", "kind": "Thing"},
            "versions": [],
        },
    }
    r = http.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
    assert r.status == 422
    assert {c["field"] for c in r.body["details"]["causes"]} == {"metadata.name", "spec.versions"}
