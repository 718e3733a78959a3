"""Watch: resourceVersion semantics, selectors, bookmarks, timeouts, 410 Gone, Table events."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from typing import Any

import pytest
from kubernetes import client, watch

from tests.localcluster.api_harness import HTTP, APIServerProcess


def stream(
    server: APIServerProcess,
    path: str,
    until: int,
    timeout: float = 10,
    headers: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Read watch events (one JSON object a line) until `until` arrive or the server closes."""
    req = urllib.request.Request(  # noqa: S310 - http://127.0.0.1 only
        server.url + path, headers={"Authorization": f"Bearer {server.token}", **(headers or {})}
    )
    events: list[dict[str, Any]] = []
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - http://127.0.0.1 only
        assert resp.headers["Content-Type"].startswith("application/json")
        while len(events) < until:
            line = resp.readline()
            if not line:
                break
            events.append(json.loads(line))
    return events


def in_background(fn: Any, delay: float = 0.3) -> threading.Thread:
    def run() -> None:
        time.sleep(delay)
        fn()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_watch_from_unset_and_zero_sends_current_state(
    apiserver: APIServerProcess, http: HTTP, namespace: str
) -> None:
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    http.post(base, {"metadata": {"name": "a"}})
    http.post(base, {"metadata": {"name": "b"}})
    for rv in ("", "&resourceVersion=0"):
        events = stream(apiserver, f"{base}?watch=true&timeoutSeconds=1{rv}", until=2)
        assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
            ("ADDED", "a"),
            ("ADDED", "b"),
        ]
        assert events[0]["object"]["kind"] == "ConfigMap" and events[0]["object"]["apiVersion"] == "v1"


def test_watch_from_a_resource_version_replays_changes(
    apiserver: APIServerProcess, http: HTTP, namespace: str
) -> None:
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    rv = http.get(base).body["metadata"]["resourceVersion"]
    http.post(base, {"metadata": {"name": "a"}, "data": {"x": "1"}})
    http.patch(f"{base}/a", {"data": {"x": "2"}})
    http.delete(f"{base}/a")
    events = stream(apiserver, f"{base}?watch=1&resourceVersion={rv}&timeoutSeconds=2", until=3)
    assert [e["type"] for e in events] == ["ADDED", "MODIFIED", "DELETED"]
    rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert rvs == sorted(rvs) and rvs[0] > int(rv)
    assert events[1]["object"]["data"] == {"x": "2"}


def test_watch_streams_live_changes_with_legacy_path(
    apiserver: APIServerProcess, http: HTTP, namespace: str
) -> None:
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    rv = http.get(base).body["metadata"]["resourceVersion"]
    in_background(lambda: http.post(base, {"metadata": {"name": "live"}}))
    events = stream(
        apiserver, f"/api/v1/watch/namespaces/{namespace}/configmaps?resourceVersion={rv}", until=1
    )
    assert events[0]["type"] == "ADDED" and events[0]["object"]["metadata"]["name"] == "live"


def test_watch_label_selector_transitions(apiserver: APIServerProcess, http: HTTP, namespace: str) -> None:
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    rv = http.get(base).body["metadata"]["resourceVersion"]
    http.post(base, {"metadata": {"name": "a", "labels": {"app": "x"}}})
    http.patch(f"{base}/a", {"metadata": {"labels": {"app": "y"}}})  # leaves the selection
    http.patch(f"{base}/a", {"metadata": {"labels": {"app": "x"}}})  # comes back
    http.post(base, {"metadata": {"name": "other", "labels": {"app": "z"}}})
    events = stream(
        apiserver, f"{base}?watch=true&labelSelector=app%3Dx&resourceVersion={rv}&timeoutSeconds=1", until=3
    )
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "a"),
        ("DELETED", "a"),
        ("ADDED", "a"),
    ]


def test_watch_single_object_by_field_selector(
    apiserver: APIServerProcess, http: HTTP, namespace: str
) -> None:
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    http.post(base, {"metadata": {"name": "one"}})
    http.post(base, {"metadata": {"name": "two"}})
    events = stream(
        apiserver, f"{base}?watch=true&fieldSelector=metadata.name%3Dtwo&timeoutSeconds=1", until=5
    )
    assert [e["object"]["metadata"]["name"] for e in events] == ["two"]


def test_too_old_resource_version_is_410_gone(tmp_path: Any) -> None:
    from tests.localcluster.api_harness import HTTP as RawHTTP
    from tests.localcluster.api_harness import start_apiserver

    state = str(tmp_path / "state.json")
    server = start_apiserver(tmp_path / "s", "--state-file", state, "--log-level", "INFO")
    try:
        base = "/api/v1/namespaces/default/configmaps"
        RawHTTP(server).post(base, {"metadata": {"name": "a"}})
    finally:
        server.stop()
    # a restart keeps objects but no history: older resourceVersions are gone (as after compaction)
    restarted = start_apiserver(tmp_path / "s", "--state-file", state)
    try:
        RawHTTP(restarted).post(base, {"metadata": {"name": "b"}})
        events = stream(restarted, f"{base}?watch=true&resourceVersion=1", until=1)
        assert events[0]["type"] == "ERROR"
        status = events[0]["object"]
        assert status["kind"] == "Status" and status["code"] == 410 and status["reason"] == "Expired"
        assert "too old resource version" in status["message"]
    finally:
        restarted.stop()


def test_history_limit_gives_410(tmp_path: Any) -> None:
    from tests.localcluster.api_harness import HTTP as RawHTTP
    from tests.localcluster.api_harness import start_apiserver

    server = start_apiserver(tmp_path / "s", "--watch-history", "5")
    try:
        http = RawHTTP(server)
        base = "/api/v1/namespaces/default/configmaps"
        rv = http.get(base).body["metadata"]["resourceVersion"]
        for i in range(10):
            http.post(base, {"metadata": {"name": f"c{i}"}})
        events = stream(server, f"{base}?watch=true&resourceVersion={rv}", until=1)
        assert events[0]["type"] == "ERROR" and events[0]["object"]["code"] == 410
        # a recent version still works
        recent = http.get(base).body["metadata"]["resourceVersion"]
        in_background(lambda: http.post(base, {"metadata": {"name": "late"}}))
        events = stream(server, f"{base}?watch=true&resourceVersion={recent}", until=1)
        assert events[0]["object"]["metadata"]["name"] == "late"
    finally:
        server.stop()


def test_bookmarks_and_initial_events_end(apiserver: APIServerProcess, http: HTTP, namespace: str) -> None:
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    http.post(base, {"metadata": {"name": "a"}})
    q = (
        "watch=true&allowWatchBookmarks=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan"
        "&timeoutSeconds=2"
    )
    events = stream(apiserver, f"{base}?{q}", until=2)
    assert events[0]["type"] == "ADDED"
    assert events[1]["type"] == "BOOKMARK"
    assert events[1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
    assert events[1]["object"]["kind"] == "ConfigMap"


def test_timeout_seconds_ends_the_stream(apiserver: APIServerProcess, namespace: str) -> None:
    started = time.monotonic()
    events = stream(
        apiserver, f"/api/v1/namespaces/{namespace}/configmaps?watch=true&timeoutSeconds=1", until=100
    )
    assert events == [] and 0.8 < time.monotonic() - started < 5


def test_watch_as_table(apiserver: APIServerProcess, http: HTTP, namespace: str) -> None:
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    http.post(base, {"metadata": {"name": "a"}, "data": {"k": "v"}})
    accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
    events = stream(apiserver, f"{base}?watch=true&timeoutSeconds=1", until=1, headers={"Accept": accept})
    obj = events[0]["object"]
    assert obj["kind"] == "Table" and obj["rows"][0]["cells"][:2] == ["a", 1]


def test_python_client_watch(k8s: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(k8s)
    listed = core.list_namespaced_config_map(namespace).metadata
    assert listed is not None
    rv = listed.resource_version
    in_background(
        lambda: core.create_namespaced_config_map(
            namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="w"))
        )
    )
    w = watch.Watch()
    seen = []
    for ev in w.stream(core.list_namespaced_config_map, namespace, resource_version=rv, timeout_seconds=5):
        seen.append((ev["type"], ev["object"].metadata.name))
        w.stop()
    assert seen == [("ADDED", "w")]


@pytest.mark.parametrize("path", ["/api/v1/pods", "/api/v1/namespaces/{ns}/pods"])
def test_cluster_wide_and_namespaced_pod_watch(
    apiserver: APIServerProcess, http: HTTP, namespace: str, path: str
) -> None:
    http.post(
        f"/api/v1/namespaces/{namespace}/pods",
        {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"}]}},
    )
    events = stream(
        apiserver,
        path.format(ns=namespace)
        + f"?watch=true&timeoutSeconds=1&fieldSelector=metadata.namespace%3D{namespace}",
        until=1,
    )
    assert events[0]["object"]["metadata"]["name"] == "p"
