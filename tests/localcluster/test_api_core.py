"""Core REST semantics through the kubernetes Python client and raw HTTP."""

from __future__ import annotations

import base64
import time
from typing import Any

import pytest
from kubernetes import client

from tests.localcluster.api_harness import HTTP, APIServerProcess
from tests.support.kube_objects import meta_of, name_of


def test_discovery_documents(http: HTTP) -> None:
    version = http.get("/version").body
    assert version["major"] == "1" and version["gitVersion"].startswith("v1.")
    assert http.get("/api").body["versions"] == ["v1"]
    groups = {g["name"]: g for g in http.get("/apis").body["groups"]}
    for g in (
        "apps",
        "rbac.authorization.k8s.io",
        "apiextensions.k8s.io",
        "coordination.k8s.io",
        "events.k8s.io",
    ):
        assert g in groups
    assert groups["apps"]["preferredVersion"]["groupVersion"] == "apps/v1"
    core = {r["name"]: r for r in http.get("/api/v1").body["resources"]}
    assert core["pods"]["namespaced"] is True and "po" in core["pods"]["shortNames"]
    assert core["namespaces"]["namespaced"] is False
    assert core["pods/status"]["verbs"] == ["get", "patch", "update"]
    assert core["pods/log"]["verbs"] == ["get"]
    assert core["serviceaccounts/token"]["kind"] == "TokenRequest"
    assert "watch" in core["configmaps"]["verbs"] and "deletecollection" in core["configmaps"]["verbs"]
    group = http.get("/apis/coordination.k8s.io").body
    assert group["kind"] == "APIGroup" and group["versions"][0]["version"] == "v1"
    assert http.get("/apis/nope.example").status == 404
    assert http.get("/api/v1/nothings").status == 404


def test_default_namespaces_exist(k8s: client.ApiClient) -> None:
    names = {name_of(n) for n in client.CoreV1Api(k8s).list_namespace().items}
    assert {"default", "kube-system", "kube-public", "kube-node-lease"} <= names


def test_crud_and_metadata(k8s: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(k8s)
    cm = core.create_namespaced_config_map(
        namespace,
        client.V1ConfigMap(metadata=client.V1ObjectMeta(name="a", labels={"x": "1"}), data={"k": "v"}),
    )
    assert cm.metadata is not None and cm.metadata.resource_version is not None
    assert cm.metadata.uid and cm.metadata.creation_timestamp and cm.metadata.resource_version.isdigit()
    got = core.read_namespaced_config_map("a", namespace)
    assert got.metadata is not None
    assert got.data == {"k": "v"} and got.metadata.uid == cm.metadata.uid
    # the global counter: every write gets a larger resourceVersion
    cm.data = {"k": "w"}
    updated = core.replace_namespaced_config_map("a", namespace, cm)
    assert updated.metadata is not None and updated.metadata.resource_version is not None
    assert int(updated.metadata.resource_version) > int(cm.metadata.resource_version)
    # stale resourceVersion: 409 Conflict
    with pytest.raises(client.ApiException) as err:
        core.replace_namespaced_config_map("a", namespace, cm)
    assert err.value.status == 409 and err.value.body is not None
    assert '"reason":"Conflict"' in err.value.body.replace(" ", "")
    # 409 AlreadyExists
    with pytest.raises(client.ApiException) as err:
        core.create_namespaced_config_map(
            namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="a"))
        )
    assert err.value.status == 409 and err.value.body is not None
    assert "AlreadyExists" in err.value.body
    # generateName
    gen = core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(generate_name="g-"))
    )
    assert gen.metadata is not None and gen.metadata.name is not None
    assert gen.metadata.name.startswith("g-") and len(gen.metadata.name) == 7
    core.delete_namespaced_config_map("a", namespace)
    with pytest.raises(client.ApiException) as err:
        core.read_namespaced_config_map("a", namespace)
    assert err.value.status == 404


def test_status_errors_are_kubernetes_shaped(http: HTTP, namespace: str) -> None:
    r = http.get(f"/api/v1/namespaces/{namespace}/configmaps/missing")
    assert r.status == 404
    # byte for byte: metav1.Status's field order, omitempty fields left out, Go's trailing newline
    assert r.raw == (
        b'{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",'
        b'"message":"configmaps \\"missing\\" not found","reason":"NotFound",'
        b'"details":{"name":"missing","kind":"configmaps"},"code":404}\n'
    )
    r = http.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/gone")
    assert r.raw.endswith(b'"details":{"name":"gone","group":"apps","kind":"deployments"},"code":404}\n')
    r = http.get("/apis/no.such.group/v1/things")
    assert r.raw == (
        b'{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",'
        b'"message":"the server could not find the requested resource","reason":"NotFound",'
        b'"details":{},"code":404}\n'
    )
    r = http.post(f"/api/v1/namespaces/{namespace}/configmaps", {"metadata": {}})
    assert r.status == 422 and r.body["reason"] == "Invalid"
    r = http.post(f"/api/v1/namespaces/{namespace}/configmaps", "{not json")
    assert r.status == 400 and r.body["reason"] == "BadRequest"
    r = http.post(f"/api/v1/namespaces/{namespace}/configmaps/x", {"metadata": {"name": "x"}})
    assert r.status == 405 and r.body["reason"] == "MethodNotAllowed"
    r = http.patch(f"/api/v1/namespaces/{namespace}/configmaps/x", {}, content_type="text/plain")
    assert r.status == 415 and r.body["reason"] == "UnsupportedMediaType"
    r = http.post("/api/v1/namespaces/nope-ns/configmaps", {"metadata": {"name": "x"}})
    assert r.status == 404 and r.body["message"] == 'namespaces "nope-ns" not found'
    r = http.post(f"/api/v1/namespaces/{namespace}/configmaps", {"metadata": {"name": "Bad_Name"}})
    assert r.status == 422 and r.body["details"]["causes"][0]["field"] == "metadata.name"
    r = http.get("/api/v1/configmaps", token="wrong-token")
    assert r.status == 401 and r.body["reason"] == "Unauthorized"


def test_secret_string_data_and_yaml_body(http: HTTP, namespace: str) -> None:
    body = (
        f"apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n  namespace: {namespace}\n"
        "stringData:\n  pw: hunter2\n"
    )
    r = http.post(f"/api/v1/namespaces/{namespace}/secrets", body, content_type="application/yaml")
    assert r.status == 201, r.body
    assert "stringData" not in r.body and r.body["type"] == "Opaque"
    assert base64.b64decode(r.body["data"]["pw"]) == b"hunter2"


def test_label_and_field_selectors_and_paging(k8s: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(k8s)
    for i, (env, tier) in enumerate([("prod", "web"), ("prod", "db"), ("dev", "web"), ("qa", None)]):
        labels = {"env": env} | ({"tier": tier} if tier else {})
        core.create_namespaced_config_map(
            namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name=f"c{i}", labels=labels))
        )

    def names(**kw: Any) -> list[str]:
        return [name_of(c) for c in core.list_namespaced_config_map(namespace, **kw).items]

    assert names(label_selector="env=prod") == ["c0", "c1"]
    assert names(label_selector="env==prod,tier!=db") == ["c0"]
    assert names(label_selector="env in (dev, qa)") == ["c2", "c3"]
    assert names(label_selector="env notin (prod)") == ["c2", "c3"]
    assert names(label_selector="!tier") == ["c3"]
    assert names(label_selector="tier") == ["c0", "c1", "c2"]
    assert names(field_selector="metadata.name=c2") == ["c2"]
    assert names(field_selector="metadata.name!=c2,metadata.namespace=" + namespace) == ["c0", "c1", "c3"]
    with pytest.raises(client.ApiException) as err:
        names(field_selector="data.x=1")
    assert err.value.status == 400
    page = core.list_namespaced_config_map(namespace, limit=3)
    assert [name_of(c) for c in page.items][:3] == ["c0", "c1", "c2"]
    assert page.metadata is not None and page.metadata.remaining_item_count is not None
    assert page.metadata._continue and page.metadata.remaining_item_count >= 1
    rest = core.list_namespaced_config_map(namespace, limit=10, _continue=page.metadata._continue)
    assert rest.metadata is not None
    assert "c3" in [name_of(c) for c in rest.items] and not rest.metadata._continue
    # cluster-wide list of a namespaced kind
    everywhere = core.list_config_map_for_all_namespaces(label_selector="env=dev")
    assert [(meta_of(c).namespace, name_of(c)) for c in everywhere.items] == [(namespace, "c2")]


def test_pod_without_a_node_is_pending_and_unschedulable(k8s: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(k8s)
    pod = core.create_namespaced_pod(
        namespace,
        client.V1Pod(
            metadata=client.V1ObjectMeta(name="p"),
            spec=client.V1PodSpec(
                containers=[client.V1Container(name="main", image="busybox")],
                node_selector={"example.dev/none": namespace},  # no node of any test has it
            ),
        ),
    )
    assert pod.spec is not None and pod.status is not None and pod.spec.tolerations is not None
    assert pod.spec.node_name is None  # the scheduler binds, not the API server
    assert pod.status.phase == "Pending"
    assert pod.spec.restart_policy == "Always" and pod.spec.termination_grace_period_seconds == 30
    assert pod.spec.priority == 0 and {
        (t.key, t.effect, t.toleration_seconds) for t in pod.spec.tolerations
    } == {
        ("node.kubernetes.io/not-ready", "NoExecute", 300),
        ("node.kubernetes.io/unreachable", "NoExecute", 300),
    }
    deadline = time.monotonic() + 10
    cond = None
    while time.monotonic() < deadline and cond is None:
        status = core.read_namespaced_pod("p", namespace).status
        assert status is not None
        conds = status.conditions or []
        cond = next((c for c in conds if c.type == "PodScheduled"), None)
        time.sleep(0.05)
    assert cond is not None and cond.status == "False" and cond.reason == "Unschedulable"
    assert cond.message is not None
    assert cond.message == "no nodes available to schedule pods" or (
        cond.message.startswith("0/") and "didn't match Pod's node affinity/selector" in cond.message
    )
    pods = core.list_namespaced_pod(namespace, field_selector="spec.nodeName=,status.phase=Pending")
    assert [name_of(p) for p in pods.items] == ["p"]
    # no Node object is registered here: nothing would stop its containers, so delete is immediate
    core.delete_namespaced_pod("p", namespace)
    assert core.list_namespaced_pod(namespace).items == []


def test_graceful_pod_deletion_when_a_node_exists(http: HTTP, namespace: str) -> None:
    node = {
        "metadata": {"name": f"node-{namespace}"},
        "status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}]},
    }
    assert http.post("/api/v1/nodes", node).status == 201
    try:
        pod = {
            "metadata": {"name": "p"},
            "spec": {"nodeName": f"node-{namespace}", "containers": [{"name": "c", "image": "x"}]},
        }
        base = f"/api/v1/namespaces/{namespace}/pods"
        assert http.post(base, pod).status == 201
        r = http.delete(f"{base}/p")
        assert r.status == 200
        assert (
            r.body["metadata"]["deletionTimestamp"] and r.body["metadata"]["deletionGracePeriodSeconds"] == 30
        )
        assert http.get(f"{base}/p").status == 200  # still there: the node agent has to stop it
        # Status writes meanwhile (the node controller's Ready=False on a lost node, even the
        # phase) do not finish the deletion: only the node's final delete with grace 0 does.
        ready_false = {"conditions": [{"type": "Ready", "status": "False"}]}
        assert http.patch(f"{base}/p/status", {"status": ready_false}).status == 200
        assert http.patch(f"{base}/p", {"metadata": {"labels": {"seen": "yes"}}}).status == 200
        assert http.patch(f"{base}/p/status", {"status": {"phase": "Failed"}}).status == 200
        r = http.get(f"{base}/p")
        assert r.status == 200 and r.body["metadata"]["deletionGracePeriodSeconds"] == 30, r.body
        r = http.delete(f"{base}/p", {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0})
        assert r.status == 200
        assert http.get(f"{base}/p").status == 404
        # finished pods go at once
        assert http.post(base, pod).status == 201
        assert http.patch(f"{base}/p/status", {"status": {"phase": "Succeeded"}}).status == 200
        http.delete(f"{base}/p")
        assert http.get(f"{base}/p").status == 404
    finally:
        http.delete(f"/api/v1/nodes/node-{namespace}")


def test_status_subresource_of_builtins(http: HTTP, namespace: str) -> None:
    base = f"/api/v1/namespaces/{namespace}/pods"
    http.post(base, {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "x"}]}})
    # the main endpoint ignores status; /status changes only status
    r = http.patch(f"{base}/p", {"status": {"phase": "Running"}, "metadata": {"labels": {"a": "b"}}})
    assert r.body["status"]["phase"] == "Pending" and r.body["metadata"]["labels"] == {"a": "b"}
    r = http.patch(
        f"{base}/p/status",
        {"status": {"phase": "Running", "podIP": "127.0.0.5"}, "metadata": {"labels": {"c": "d"}}},
    )
    assert r.body["status"]["phase"] == "Running" and r.body["metadata"]["labels"] == {"a": "b"}


def test_dry_run_and_preconditions(http: HTTP, namespace: str) -> None:
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    r = http.post(base + "?dryRun=All", {"metadata": {"name": "dry"}})
    assert r.status == 201 and r.body["metadata"]["name"] == "dry"
    assert http.get(f"{base}/dry").status == 404
    created = http.post(base, {"metadata": {"name": "c"}, "data": {"a": "1"}}).body
    r = http.patch(f"{base}/c?dryRun=All", {"data": {"a": "2"}})
    assert r.body["data"] == {"a": "2"} and http.get(f"{base}/c").body["data"] == {"a": "1"}
    assert http.delete(f"{base}/c?dryRun=All").status == 200 and http.get(f"{base}/c").status == 200
    r = http.delete(f"{base}/c", {"preconditions": {"uid": "not-the-uid"}})
    assert r.status == 409 and "Precondition failed" in r.body["message"]
    r = http.delete(f"{base}/c", {"preconditions": {"resourceVersion": "1"}})
    assert r.status == 409
    r = http.delete(f"{base}/c", {"preconditions": {"uid": created["metadata"]["uid"]}})
    assert r.status == 200 and r.body["status"] == "Success"


def test_deletecollection(http: HTTP, namespace: str) -> None:
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    for i in range(3):
        http.post(base, {"metadata": {"name": f"c{i}", "labels": {"drop": "yes" if i < 2 else "no"}}})
    r = http.delete(base + "?labelSelector=drop%3Dyes")
    assert r.status == 200 and len(r.body["items"]) == 2
    assert [i["metadata"]["name"] for i in http.get(base).body["items"]] == ["c2"]


def test_delete_answers_what_each_kinds_registry_answers(http: HTTP, namespace: str) -> None:
    ns = f"/api/v1/namespaces/{namespace}"
    # Services, like pods and the other `ReturnDeletedObject` registries, answer the deleted object
    http.post(f"{ns}/services", {"metadata": {"name": "svc"}, "spec": {"ports": [{"port": 80}]}})
    r = http.delete(f"{ns}/services/svc")
    assert r.status == 200
    assert (r.body["kind"], r.body["metadata"]["name"]) == ("Service", "svc")
    http.post(f"{ns}/serviceaccounts", {"metadata": {"name": "sa"}})
    assert http.delete(f"{ns}/serviceaccounts/sa").body["kind"] == "ServiceAccount"
    # the others a Success Status naming what went, the core group left out
    made = http.post(f"{ns}/configmaps", {"metadata": {"name": "cm"}}).body
    r = http.delete(f"{ns}/configmaps/cm")
    assert r.raw == (
        b'{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Success",'
        b'"details":{"name":"cm","kind":"configmaps","uid":"' + made["metadata"]["uid"].encode() + b'"}}\n'
    )
    deployment = {
        "metadata": {"name": "d"},
        "spec": {
            "selector": {"matchLabels": {"a": "b"}},
            "template": {
                "metadata": {"labels": {"a": "b"}},
                "spec": {"containers": [{"name": "c", "image": "i"}]},
            },
        },
    }
    http.post(f"/apis/apps/v1/namespaces/{namespace}/deployments", deployment)
    r = http.delete(f"/apis/apps/v1/namespaces/{namespace}/deployments/d")
    assert r.body["kind"] == "Status"
    assert (r.body["details"]["group"], r.body["details"]["kind"]) == ("apps", "deployments")
    # an object only marked for deletion is answered as it now is, whatever its kind
    http.post(f"{ns}/configmaps", {"metadata": {"name": "held", "finalizers": ["example.dev/hold"]}})
    r = http.delete(f"{ns}/configmaps/held")
    assert r.body["kind"] == "ConfigMap" and r.body["metadata"]["deletionTimestamp"]
    http.patch(f"{ns}/configmaps/held", {"metadata": {"finalizers": None}})


def test_apiservices_are_stored(http: HTTP) -> None:
    base = "/apis/apiregistration.k8s.io/v1/apiservices"
    body = {
        "apiVersion": "apiregistration.k8s.io/v1",
        "kind": "APIService",
        "metadata": {"name": "v1beta1.metrics.example.dev"},
        "spec": {
            "group": "metrics.example.dev",
            "version": "v1beta1",
            "groupPriorityMinimum": 100,
            "versionPriority": 100,
            "service": {"namespace": "default", "name": "metrics", "port": 443},
        },
    }
    r = http.post(base, body)
    assert r.status == 201, r.body
    assert http.get(f"{base}/v1beta1.metrics.example.dev").body["spec"]["group"] == "metrics.example.dev"
    listed = http.get("/apis/apiregistration.k8s.io/v1").body
    assert any(res["name"] == "apiservices" and not res["namespaced"] for res in listed["resources"])
    assert http.delete(f"{base}/v1beta1.metrics.example.dev").body["kind"] == "Status"
    assert http.get(f"{base}/v1beta1.metrics.example.dev").status == 404


def test_finalizers_hold_deletion(http: HTTP, namespace: str) -> None:
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    http.post(base, {"metadata": {"name": "f", "finalizers": ["example.dev/hold", "example.dev/two"]}})
    r = http.delete(f"{base}/f")
    assert r.status == 200
    obj = http.get(f"{base}/f").body
    assert obj["metadata"]["deletionTimestamp"]
    # no new finalizers on an object being deleted
    r = http.patch(
        f"{base}/f", {"metadata": {"finalizers": ["example.dev/hold", "example.dev/two", "x.dev/new"]}}
    )
    assert r.status == 422
    http.patch(f"{base}/f", {"metadata": {"finalizers": ["example.dev/two"]}})
    assert http.get(f"{base}/f").status == 200
    http.patch(f"{base}/f", {"metadata": {"finalizers": None}})
    assert http.get(f"{base}/f").status == 404


def test_noop_update_keeps_resource_version(http: HTTP, namespace: str) -> None:
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    rv = http.post(base, {"metadata": {"name": "n"}, "data": {"a": "1"}}).body["metadata"]["resourceVersion"]
    assert http.patch(f"{base}/n", {"data": {"a": "1"}}).body["metadata"]["resourceVersion"] == rv


def test_events_in_both_api_groups(http: HTTP, namespace: str) -> None:
    core_ev = {
        "metadata": {"name": "e1"},
        "involvedObject": {"kind": "Pod", "name": "p", "namespace": namespace, "uid": "u1"},
        "reason": "Started",
        "message": "hello",
        "type": "Normal",
        "source": {"component": "tester"},
    }
    assert http.post(f"/api/v1/namespaces/{namespace}/events", core_ev).status == 201
    ev = http.get(f"/apis/events.k8s.io/v1/namespaces/{namespace}/events/e1").body
    assert ev["regarding"]["name"] == "p" and ev["note"] == "hello" and ev["apiVersion"] == "events.k8s.io/v1"
    new_ev = {
        "metadata": {"name": "e2"},
        "regarding": {"kind": "Pod", "name": "q", "namespace": namespace},
        "note": "from events.k8s.io",
        "reason": "Pulled",
        "type": "Normal",
        "action": "Pull",
        "reportingController": "tester",
        "reportingInstance": "t1",
        "eventTime": "2024-01-01T00:00:00.000000Z",
    }
    assert http.post(f"/apis/events.k8s.io/v1/namespaces/{namespace}/events", new_ev).status == 201
    sel = "involvedObject.name=q"
    items = http.get(f"/api/v1/namespaces/{namespace}/events?fieldSelector={sel}").body["items"]
    assert [i["message"] for i in items] == ["from events.k8s.io"]


def test_leases_and_rbac_kinds_stored(k8s: client.ApiClient, namespace: str) -> None:
    coord = client.CoordinationV1Api(k8s)
    lease = coord.create_namespaced_lease(
        namespace,
        client.V1Lease(metadata=client.V1ObjectMeta(name="l"), spec=client.V1LeaseSpec(holder_identity="me")),
    )
    assert lease.spec is not None and lease.spec.holder_identity == "me"
    rbac = client.RbacAuthorizationV1Api(k8s)
    rbac.create_cluster_role(
        client.V1ClusterRole(
            metadata=client.V1ObjectMeta(name=f"system:{namespace}"),
            rules=[client.V1PolicyRule(api_groups=[""], resources=["pods"], verbs=["get"])],
        )
    )
    rbac.create_namespaced_role_binding(
        namespace,
        client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name="rb"),
            role_ref=client.V1RoleRef(
                api_group="rbac.authorization.k8s.io", kind="ClusterRole", name=f"system:{namespace}"
            ),
            subjects=[client.RbacV1Subject(kind="ServiceAccount", name="default", namespace=namespace)],
        ),
    )
    rules = rbac.read_cluster_role(f"system:{namespace}").rules
    assert rules is not None and rules[0].verbs == ["get"]
    rbac.delete_cluster_role(f"system:{namespace}")


def test_default_service_account_appears(k8s: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(k8s)
    deadline = time.time() + 5
    while time.time() < deadline:
        if [name_of(s) for s in core.list_namespaced_service_account(namespace).items] == ["default"]:
            return
        time.sleep(0.05)
    raise AssertionError("no default ServiceAccount")


def test_service_gets_cluster_ip(k8s: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(k8s)
    svc = core.create_namespaced_service(
        namespace,
        client.V1Service(
            metadata=client.V1ObjectMeta(name="s"),
            spec=client.V1ServiceSpec(selector={"a": "b"}, ports=[client.V1ServicePort(port=80)]),
        ),
    )
    assert svc.spec is not None and svc.spec.cluster_ip is not None and svc.spec.ports is not None
    assert svc.spec.cluster_ip.startswith("10.") and svc.spec.ports[0].target_port == 80
    headless = core.create_namespaced_service(
        namespace,
        client.V1Service(
            metadata=client.V1ObjectMeta(name="h"), spec=client.V1ServiceSpec(cluster_ip="None")
        ),
    )
    assert headless.spec is not None and headless.spec.cluster_ip == "None"
    cluster_ip = svc.spec.cluster_ip
    svc.spec.selector = {"a": "c"}
    svc.spec.cluster_ip = None
    svc.spec.cluster_ips = None
    again = core.replace_namespaced_service("s", namespace, svc)
    # The IP the service had (svc.spec.cluster_ip is None by now: comparing with it passed on no IP).
    assert again.spec is not None and again.spec.cluster_ip is not None
    assert again.spec.cluster_ip == cluster_ip or again.spec.cluster_ip.startswith("10.")


def test_apiserver_process_stops_on_sigterm(fresh_apiserver: APIServerProcess) -> None:
    fresh_apiserver.proc.terminate()
    assert fresh_apiserver.proc.wait(timeout=30) == 0, fresh_apiserver.log()


def test_immutable_fields(http: HTTP, namespace: str) -> None:
    base = f"/api/v1/namespaces/{namespace}"
    http.post(
        f"{base}/pods", {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "a:1"}]}}
    )
    r = http.patch(f"{base}/pods/p", {"spec": {"containers": [{"name": "c", "image": "a:2"}]}})
    assert r.status == 200 and r.body["spec"]["containers"][0]["image"] == "a:2"
    r = http.patch(
        f"{base}/pods/p",
        {"spec": {"containers": [{"name": "c", "image": "a:2", "command": ["x"]}]}},
        content_type="application/strategic-merge-patch+json",
    )
    assert r.status == 422 and "pod updates may not change fields other than" in r.body["message"]
    http.post(f"{base}/configmaps", {"metadata": {"name": "frozen"}, "data": {"a": "1"}, "immutable": True})
    r = http.patch(f"{base}/configmaps/frozen", {"data": {"a": "2"}})
    assert r.status == 422 and r.body["details"]["causes"][0]["field"] == "data"
    assert http.patch(f"{base}/configmaps/frozen", {"metadata": {"labels": {"ok": "yes"}}}).status == 200


def test_builtin_pod_and_service_validation(http: HTTP, namespace: str) -> None:
    base = f"/api/v1/namespaces/{namespace}"
    pod = {
        "metadata": {"name": "bad"},
        "spec": {
            "containers": [
                {"name": "main", "image": "i", "volumeMounts": [{"name": "nope", "mountPath": "/x"}]},
                {
                    "name": "main",
                    "env": [{"name": "1BAD", "value": "x"}],
                    "ports": [{"containerPort": 70000}],
                },
            ]
        },
    }
    r = http.post(f"{base}/pods", pod)
    assert r.status == 422
    causes = {c["field"]: c["message"] for c in r.body["details"]["causes"]}
    assert causes["spec.containers[0].volumeMounts[0].name"] == 'Not found: "nope"'
    assert causes["spec.containers[1].name"] == 'Duplicate value: "main"'
    assert (
        "spec.containers[1].env[0].name" in causes and "spec.containers[1].ports[0].containerPort" in causes
    )
    assert r.body["message"].startswith('Pod "bad" is invalid: [')
    r = http.post(
        f"{base}/services", {"metadata": {"name": "s"}, "spec": {"ports": [{"port": 1}, {"port": 2}]}}
    )
    assert r.status == 422 and r.body["details"]["causes"][0]["field"] == "spec.ports[0].name"
    deploy = {
        "metadata": {"name": "d"},
        "spec": {
            "selector": {"matchLabels": {"a": "b"}},
            "template": {
                "metadata": {"labels": {"a": "b"}},
                "spec": {"containers": [{"name": "c", "image": "i", "env": [{"value": "v"}]}]},
            },
        },
    }
    r = http.post(f"/apis/apps/v1/namespaces/{namespace}/deployments", deploy)
    assert (
        r.status == 422
        and r.body["details"]["causes"][0]["field"] == "spec.template.spec.containers[0].env[0].name"
    )
