"""`--authorization RBAC` over HTTP with real tokens: the admin token, ServiceAccount tokens from
TokenRequest, none and a forged one; access reviews, impersonation; escalation prevention."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.localcluster.api_harness import HTTP, APIServerProcess, start_apiserver

RBAC = "/apis/rbac.authorization.k8s.io/v1"
NS = "team"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[APIServerProcess]:
    proc = start_apiserver(tmp_path_factory.mktemp("rbac-apiserver"), "--authorization", "RBAC")
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def http(server: APIServerProcess) -> HTTP:
    h = HTTP(server)
    assert h.post("/api/v1/namespaces", {"metadata": {"name": NS}}).status == 201
    return h


def sa_token(http: HTTP, name: str, namespace: str = NS) -> str:
    http.post(f"/api/v1/namespaces/{namespace}/serviceaccounts", {"metadata": {"name": name}})
    r = http.post(f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token", {"spec": {}})
    assert r.status == 201, r.body
    token: str = r.body["status"]["token"]
    return token


def create(http: HTTP, path: str, obj: dict[str, Any]) -> None:
    r = http.post(path, obj)
    assert r.status == 201, r.body


def test_admin_token_is_system_masters(http: HTTP) -> None:
    assert http.get("/api/v1/secrets").status == 200
    r = http.post("/apis/authentication.k8s.io/v1/selfsubjectreviews", {})
    assert "system:masters" in r.body["status"]["userInfo"]["groups"]


def test_unknown_token_is_401_no_token_is_anonymous(http: HTTP) -> None:
    r = http.get("/api/v1/namespaces", token="not-a-token")
    assert r.status == 401 and r.body["reason"] == "Unauthorized" and r.body["message"] == "Unauthorized"
    r = http.get("/api/v1/namespaces", headers={"Authorization": ""})
    assert r.status == 403
    assert r.body["message"] == (
        'namespaces is forbidden: User "system:anonymous" cannot list resource "namespaces" '
        'in API group "" at the cluster scope'
    )
    assert r.body["details"] == {"kind": "namespaces"}  # empty name and group omitted
    # health and version are public; discovery needs authentication
    assert http.get("/version", headers={"Authorization": ""}).status == 200
    assert http.get("/healthz", headers={"Authorization": ""}).status == 200
    r = http.get("/apis", headers={"Authorization": ""})
    assert (
        r.status == 403 and r.body["message"] == 'forbidden: User "system:anonymous" cannot get path "/apis"'
    )


def test_service_account_is_denied_until_bound(http: HTTP) -> None:
    token = sa_token(http, "worker")
    # every authenticated user may discover the API
    for path in ("/api", "/api/v1", "/apis", "/apis/apps/v1", "/openapi/v3", "/version"):
        assert http.get(path, token=token).status == 200, path
    r = http.post(f"/api/v1/namespaces/{NS}/pods", {"metadata": {"name": "p"}}, token=token)
    assert r.status == 403
    assert r.body["message"] == (
        f'pods is forbidden: User "system:serviceaccount:{NS}:worker" cannot create resource "pods" '
        f'in API group "" in the namespace "{NS}"'
    )
    create(
        http,
        f"{RBAC}/namespaces/{NS}/roles",
        {
            "metadata": {"name": "cm-reader"},
            "rules": [
                {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]},
                {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
            ],
        },
    )
    create(
        http,
        f"{RBAC}/namespaces/{NS}/rolebindings",
        {
            "metadata": {"name": "worker-cm"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "cm-reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "worker", "namespace": NS}],
        },
    )
    assert http.get(f"/api/v1/namespaces/{NS}/configmaps", token=token).status == 200
    assert (
        http.get(f"/api/v1/namespaces/{NS}/configmaps?watch=true&timeoutSeconds=1", token=token).status == 200
    )
    assert http.get("/api/v1/namespaces/default/configmaps", token=token).status == 403
    assert http.get("/api/v1/configmaps", token=token).status == 403  # all namespaces: cluster scope
    r = http.delete(f"/api/v1/namespaces/{NS}/configmaps/x", token=token)
    assert r.status == 403 and 'configmaps "x" is forbidden' in r.body["message"]
    assert http.get(f"/api/v1/namespaces/{NS}/pods/p", token=token).status == 403  # pods/log is not pods


def test_resource_names_and_field_selector(http: HTTP) -> None:
    token = sa_token(http, "one-secret")
    for name in ("mine", "theirs"):
        create(
            http, f"/api/v1/namespaces/{NS}/secrets", {"metadata": {"name": name}, "stringData": {"k": "v"}}
        )
    create(
        http,
        f"{RBAC}/namespaces/{NS}/roles",
        {
            "metadata": {"name": "one-secret"},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["secrets"],
                    "resourceNames": ["mine"],
                    "verbs": ["get", "list"],
                }
            ],
        },
    )
    create(
        http,
        f"{RBAC}/namespaces/{NS}/rolebindings",
        {
            "metadata": {"name": "one-secret"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "one-secret"},
            "subjects": [{"kind": "ServiceAccount", "name": "one-secret"}],  # namespace: the binding's
        },
    )
    base = f"/api/v1/namespaces/{NS}/secrets"
    assert http.get(f"{base}/mine", token=token).status == 200
    assert http.get(f"{base}/theirs", token=token).status == 403
    assert http.get(base, token=token).status == 403
    r = http.get(f"{base}?fieldSelector=metadata.name%3Dmine", token=token)
    assert r.status == 200 and [i["metadata"]["name"] for i in r.body["items"]] == ["mine"]


def test_cluster_role_binding_reviews_and_impersonation(http: HTTP) -> None:
    token = sa_token(http, "viewer")
    create(
        http,
        f"{RBAC}/clusterroles",
        {
            "metadata": {"name": "ns-viewer"},
            "rules": [{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list"]}],
        },
    )
    create(
        http,
        f"{RBAC}/clusterrolebindings",
        {
            "metadata": {"name": "viewer"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "ns-viewer"},
            "subjects": [{"kind": "Group", "name": f"system:serviceaccounts:{NS}"}],
        },
    )
    assert http.get("/api/v1/namespaces", token=token).status == 200
    # kubectl auth can-i's reviews (kubectl itself sends no bearer token over plain HTTP), and
    # impersonation (`--as`), which the admin may do
    user = f"system:serviceaccount:{NS}:viewer"
    for verb, expected in (("list", True), ("delete", False)):
        review: dict[str, Any] = {"spec": {"resourceAttributes": {"verb": verb, "resource": "namespaces"}}}
        r = http.post("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", review, token=token)
        assert r.status == 201 and r.body["status"]["allowed"] is expected, r.body
        review["spec"]["user"] = user
        review["spec"]["groups"] = [f"system:serviceaccounts:{NS}"]
        r = http.post("/apis/authorization.k8s.io/v1/subjectaccessreviews", review)
        assert r.body["status"]["allowed"] is expected, r.body
    assert http.get("/api/v1/namespaces", headers={"Impersonate-User": user}).status == 200
    r = http.get("/api/v1/secrets", headers={"Impersonate-User": user})
    assert r.status == 403 and f'User "{user}" cannot list' in r.body["message"]
    # the viewer may not impersonate anyone
    r = http.get("/api/v1/namespaces", headers={"Impersonate-User": "admin"}, token=token)
    assert r.status == 403 and 'cannot impersonate resource "users"' in r.body["message"]
    # SelfSubjectRulesReview lists what the caller holds
    r = http.post(
        "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews", {"spec": {"namespace": NS}}, token=token
    )
    assert {"verbs": ["list"], "apiGroups": [""], "resources": ["namespaces"]} in r.body["status"][
        "resourceRules"
    ]


def test_escalation_prevention(http: HTTP) -> None:
    token = sa_token(http, "granter")
    create(
        http,
        f"{RBAC}/namespaces/{NS}/roles",
        {
            "metadata": {"name": "granter"},
            "rules": [
                {
                    "apiGroups": ["rbac.authorization.k8s.io"],
                    "resources": ["roles", "rolebindings"],
                    "verbs": ["create", "update", "patch"],
                },
                {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]},
            ],
        },
    )
    create(
        http,
        f"{RBAC}/namespaces/{NS}/rolebindings",
        {
            "metadata": {"name": "granter"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "granter"},
            "subjects": [{"kind": "ServiceAccount", "name": "granter", "namespace": NS}],
        },
    )
    roles = f"{RBAC}/namespaces/{NS}/roles"
    held = {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["c"], "verbs": ["get"]}
    assert http.post(roles, {"metadata": {"name": "sub"}, "rules": [held]}, token=token).status == 201
    wider = {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}
    r = http.post(roles, {"metadata": {"name": "wider"}, "rules": [wider]}, token=token)
    assert r.status == 403 and r.body["reason"] == "Forbidden"
    assert "is attempting to grant RBAC permissions not currently held" in r.body["message"], r.body
    assert 'Resources:["secrets"]' in r.body["message"]
    # a patch that would widen the held role is refused too, and leaves it as it was
    r = http.patch(f"{roles}/sub", {"rules": [held, wider]}, token=token)
    assert r.status == 403, r.body
    assert http.get(f"{roles}/sub").body["rules"] == [held]
    # binding: the role's rules must be held too (cm-reader grants list/watch the granter lacks)
    bindings = f"{RBAC}/namespaces/{NS}/rolebindings"
    subject = [{"kind": "ServiceAccount", "name": "granter", "namespace": NS}]

    def bind(role: str) -> int:
        body = {
            "metadata": {"name": f"to-{role}"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
            "subjects": subject,
        }
        return http.post(bindings, body, token=token).status

    assert bind("sub") == 201
    create(
        http,
        roles,
        {"metadata": {"name": "big"}, "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]},
    )
    assert bind("big") == 403
    # unless it may `bind` that role
    create(
        http,
        roles,
        {
            "metadata": {"name": "may-bind"},
            "rules": [
                {
                    "apiGroups": ["rbac.authorization.k8s.io"],
                    "resources": ["roles"],
                    "resourceNames": ["big"],
                    "verbs": ["bind"],
                }
            ],
        },
    )
    create(
        http,
        bindings,
        {
            "metadata": {"name": "may-bind"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "may-bind"},
            "subjects": subject,
        },
    )
    assert bind("big") == 201


def test_always_allow_is_still_the_default(tmp_path: Path) -> None:
    proc = start_apiserver(tmp_path / "allow")
    try:
        h = HTTP(proc)
        assert h.get("/api/v1/namespaces", headers={"Authorization": ""}).status == 200
        assert h.get(f"{RBAC}/clusterroles").body["items"] == []  # no bootstrap policy either
    finally:
        proc.stop()
