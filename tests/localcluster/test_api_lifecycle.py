"""Garbage collection, namespace termination, patches, tokens, persistence and the pod log proxy."""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from kubernetes import client

from tests.localcluster.api_harness import HTTP, APIServerProcess, start_apiserver
from tests.support.processes import free_port
from tests.support.processes import wait_until as wait_for


def owned(name: str, owner: dict[str, Any], **meta: Any) -> dict[str, Any]:
    ref = {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "blockOwnerDeletion": True,
    }
    return {"metadata": {"name": name, "ownerReferences": [ref], **meta}}


def test_garbage_collection_background(http: HTTP, namespace: str) -> None:
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    owner = http.post(base, {"metadata": {"name": "owner"}}).body
    owner["apiVersion"], owner["kind"] = "v1", "ConfigMap"
    http.post(base, owned("child", owner))
    grandchild_owner = http.get(f"{base}/child").body
    grandchild_owner["apiVersion"], grandchild_owner["kind"] = "v1", "ConfigMap"
    http.post(base, owned("grandchild", grandchild_owner))
    http.delete(f"{base}/owner")
    wait_for("child collected", lambda: http.get(f"{base}/child").status == 404)
    wait_for("grandchild collected", lambda: http.get(f"{base}/grandchild").status == 404)


def test_garbage_collection_orphan(http: HTTP, namespace: str) -> None:
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    owner = http.post(base, {"metadata": {"name": "owner"}}).body
    owner["apiVersion"], owner["kind"] = "v1", "ConfigMap"
    http.post(base, owned("child", owner))
    r = http.delete(f"{base}/owner", {"propagationPolicy": "Orphan"})
    assert r.status == 200
    wait_for("owner gone", lambda: http.get(f"{base}/owner").status == 404)
    child = http.get(f"{base}/child").body
    assert "ownerReferences" not in child["metadata"]


def test_garbage_collection_foreground(http: HTTP, namespace: str) -> None:
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    owner = http.post(base, {"metadata": {"name": "owner"}}).body
    owner["apiVersion"], owner["kind"] = "v1", "ConfigMap"
    http.post(base, owned("child", owner, finalizers=["example.dev/slow"]))
    r = http.delete(f"{base}/owner?propagationPolicy=Foreground")
    assert r.status == 200 and "foregroundDeletion" in r.body["metadata"]["finalizers"]
    wait_for("child deleting", lambda: http.get(f"{base}/child").body["metadata"].get("deletionTimestamp"))
    time.sleep(0.2)
    # the owner waits for its dependents
    assert http.get(f"{base}/owner").status == 200
    http.patch(f"{base}/child", {"metadata": {"finalizers": None}})
    wait_for("owner gone", lambda: http.get(f"{base}/owner").status == 404)


def test_dependents_of_a_custom_resource(http: HTTP, widget_crd: dict[str, Any], namespace: str) -> None:
    wbase = f"/apis/example.dev/v1/namespaces/{namespace}/widgets"
    owner = http.post(
        wbase,
        {"apiVersion": "example.dev/v1", "kind": "Widget", "metadata": {"name": "o"}, "spec": {"size": 1}},
    ).body
    pod = owned("p", owner)
    pod["spec"] = {"containers": [{"name": "c", "image": "i"}]}
    http.post(f"/api/v1/namespaces/{namespace}/pods", pod)
    http.delete(f"{wbase}/o")
    wait_for("pod collected", lambda: http.get(f"/api/v1/namespaces/{namespace}/pods/p").status == 404)


def test_namespace_deletion_removes_its_objects(k8s: client.ApiClient, http: HTTP) -> None:
    core = client.CoreV1Api(k8s)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="doomed")))
    core.create_namespaced_config_map(
        "doomed", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="a", finalizers=["x.dev/f"]))
    )
    core.create_namespaced_secret("doomed", client.V1Secret(metadata=client.V1ObjectMeta(name="s")))
    core.delete_namespace("doomed")
    ns = core.read_namespace("doomed")
    assert ns.status is not None and ns.metadata is not None
    assert ns.status.phase == "Terminating" and ns.metadata.deletion_timestamp
    # no new objects in a terminating namespace
    r = http.post("/api/v1/namespaces/doomed/configmaps", {"metadata": {"name": "late"}})
    assert r.status == 403
    wait_for("secret removed", lambda: http.get("/api/v1/namespaces/doomed/secrets/s").status == 404)
    assert http.get("/api/v1/namespaces/doomed").status == 200  # the finalizer on "a" holds it
    http.patch("/api/v1/namespaces/doomed/configmaps/a", {"metadata": {"finalizers": []}})
    wait_for("namespace removed", lambda: http.get("/api/v1/namespaces/doomed").status == 404)


def test_strategic_merge_patch_of_builtins(http: HTTP, namespace: str) -> None:
    base = f"/api/v1/namespaces/{namespace}/podtemplates"
    spec = {
        "containers": [
            {
                "name": "a",
                "image": "i1",
                "env": [{"name": "X", "value": "1"}],
                "ports": [{"containerPort": 80}],
            },
            {"name": "b", "image": "i2"},
        ],
        "volumes": [{"name": "v1", "emptyDir": {}}],
    }
    http.post(base, {"metadata": {"name": "t", "finalizers": ["a.dev/x"]}, "template": {"spec": spec}})
    smp = "application/strategic-merge-patch+json"
    patch = {
        "metadata": {"finalizers": ["b.dev/y"]},
        "template": {
            "spec": {
                "containers": [
                    {"name": "a", "env": [{"name": "Y", "value": "2"}], "ports": [{"containerPort": 81}]}
                ],
                "volumes": [{"name": "v2", "emptyDir": {}}],
            }
        },
    }
    r = http.patch(f"{base}/t", patch, content_type=smp)
    assert r.status == 200, r.body
    got = r.body["template"]["spec"]
    assert [c["name"] for c in got["containers"]] == ["a", "b"]
    assert got["containers"][0]["image"] == "i1"
    assert [e["name"] for e in got["containers"][0]["env"]] == ["X", "Y"]
    assert [p["containerPort"] for p in got["containers"][0]["ports"]] == [80, 81]
    assert [v["name"] for v in got["volumes"]] == ["v1", "v2"]
    assert r.body["metadata"]["finalizers"] == ["a.dev/x", "b.dev/y"]
    # $patch: delete removes one element by key; $setElementOrder orders a merged list
    r = http.patch(
        f"{base}/t",
        {"template": {"spec": {"containers": [{"name": "b", "$patch": "delete"}]}}},
        content_type=smp,
    )
    assert [c["name"] for c in r.body["template"]["spec"]["containers"]] == ["a"]
    order = {"template": {"spec": {"$setElementOrder/volumes": [{"name": "v2"}, {"name": "v1"}]}}}
    r = http.patch(f"{base}/t", order, content_type=smp)
    assert [v["name"] for v in r.body["template"]["spec"]["volumes"]] == ["v2", "v1"]
    http.patch(f"{base}/t", {"metadata": {"finalizers": None}})
    # conditions merge by type on a pod's status
    pods = f"/api/v1/namespaces/{namespace}/pods"
    # bound by name, so the scheduler adds no PodScheduled condition of its own
    spec = {"nodeName": "nowhere", "containers": [{"name": "c", "image": "i"}]}
    http.post(pods, {"metadata": {"name": "p"}, "spec": spec})
    http.patch(
        f"{pods}/p/status",
        {"status": {"conditions": [{"type": "Ready", "status": "False"}]}},
        content_type=smp,
    )
    r = http.patch(
        f"{pods}/p/status", {"status": {"conditions": [{"type": "Init", "status": "True"}]}}, content_type=smp
    )
    assert {c["type"] for c in r.body["status"]["conditions"]} == {"Ready", "Init"}
    # custom resources refuse strategic merge, as on a real cluster
    r = http.patch(f"/apis/example.dev/v1/namespaces/{namespace}/widgets/x", {}, content_type=smp)
    assert r.status in (404, 415)


def test_json_patch_and_merge_patch(http: HTTP, namespace: str) -> None:
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    rv = http.post(base, {"metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}}).body["metadata"][
        "resourceVersion"
    ]
    jp = "application/json-patch+json"
    r = http.patch(
        f"{base}/c",
        [
            {"op": "test", "path": "/metadata/resourceVersion", "value": rv},
            {"op": "replace", "path": "/data/a", "value": "9"},
        ],
        content_type=jp,
    )
    assert r.status == 200 and r.body["data"]["a"] == "9"
    r = http.patch(
        f"{base}/c", [{"op": "test", "path": "/metadata/resourceVersion", "value": rv}], content_type=jp
    )
    assert r.status == 422
    r = http.patch(f"{base}/c", [{"op": "remove", "path": "/data/nope"}], content_type=jp)
    assert r.status == 422
    r = http.patch(f"{base}/c", {"data": {"b": None, "c": "3"}})
    assert r.body["data"] == {"a": "9", "c": "3"}
    # a merge patch carrying a stale resourceVersion conflicts
    r = http.patch(f"{base}/c", {"metadata": {"resourceVersion": rv}, "data": {"a": "0"}})
    assert r.status == 409


def test_server_side_apply_raw(http: HTTP, namespace: str) -> None:
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    apply = "application/apply-patch+yaml"
    cfg = (
        f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: s\n  namespace: {namespace}\n"
        "data:\n  a: '1'\n  b: '2'\n"
    )
    r = http.patch(f"{base}/s?fieldManager=alice", cfg, content_type=apply)
    assert r.status == 201 and r.body["data"] == {"a": "1", "b": "2"}
    mf = r.body["metadata"]["managedFields"]
    assert mf[0]["manager"] == "alice" and mf[0]["operation"] == "Apply"
    assert mf[0]["fieldsV1"] == {"f:data": {"f:a": {}, "f:b": {}}}
    # bob changes a field alice owns: conflict, then forced
    cfg_bob = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: s\ndata:\n  a: 'bob'\n"
    r = http.patch(f"{base}/s?fieldManager=bob", cfg_bob, content_type=apply)
    assert r.status == 409 and r.body["reason"] == "Conflict"
    assert r.body["details"]["causes"][0] == {
        "reason": "FieldManagerConflict",
        "message": 'conflict with "alice" using v1',
        "field": ".data.a",
    }
    r = http.patch(f"{base}/s?fieldManager=bob&force=true", cfg_bob, content_type=apply)
    assert r.status == 200 and r.body["data"]["a"] == "bob"
    # alice stops applying b: it is removed; a is now bob's and stays
    cfg2 = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: s\ndata: {}\n"
    r = http.patch(f"{base}/s?fieldManager=alice", cfg2, content_type=apply)
    assert r.body["data"] == {"a": "bob"}
    r = http.patch(f"{base}/s", cfg2, content_type=apply)
    assert r.status == 400 and "fieldManager" in r.body["message"]


def test_service_account_token_request(apiserver: APIServerProcess, http: HTTP, namespace: str) -> None:
    wait_for(
        "default SA",
        lambda: http.get(f"/api/v1/namespaces/{namespace}/serviceaccounts/default").status == 200,
    )
    http.post(f"/api/v1/namespaces/{namespace}/serviceaccounts", {"metadata": {"name": "robot"}})
    req = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {
            "expirationSeconds": 3600,
            "audiences": ["trainjob"],
            "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "p"},
        },
    }
    r = http.post(f"/api/v1/namespaces/{namespace}/serviceaccounts/robot/token", req)
    assert r.status == 201 and r.body["kind"] == "TokenRequest"
    token = r.body["status"]["token"]
    assert r.body["status"]["expirationTimestamp"]
    # the token is accepted and maps back to the ServiceAccount
    r = http.get(f"/api/v1/namespaces/{namespace}/configmaps", token=token)
    assert r.status == 200
    review = http.post("/apis/authentication.k8s.io/v1/tokenreviews", {"spec": {"token": token}}).body
    assert review["status"]["authenticated"] is True
    assert review["status"]["user"]["username"] == f"system:serviceaccount:{namespace}:robot"
    who = http.post("/apis/authentication.k8s.io/v1/selfsubjectreviews", {}, token=token).body
    assert who["status"]["userInfo"]["username"] == f"system:serviceaccount:{namespace}:robot"
    assert http.post(f"/api/v1/namespaces/{namespace}/serviceaccounts/nobody/token", req).status == 404
    # the token dies with its ServiceAccount
    http.delete(f"/api/v1/namespaces/{namespace}/serviceaccounts/robot")
    assert http.get(f"/api/v1/namespaces/{namespace}/configmaps", token=token).status == 401
    ssar = {"spec": {"resourceAttributes": {"verb": "get", "resource": "pods", "namespace": namespace}}}
    assert (
        http.post("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", ssar).body["status"]["allowed"]
        is True
    )


def test_state_file_survives_restart(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    server = start_apiserver(tmp_path / "a", "--state-file", str(state))
    try:
        http = HTTP(server)
        http.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", _crd())
        http.post("/api/v1/namespaces/default/configmaps", {"metadata": {"name": "kept"}, "data": {"a": "1"}})
        http.post("/api/v1/namespaces/default/serviceaccounts", {"metadata": {"name": "sa"}})
        token = http.post("/api/v1/namespaces/default/serviceaccounts/sa/token", {"spec": {}}).body["status"][
            "token"
        ]
        http.post(
            "/apis/p.dev/v1/namespaces/default/things",
            {"apiVersion": "p.dev/v1", "kind": "Thing", "metadata": {"name": "t"}},
        )
        rv = int(http.get("/api/v1/namespaces/default/configmaps").body["metadata"]["resourceVersion"])
        admin = server.token
    finally:
        server.stop()
    assert server.proc.returncode == 0 and state.exists()
    again = start_apiserver(tmp_path / "b", "--state-file", str(state))
    try:
        http = HTTP(again)
        assert again.token == admin
        assert http.get("/api/v1/namespaces/default/configmaps/kept").body["data"] == {"a": "1"}
        assert http.get("/apis/p.dev/v1/namespaces/default/things/t").status == 200
        created = http.post("/api/v1/namespaces/default/configmaps", {"metadata": {"name": "new"}}).body
        assert int(created["metadata"]["resourceVersion"]) > rv
        assert http.get("/api/v1/namespaces/default/configmaps", token=token).status == 200
    finally:
        again.stop()


def test_state_file_keeps_every_answered_write_through_sigkill(tmp_path: Path) -> None:
    """The journal: what the server answered is on disk before the answer, so a SIGKILL right
    after a burst of writes (well inside the snapshot's debounce) loses none of them."""
    state = tmp_path / "state.json"
    server = start_apiserver(tmp_path / "a", "--state-file", str(state))
    base = "/api/v1/namespaces/default/configmaps"
    try:
        http = HTTP(server)
        for i in range(20):
            http.post(base, {"metadata": {"name": f"cm{i}"}, "data": {"v": "0"}})
        http.patch(f"{base}/cm3", {"data": {"v": "1"}}, content_type="application/merge-patch+json")
        assert http.delete(f"{base}/cm4").status == 200
        last = http.post(base, {"metadata": {"name": "last"}}).body
    finally:
        server.proc.kill()
        server.proc.wait(timeout=10)
    again = start_apiserver(tmp_path / "b", "--state-file", str(state))
    try:
        http = HTTP(again)
        names = {o["metadata"]["name"] for o in http.get(base).body["items"]}
        assert names == {f"cm{i}" for i in range(20) if i != 4} | {"last"}
        assert http.get(f"{base}/cm3").body["data"] == {"v": "1"}
        kept = http.get(f"{base}/last").body
        assert kept["metadata"]["resourceVersion"] == last["metadata"]["resourceVersion"]
        # New writes go on after every version handed out before the kill.
        created = http.post(base, {"metadata": {"name": "new"}}).body
        assert int(created["metadata"]["resourceVersion"]) > int(last["metadata"]["resourceVersion"])
    finally:
        again.stop()
    # The restart wrote a snapshot with everything and emptied the journal.
    assert (tmp_path / "state.json.journal").stat().st_size == 0
    assert any(o["object"]["metadata"]["name"] == "last" for o in json.loads(state.read_text())["objects"])


def _crd() -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "things.p.dev"},
        "spec": {
            "group": "p.dev",
            "scope": "Namespaced",
            "names": {"plural": "things", "kind": "Thing"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": {"type": "object"}},
                }
            ],
        },
    }


class FakeKubelet:
    """A stand-in for the node agent's log endpoint: `/containerLogs/{ns}/{pod}/{container}`."""

    def __init__(self) -> None:
        self.port = free_port()
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.runner: web.AppRunner | None = None

    async def _logs(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.path, dict(request.query)))
        container = request.match_info["container"]
        if container == "missing":
            return web.Response(status=404, text="container not found")
        resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await resp.prepare(request)
        lines = [f"{container} line {i}\n" for i in range(3)]
        if request.query.get("tailLines"):
            lines = lines[-int(request.query["tailLines"]) :]
        for line in lines:
            await resp.write(line.encode())
        if request.query.get("follow") == "true":
            for i in range(3, 6):
                await asyncio.sleep(0.2)
                await resp.write(f"{container} line {i}\n".encode())
        await resp.write_eof()
        return resp

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get("/containerLogs/{ns}/{pod}/{container}", self._logs)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    def start(self) -> None:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)

    def stop(self) -> None:
        if self.runner is not None:
            asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def fake_kubelet() -> Any:
    kubelet = FakeKubelet()
    kubelet.start()
    try:
        yield kubelet
    finally:
        kubelet.stop()


def test_pod_logs_are_proxied_to_the_node_with_fake_kubelet(
    apiserver: APIServerProcess, http: HTTP, namespace: str, fake_kubelet: FakeKubelet
) -> None:
    node = f"logs-{namespace}"
    http.post(
        "/api/v1/nodes",
        {
            "metadata": {"name": node},
            "status": {
                "addresses": [
                    {"type": "InternalIP", "address": "127.0.0.1"},
                    {"type": "Hostname", "address": node},
                ],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": fake_kubelet.port}},
            },
        },
    )
    try:
        base = f"/api/v1/namespaces/{namespace}/pods"
        http.post(
            base,
            {
                "metadata": {"name": "one"},
                "spec": {"nodeName": node, "containers": [{"name": "main", "image": "i"}]},
            },
        )
        two = {
            "metadata": {"name": "two"},
            "spec": {
                "nodeName": node,
                "containers": [{"name": "a", "image": "i"}, {"name": "b", "image": "i"}],
            },
        }
        http.post(base, two)
        r = http.get(f"{base}/one/log")
        assert r.status == 200 and r.body == "main line 0\nmain line 1\nmain line 2\n"
        assert fake_kubelet.requests[-1][0] == f"/containerLogs/{namespace}/one/main"
        r = http.get(f"{base}/two/log")
        assert (
            r.status == 400
            and r.body["message"] == "a container name must be specified for pod two, choose one of: [a b]"
        )
        assert http.get(f"{base}/two/log?container=b&tailLines=1").body == "b line 2\n"
        assert fake_kubelet.requests[-1][1] == {"tailLines": "1"}
        assert http.get(f"{base}/two/log?container=zzz").status == 400
        http.patch(
            f"{base}/two", {"metadata": {"annotations": {"kubectl.kubernetes.io/default-container": "b"}}}
        )
        assert http.get(f"{base}/two/log").body.startswith("b line 0")
        # kubectl logs -f streams as the node writes
        started = time.monotonic()
        proc = subprocess.run(
            [
                "/usr/bin/kubectl" if Path("/usr/bin/kubectl").exists() else "kubectl",
                "logs",
                "-f",
                "one",
                "-n",
                namespace,
            ],
            env=apiserver.env(),
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        assert proc.stdout.splitlines() == [f"main line {i}" for i in range(6)]
        assert time.monotonic() - started >= 0.5
        out = apiserver.kubectl("logs", "two", "-c", "a", "--tail=2", "-n", namespace).stdout
        assert out == "a line 1\na line 2\n"
    finally:
        http.delete(f"/api/v1/nodes/{node}")


def test_json_output_is_compact_and_parses(http: HTTP) -> None:
    assert json.dumps(http.get("/api/v1/namespaces/default").body)


def test_endpoints_follow_service_pods(http: HTTP, namespace: str) -> None:
    ns = f"/api/v1/namespaces/{namespace}"
    http.post(
        f"{ns}/services",
        {
            "metadata": {"name": "job"},
            "spec": {
                "clusterIP": "None",
                "selector": {"app": "j"},
                "ports": [{"name": "rdzv", "port": 29500}],
            },
        },
    )
    for i in range(2):
        pod = {
            "metadata": {"name": f"job-{i}", "labels": {"app": "j"}},
            "spec": {"hostname": f"job-{i}", "subdomain": "job", "containers": [{"name": "c", "image": "i"}]},
        }
        http.post(f"{ns}/pods", pod)
        status: dict[str, Any] = {"phase": "Running", "podIP": f"127.0.10.{i + 1}"}
        if i == 0:
            status["conditions"] = [{"type": "Ready", "status": "True"}]
        http.patch(f"{ns}/pods/job-{i}/status", {"status": status})

    def endpoints() -> Any:
        ep = http.get(f"{ns}/endpoints/job").body
        subsets = ep.get("subsets") or []
        return subsets if subsets and subsets[0].get("notReadyAddresses") else None

    subsets = wait_for("endpoints", endpoints)
    assert [(a["ip"], a["hostname"]) for a in subsets[0]["addresses"]] == [("127.0.10.1", "job-0")]
    assert [a["ip"] for a in subsets[0]["notReadyAddresses"]] == ["127.0.10.2"]
    assert subsets[0]["ports"] == [{"name": "rdzv", "port": 29500, "protocol": "TCP"}]
    slices = http.get(
        f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices?labelSelector=kubernetes.io/service-name%3Djob"
    ).body
    eps = slices["items"][0]["endpoints"]
    assert [(e["addresses"], e["conditions"]["ready"]) for e in eps] == [
        (["127.0.10.1"], True),
        (["127.0.10.2"], False),
    ]
    http.delete(f"{ns}/services/job")
    wait_for("endpoints removed", lambda: http.get(f"{ns}/endpoints/job").status == 404)
    wait_for(
        "slices removed",
        lambda: (
            http.get(f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices").body["items"] == []
        ),
    )
