"""The RBAC evaluator (`localcluster.apiserver.rbac`), table-driven against the semantics the
Kubernetes RBAC documentation gives: rule matching, bindings and subjects, escalation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from localcluster.apiserver import rbac
from localcluster.apiserver.rbac import Request, Rule, StaticPolicy

JSON = dict[str, Any]
G = rbac.GROUP


@dataclass
class U:
    username: str
    groups: list[str] = field(default_factory=list)


SA = U(
    "system:serviceaccount:ml:runner",
    ["system:serviceaccounts", "system:serviceaccounts:ml", "system:authenticated"],
)
ALICE = U("alice", ["system:authenticated", "team-a"])
ANON = U("system:anonymous", ["system:unauthenticated"])
ROOT = U("root", ["system:masters", "system:authenticated"])


def role(name: str, rules: list[JSON], namespace: str = "ml") -> JSON:
    return {"kind": "Role", "metadata": {"name": name, "namespace": namespace}, "rules": rules}


def cluster_role(name: str, rules: list[JSON], labels: dict[str, str] | None = None) -> JSON:
    return {"kind": "ClusterRole", "metadata": {"name": name, "labels": labels or {}}, "rules": rules}


def binding(name: str, kind: str, ref: str, subjects: list[JSON], namespace: str = "ml") -> JSON:
    return {
        "kind": "RoleBinding",
        "metadata": {"name": name, "namespace": namespace},
        "roleRef": {"apiGroup": G, "kind": kind, "name": ref},
        "subjects": subjects,
    }


def cluster_binding(name: str, ref: str, subjects: list[JSON]) -> JSON:
    return {
        "kind": "ClusterRoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": G, "kind": "ClusterRole", "name": ref},
        "subjects": subjects,
    }


def sa(name: str = "runner", namespace: str | None = "ml") -> JSON:
    return {"kind": "ServiceAccount", "name": name, **({"namespace": namespace} if namespace else {})}


# ---- one rule against one request ------------------------------------------------------------

RULE_CASES: list[tuple[str, JSON, Request, bool]] = [
    ("exact", {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}, Request("get", "", "pods"), True),
    (
        "other verb",
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]},
        Request("list", "", "pods"),
        False,
    ),
    (
        "verb *",
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["*"]},
        Request("deletecollection", "", "pods"),
        True,
    ),
    (
        "other group",
        {"apiGroups": ["apps"], "resources": ["pods"], "verbs": ["get"]},
        Request("get", "", "pods"),
        False,
    ),
    (
        "group *",
        {"apiGroups": ["*"], "resources": ["pods"], "verbs": ["get"]},
        Request("get", "x.io", "pods"),
        True,
    ),
    (
        "resource *",
        {"apiGroups": [""], "resources": ["*"], "verbs": ["get"]},
        Request("get", "", "secrets"),
        True,
    ),
    (
        "resource * covers subresources",
        {"apiGroups": [""], "resources": ["*"], "verbs": ["get"]},
        Request("get", "", "pods", "log", "ml", "p"),
        True,
    ),
    (
        "a resource does not cover its subresource",
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]},
        Request("get", "", "pods", "log", "ml", "p"),
        False,
    ),
    (
        "resource/subresource",
        {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
        Request("get", "", "pods", "log", "ml", "p"),
        True,
    ),
    (
        "a subresource does not cover its resource",
        {"apiGroups": ["trainjob.dev"], "resources": ["trainjobs/status"], "verbs": ["patch"]},
        Request("patch", "trainjob.dev", "trainjobs", "", "ml", "a"),
        False,
    ),
    (
        "*/subresource",
        {"apiGroups": ["*"], "resources": ["*/status"], "verbs": ["patch"]},
        Request("patch", "trainjob.dev", "trainjobs", "status", "ml", "a"),
        True,
    ),
    (
        "*/subresource, another subresource",
        {"apiGroups": ["*"], "resources": ["*/status"], "verbs": ["get"]},
        Request("get", "", "pods", "log", "ml", "a"),
        False,
    ),
    (
        "resourceNames: the named object",
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["a"], "verbs": ["get"]},
        Request("get", "", "secrets", "", "ml", "a"),
        True,
    ),
    (
        "resourceNames: another object",
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["a"], "verbs": ["get"]},
        Request("get", "", "secrets", "", "ml", "b"),
        False,
    ),
    (
        "resourceNames never grant list",
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["a"], "verbs": ["list"]},
        Request("list", "", "secrets", "", "ml"),
        False,
    ),
    (
        "resourceNames grant a list pinned to the name (fieldSelector metadata.name)",
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["a"], "verbs": ["list"]},
        Request("list", "", "secrets", "", "ml", "a"),
        True,
    ),
    (
        "resourceNames never grant create",
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["a"], "verbs": ["create"]},
        Request("create", "", "secrets", "", "ml"),
        False,
    ),
    (
        "resourceNames never grant deletecollection",
        {"apiGroups": [""], "resources": ["pods"], "resourceNames": ["a"], "verbs": ["deletecollection"]},
        Request("deletecollection", "", "pods", "", "ml"),
        False,
    ),
    (
        "nonResourceURL exact",
        {"nonResourceURLs": ["/version"], "verbs": ["get"]},
        Request("get", path="/version"),
        True,
    ),
    (
        "nonResourceURL prefix*",
        {"nonResourceURLs": ["/apis/*"], "verbs": ["get"]},
        Request("get", path="/apis/x/v1"),
        True,
    ),
    (
        "nonResourceURL no prefix",
        {"nonResourceURLs": ["/apis"], "verbs": ["get"]},
        Request("get", path="/apis/x"),
        False,
    ),
    (
        "nonResourceURL verb",
        {"nonResourceURLs": ["*"], "verbs": ["get"]},
        Request("post", path="/api"),
        False,
    ),
    (
        "nonResourceURLs grant no resources",
        {"nonResourceURLs": ["*"], "verbs": ["*"]},
        Request("get", "", "pods", "", "ml"),
        False,
    ),
    (
        "resource rules grant no paths",
        {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
        Request("get", path="/api"),
        False,
    ),
]


@pytest.mark.parametrize(
    ("rule", "req", "expected"), [c[1:] for c in RULE_CASES], ids=[c[0] for c in RULE_CASES]
)
def test_rule_matching(rule: JSON, req: Request, expected: bool) -> None:
    assert rbac.rule_allows(Rule.of(rule), req) is expected


# ---- bindings and subjects -------------------------------------------------------------------

READ_PODS = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]
POLICY = StaticPolicy(
    [
        role("pod-reader", READ_PODS),
        role("pod-reader", READ_PODS, namespace="other"),
        cluster_role("secret-reader", [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]),
        cluster_role("node-reader", [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}]),
        cluster_role(
            "aggregate",
            [],
        )
        | {"aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"agg": "yes"}}]}},
        cluster_role(
            "part", [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get"]}], {"agg": "yes"}
        ),
        binding("sa-reads-pods", "Role", "pod-reader", [sa()]),
        # a RoleBinding to a ClusterRole grants it in the binding's namespace only
        binding(
            "alice-secrets",
            "ClusterRole",
            "secret-reader",
            [{"kind": "User", "name": "alice", "apiGroup": G}],
        ),
        # a ServiceAccount subject without namespace: the binding's own
        binding("sa-nodes-local", "ClusterRole", "node-reader", [sa(namespace=None)], namespace="ml"),
        cluster_binding(
            "team-a-aggregate", "aggregate", [{"kind": "Group", "name": "team-a", "apiGroup": G}]
        ),
        # a binding to a role that does not exist grants nothing
        binding("dangling", "Role", "missing", [{"kind": "User", "name": "alice", "apiGroup": G}]),
    ]
)

BINDING_CASES: list[tuple[str, U, Request, bool]] = [
    ("sa via RoleBinding", SA, Request("list", "", "pods", "", "ml"), True),
    ("sa: not in another namespace", SA, Request("list", "", "pods", "", "other"), False),
    ("sa: not cluster-wide", SA, Request("list", "", "pods"), False),
    ("sa: not another verb", SA, Request("delete", "", "pods", "", "ml", "p"), False),
    (
        "another sa of the namespace",
        U("system:serviceaccount:ml:other", SA.groups),
        Request("list", "", "pods", "", "ml"),
        False,
    ),
    (
        "same sa name in another namespace",
        U("system:serviceaccount:other:runner"),
        Request("list", "", "pods", "", "other"),
        False,
    ),
    (
        "RoleBinding to ClusterRole: in its namespace",
        ALICE,
        Request("get", "", "secrets", "", "ml", "s"),
        True,
    ),
    (
        "RoleBinding to ClusterRole: not elsewhere",
        ALICE,
        Request("get", "", "secrets", "", "other", "s"),
        False,
    ),
    (
        "ServiceAccount subject defaults to the binding's namespace",
        SA,
        Request("get", "", "nodes", "", "ml", "n"),
        True,
    ),
    (
        "Group subject, aggregated ClusterRole",
        ALICE,
        Request("get", "apps", "deployments", "", "x", "d"),
        True,
    ),
    (
        "aggregated ClusterRole: only what its parts grant",
        ALICE,
        Request("delete", "apps", "deployments", "", "x", "d"),
        False,
    ),
    ("system:masters: everything", ROOT, Request("delete", "", "nodes", "", "", "n"), True),
    ("anonymous: nothing", ANON, Request("get", "", "pods", "", "ml", "p"), False),
]


@pytest.mark.parametrize(
    ("user", "req", "expected"), [c[1:] for c in BINDING_CASES], ids=[c[0] for c in BINDING_CASES]
)
def test_bindings(user: U, req: Request, expected: bool) -> None:
    allowed, reason = rbac.authorize(POLICY, user, req)
    assert allowed is expected
    assert bool(reason) == (expected and user is not ROOT)


def test_default_policy_lets_every_authenticated_user_discover() -> None:
    policy = StaticPolicy(rbac.bootstrap_policy())
    for path in ("/api", "/api/v1", "/apis", "/apis/apps/v1", "/openapi/v3", "/version"):
        assert rbac.authorize(policy, SA, Request("get", path=path))[0], path
    assert rbac.authorize(policy, ANON, Request("get", path="/version"))[0]
    assert rbac.authorize(policy, ANON, Request("get", path="/healthz"))[0]
    assert not rbac.authorize(policy, ANON, Request("get", path="/apis"))[0]
    assert rbac.authorize(policy, SA, Request("create", "authorization.k8s.io", "selfsubjectaccessreviews"))[
        0
    ]
    assert not rbac.authorize(policy, SA, Request("list", "", "pods", "", "ml"))[0]


# ---- messages ----------------------------------------------------------------------------------

MESSAGE_CASES = [
    (
        Request("create", "", "pods", "", "ns"),
        'pods is forbidden: User "system:serviceaccount:ml:runner" cannot create resource "pods" '
        'in API group "" in the namespace "ns"',
    ),
    (
        Request("patch", "trainjob.dev", "trainjobs", "status", "ml", "b"),
        'trainjobs.trainjob.dev "b" is forbidden: User "system:serviceaccount:ml:runner" cannot patch '
        'resource "trainjobs/status" in API group "trainjob.dev" in the namespace "ml"',
    ),
    (
        Request("list", "", "nodes"),
        'nodes is forbidden: User "system:serviceaccount:ml:runner" cannot list resource "nodes" '
        'in API group "" at the cluster scope',
    ),
    (
        Request("get", path="/metrics"),
        'forbidden: User "system:serviceaccount:ml:runner" cannot get path "/metrics"',
    ),
]


@pytest.mark.parametrize(("req", "message"), MESSAGE_CASES)
def test_forbidden_message(req: Request, message: str) -> None:
    assert rbac.forbidden_message(SA, req) == message


# ---- escalation ------------------------------------------------------------------------------


def rules(*raw: JSON) -> list[Rule]:
    return [Rule.of(r) for r in raw]


STATUS_ANY = {"apiGroups": ["trainjob.dev"], "resources": ["trainjobs/status"], "verbs": ["get", "patch"]}
STATUS_A = {**STATUS_ANY, "resourceNames": ["a"]}

COVER_CASES: list[tuple[str, list[JSON], list[JSON], bool]] = [
    ("same rule", [STATUS_ANY], [STATUS_ANY], True),
    ("any name covers one name", [STATUS_ANY], [STATUS_A], True),
    ("one name does not cover any name", [STATUS_A], [STATUS_ANY], False),
    ("one verb short", [{**STATUS_ANY, "verbs": ["patch"]}], [STATUS_A], False),
    ("held * covers any verb", [{**STATUS_ANY, "verbs": ["*"]}], [STATUS_A], True),
    ("asked * needs held *", [STATUS_ANY], [{**STATUS_ANY, "verbs": ["*"]}], False),
    ("held resource * covers subresources", [{**STATUS_ANY, "resources": ["*"]}], [STATUS_A], True),
    ("held */status covers trainjobs/status", [{**STATUS_ANY, "resources": ["*/status"]}], [STATUS_A], True),
    ("resource does not cover subresource", [{**STATUS_ANY, "resources": ["trainjobs"]}], [STATUS_A], False),
    ("held group * covers any group", [{**STATUS_ANY, "apiGroups": ["*"]}], [STATUS_A], True),
    (
        "split across two held rules",
        [{**STATUS_ANY, "verbs": ["get"]}, {**STATUS_ANY, "verbs": ["patch"]}],
        [STATUS_A],
        True,
    ),
    (
        "urls: prefix* covers",
        [{"nonResourceURLs": ["/apis/*"], "verbs": ["get"]}],
        [{"nonResourceURLs": ["/apis/x"], "verbs": ["get"]}],
        True,
    ),
    (
        "urls: exact does not cover prefix",
        [{"nonResourceURLs": ["/apis"], "verbs": ["get"]}],
        [{"nonResourceURLs": ["/apis/*"], "verbs": ["get"]}],
        False,
    ),
]


@pytest.mark.parametrize(
    ("owner", "requested", "expected"), [c[1:] for c in COVER_CASES], ids=[c[0] for c in COVER_CASES]
)
def test_covers(owner: list[JSON], requested: list[JSON], expected: bool) -> None:
    assert (rbac.uncovered(rules(*owner), rules(*requested)) == []) is expected


OPERATOR = U("system:serviceaccount:sys:op", ["system:serviceaccounts", "system:authenticated"])
ESCALATION_POLICY = StaticPolicy(
    [
        cluster_role(
            "op",
            [
                STATUS_ANY,
                {
                    "apiGroups": ["rbac.authorization.k8s.io"],
                    "resources": ["roles", "rolebindings"],
                    "verbs": ["create"],
                },
            ],
        ),
        cluster_binding("op", "op", [sa("op", "sys")]),
        role("coordinator-a", [STATUS_A]),
        role("too-much", [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]),
        cluster_role(
            "binder",
            [{"apiGroups": [G], "resources": ["roles"], "verbs": ["bind"], "resourceNames": ["too-much"]}],
        ),
        cluster_role("escalator", [{"apiGroups": [G], "resources": ["roles"], "verbs": ["escalate"]}]),
        binding("alice-binds", "ClusterRole", "binder", [{"kind": "User", "name": "alice", "apiGroup": G}]),
        binding(
            "alice-escalates",
            "ClusterRole",
            "escalator",
            [{"kind": "User", "name": "alice", "apiGroup": G}],
            namespace="esc",
        ),
    ]
)


def rb(ref_kind: str, ref: str) -> JSON:
    return binding("b", ref_kind, ref, [sa("coord")])


ESCALATION_CASES: list[tuple[str, U, str, str, JSON, bool]] = [
    ("operator writes the coordinator's Role", OPERATOR, "roles", "ml", role("c", [STATUS_A]), True),
    (
        "operator cannot grant what it lacks",
        OPERATOR,
        "roles",
        "ml",
        role("c", [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]),
        False,
    ),
    ("operator binds a Role it covers", OPERATOR, "rolebindings", "ml", rb("Role", "coordinator-a"), True),
    ("operator cannot bind a Role beyond it", OPERATOR, "rolebindings", "ml", rb("Role", "too-much"), False),
    ("binding a missing Role is refused", OPERATOR, "rolebindings", "ml", rb("Role", "missing"), False),
    ("bind verb on that role allows it", ALICE, "rolebindings", "ml", rb("Role", "too-much"), True),
    ("bind is per name", ALICE, "rolebindings", "ml", rb("Role", "coordinator-a"), False),
    (
        "escalate verb allows any Role (in its namespace)",
        ALICE,
        "roles",
        "esc",
        role("x", [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}], "esc"),
        True,
    ),
    (
        "escalate: not in another namespace",
        ALICE,
        "roles",
        "ml",
        role("x", [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]),
        False,
    ),
    (
        "system:masters may grant anything",
        ROOT,
        "clusterroles",
        "",
        cluster_role("x", [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]),
        True,
    ),
]


@pytest.mark.parametrize(
    ("user", "resource", "namespace", "obj", "expected"),
    [c[1:] for c in ESCALATION_CASES],
    ids=[c[0] for c in ESCALATION_CASES],
)
def test_escalation(user: U, resource: str, namespace: str, obj: JSON, expected: bool) -> None:
    why = rbac.write_forbidden(ESCALATION_POLICY, user, resource, namespace, obj)
    assert (why is None) is expected, why


def test_escalation_message_names_what_is_not_held() -> None:
    obj = role("c", [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]}])
    why = rbac.write_forbidden(ESCALATION_POLICY, OPERATOR, "roles", "ml", obj)
    assert why is not None
    assert why.startswith(
        'roles.rbac.authorization.k8s.io "c" is forbidden: user "system:serviceaccount:sys:op" '
        '(groups=["system:serviceaccounts" "system:authenticated"]) is attempting to grant RBAC '
        "permissions not currently held:\n"
    )
    assert '{APIGroups:[""], Resources:["secrets"], Verbs:["get"]}' in why
    assert '{APIGroups:[""], Resources:["secrets"], Verbs:["list"]}' in why
