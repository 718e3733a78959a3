"""The RBAC authorizer's evaluation, as a pure module: rules, bindings, subjects, escalation.

Written from Kubernetes' documented RBAC semantics. Nothing here touches HTTP or the store: the
caller hands in a `Policy` (where Roles, ClusterRoles and their bindings come from), the user
and the request's attributes, and gets a decision back.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from .selectors import labels_match, selector_from_label_selector

GROUP = "rbac.authorization.k8s.io"
MASTERS = "system:masters"
AUTHENTICATED = "system:authenticated"
UNAUTHENTICATED = "system:unauthenticated"
WILDCARD = "*"

JSON = dict[str, Any]


class User(Protocol):
    username: str
    groups: list[str]


@dataclass(frozen=True)
class Request:
    """What is asked: a resource request (resource set) or a non-resource one (path set)."""

    verb: str
    group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""

    @property
    def is_resource(self) -> bool:
        return bool(self.resource)


@dataclass(frozen=True)
class Rule:
    verbs: tuple[str, ...] = ()
    api_groups: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    resource_names: tuple[str, ...] = ()
    non_resource_urls: tuple[str, ...] = ()

    @classmethod
    def of(cls, rule: JSON) -> Rule:
        def t(key: str) -> tuple[str, ...]:
            return tuple(str(v) for v in rule.get(key) or ())

        return cls(t("verbs"), t("apiGroups"), t("resources"), t("resourceNames"), t("nonResourceURLs"))

    def to_dict(self) -> JSON:
        out: JSON = {"verbs": list(self.verbs)}
        if self.non_resource_urls:
            out["nonResourceURLs"] = list(self.non_resource_urls)
        else:
            out["apiGroups"] = list(self.api_groups)
            out["resources"] = list(self.resources)
            if self.resource_names:
                out["resourceNames"] = list(self.resource_names)
        return out

    def describe(self) -> str:
        def q(values: tuple[str, ...]) -> str:
            return "[" + " ".join(f'"{v}"' for v in values) + "]"

        if self.non_resource_urls:
            return f"{{NonResourceURLs:{q(self.non_resource_urls)}, Verbs:{q(self.verbs)}}}"
        parts = [f"APIGroups:{q(self.api_groups)}", f"Resources:{q(self.resources)}"]
        if self.resource_names:
            parts.append(f"ResourceNames:{q(self.resource_names)}")
        parts.append(f"Verbs:{q(self.verbs)}")
        return "{" + ", ".join(parts) + "}"


# ---- matching one rule against one request ---------------------------------------------------


def verb_matches(rule: Rule, verb: str) -> bool:
    return WILDCARD in rule.verbs or verb in rule.verbs


def group_matches(rule: Rule, group: str) -> bool:
    return WILDCARD in rule.api_groups or group in rule.api_groups


def resource_matches(rule: Rule, resource: str, subresource: str) -> bool:
    combined = f"{resource}/{subresource}" if subresource else resource
    for r in rule.resources:
        if r in (WILDCARD, combined):
            return True
        # `*/status` names one subresource of every resource
        if subresource and r == f"*/{subresource}":
            return True
    return False


def name_matches(rule: Rule, name: str) -> bool:
    # An empty name (list, watch, create, deletecollection) matches only unrestricted rules.
    return not rule.resource_names or name in rule.resource_names


def url_matches(rule: Rule, path: str) -> bool:
    for url in rule.non_resource_urls:
        if url in (WILDCARD, path):
            return True
        if url.endswith(WILDCARD) and path.startswith(url[:-1]):
            return True
    return False


def rule_allows(rule: Rule, req: Request) -> bool:
    if not verb_matches(rule, req.verb):
        return False
    if req.is_resource:
        return (
            group_matches(rule, req.group)
            and resource_matches(rule, req.resource, req.subresource)
            and name_matches(rule, req.name)
        )
    return url_matches(rule, req.path)


# ---- where rules come from -------------------------------------------------------------------


class Policy(Protocol):
    """The RBAC objects in force (as stored: plain dicts)."""

    def role(self, namespace: str, name: str) -> JSON | None: ...
    def cluster_role(self, name: str) -> JSON | None: ...
    def cluster_roles(self) -> Iterable[JSON]: ...
    def role_bindings(self, namespace: str) -> Iterable[JSON]: ...
    def cluster_role_bindings(self) -> Iterable[JSON]: ...


@dataclass
class StaticPolicy:
    """A Policy over a list of objects (tests, and anything that has the objects at hand)."""

    objects: list[JSON]

    def _of(self, kind: str) -> Iterator[JSON]:
        return (o for o in self.objects if o.get("kind") == kind)

    def role(self, namespace: str, name: str) -> JSON | None:
        return next(
            (
                o
                for o in self._of("Role")
                if o["metadata"]["name"] == name and o["metadata"].get("namespace") == namespace
            ),
            None,
        )

    def cluster_role(self, name: str) -> JSON | None:
        return next((o for o in self._of("ClusterRole") if o["metadata"]["name"] == name), None)

    def cluster_roles(self) -> Iterable[JSON]:
        return list(self._of("ClusterRole"))

    def role_bindings(self, namespace: str) -> Iterable[JSON]:
        return [o for o in self._of("RoleBinding") if o["metadata"].get("namespace") == namespace]

    def cluster_role_bindings(self) -> Iterable[JSON]:
        return list(self._of("ClusterRoleBinding"))


def service_account_username(namespace: str, name: str) -> str:
    return f"system:serviceaccount:{namespace}:{name}"


def subject_matches(subject: JSON, user: User, binding_namespace: str) -> bool:
    kind = subject.get("kind")
    name = subject.get("name", "")
    if kind == "User":
        return bool(name == user.username)
    if kind == "Group":
        return name in user.groups
    if kind == "ServiceAccount":
        # A RoleBinding may leave the account's namespace out: its own namespace is meant.
        namespace = subject.get("namespace") or binding_namespace
        return bool(namespace) and service_account_username(namespace, name) == user.username
    return False


def cluster_role_rules(policy: Policy, role: JSON) -> list[Rule]:
    """A ClusterRole's rules; an aggregated one also has those of the roles its selectors pick."""
    rules = [Rule.of(r) for r in role.get("rules") or []]
    selectors = (role.get("aggregationRule") or {}).get("clusterRoleSelectors") or []
    if selectors:
        own = role["metadata"]["name"]
        for sel in selectors:
            reqs = selector_from_label_selector(sel)
            if reqs is None:
                continue
            for other in policy.cluster_roles():
                if other["metadata"]["name"] != own and labels_match(reqs, other["metadata"].get("labels")):
                    rules += [Rule.of(r) for r in other.get("rules") or []]
    return rules


def role_ref_rules(policy: Policy, ref: JSON, binding_namespace: str) -> list[Rule] | None:
    """The rules a binding's roleRef grants; None when the role does not exist."""
    if ref.get("kind") == "ClusterRole":
        cluster_role = policy.cluster_role(ref.get("name", ""))
        return None if cluster_role is None else cluster_role_rules(policy, cluster_role)
    if ref.get("kind") == "Role" and binding_namespace:
        role = policy.role(binding_namespace, ref.get("name", ""))
        return None if role is None else [Rule.of(r) for r in role.get("rules") or []]
    return None


@dataclass(frozen=True)
class Grant:
    rule: Rule
    via: str  # e.g. `RoleBinding "ns/x" of Role "y"`


def grants(policy: Policy, user: User, namespace: str) -> Iterator[Grant]:
    """Every rule the user holds where `namespace` is ("" = at cluster scope only)."""
    for binding in policy.cluster_role_bindings():
        if any(subject_matches(s, user, "") for s in binding.get("subjects") or []):
            ref = binding.get("roleRef") or {}
            if ref.get("kind") != "ClusterRole":
                continue
            via = f'ClusterRoleBinding "{binding["metadata"]["name"]}" of ClusterRole "{ref.get("name")}"'
            for rule in role_ref_rules(policy, ref, "") or []:
                yield Grant(rule, via)
    if not namespace:
        return
    for binding in policy.role_bindings(namespace):
        if any(subject_matches(s, user, namespace) for s in binding.get("subjects") or []):
            ref = binding.get("roleRef") or {}
            via = (
                f'RoleBinding "{namespace}/{binding["metadata"]["name"]}" '
                f'of {ref.get("kind")} "{ref.get("name")}"'
            )
            for rule in role_ref_rules(policy, ref, namespace) or []:
                yield Grant(rule, via)


def authorize(policy: Policy, user: User, req: Request) -> tuple[bool, str]:
    """(allowed, reason). Members of system:masters may do anything, as on a real cluster."""
    if MASTERS in user.groups:
        return True, ""
    for grant in grants(policy, user, req.namespace if req.is_resource else ""):
        if rule_allows(grant.rule, req):
            return True, f'RBAC: allowed by {grant.via} to User "{user.username}"'
    return False, ""


def forbidden_message(user: User, req: Request) -> str:
    """The message of the 403 Status, worded as Kubernetes words it."""
    if not req.is_resource:
        return f'forbidden: User "{user.username}" cannot {req.verb} path "{req.path}"'
    what = f"{req.resource}/{req.subresource}" if req.subresource else req.resource
    qualified = f"{req.resource}.{req.group}" if req.group else req.resource
    head = f'{qualified} "{req.name}" is forbidden' if req.name else f"{qualified} is forbidden"
    where = f'in the namespace "{req.namespace}"' if req.namespace else "at the cluster scope"
    return (
        f'{head}: User "{user.username}" cannot {req.verb} resource "{what}" '
        f'in API group "{req.group}" {where}'
    )


# ---- privilege escalation --------------------------------------------------------------------


def atoms(rule: Rule) -> Iterator[Rule]:
    """A rule split into single-verb, single-resource (single-name) pieces."""
    if rule.non_resource_urls:
        for verb in rule.verbs:
            for url in rule.non_resource_urls:
                yield Rule(verbs=(verb,), non_resource_urls=(url,))
        return
    for group in rule.api_groups:
        for resource in rule.resources:
            for verb in rule.verbs:
                if rule.resource_names:
                    for name in rule.resource_names:
                        yield Rule((verb,), (group,), (resource,), (name,))
                else:
                    yield Rule((verb,), (group,), (resource,))


def _covers_one(owner: Rule, atom: Rule) -> bool:
    """Does the owner rule grant everything the single-piece rule grants? A `*` asked for is
    covered only by a `*` held."""
    if not (WILDCARD in owner.verbs or atom.verbs[0] in owner.verbs):
        return False
    if atom.non_resource_urls:
        url = atom.non_resource_urls[0]
        for held in owner.non_resource_urls:
            if held in (WILDCARD, url):
                return True
            if held.endswith(WILDCARD) and url.startswith(held[:-1]):
                return True
        return False
    if owner.non_resource_urls and not owner.resources:
        return False
    if not (WILDCARD in owner.api_groups or atom.api_groups[0] in owner.api_groups):
        return False
    resource = atom.resources[0]
    sub = resource.split("/", 1)[1] if "/" in resource else None
    if not any(held in (WILDCARD, resource) or (sub and held == f"*/{sub}") for held in owner.resources):
        return False
    if not owner.resource_names:
        return True
    return bool(atom.resource_names) and atom.resource_names[0] in owner.resource_names


def uncovered(owner: Iterable[Rule], requested: Iterable[Rule]) -> list[Rule]:
    """The pieces of `requested` that no owner rule grants ([] when the owner holds them all)."""
    held = list(owner)
    return [a for r in requested for a in atoms(r) if not any(_covers_one(o, a) for o in held)]


def escalation_check(policy: Policy, user: User, namespace: str, requested: list[Rule]) -> str | None:
    """None when the user holds every requested rule where it would apply; else the reason."""
    if MASTERS in user.groups:
        return None
    missing = uncovered((g.rule for g in grants(policy, user, namespace)), requested)
    if not missing:
        return None
    groups = "[" + " ".join(f'"{g}"' for g in user.groups) + "]"
    return (
        f'user "{user.username}" (groups={groups}) is attempting to grant RBAC permissions not '
        "currently held:\n" + "\n".join(m.describe() for m in missing)
    )


def write_forbidden(policy: Policy, user: User, resource: str, namespace: str, obj: JSON) -> str | None:
    """For creating or updating an RBAC object: None when allowed, else the 403's message.

    Roles: the writer needs `escalate` on them, or must hold each rule it writes. Bindings: the
    writer needs `bind` on the referenced role, or must hold each rule the role grants."""
    name = (obj.get("metadata") or {}).get("name", "")
    head = f'{resource}.{GROUP} "{name}" is forbidden: '
    if MASTERS in user.groups:
        return None
    if resource in ("roles", "clusterroles"):
        ok, _ = authorize(policy, user, Request("escalate", GROUP, resource, "", namespace, name))
        if ok:
            return None
        if resource == "clusterroles":
            rules = cluster_role_rules(policy, obj)
        else:
            rules = [Rule.of(r) for r in obj.get("rules") or []]
        why = escalation_check(policy, user, namespace, rules)
        return None if why is None else head + why
    if resource in ("rolebindings", "clusterrolebindings"):
        ref = obj.get("roleRef") or {}
        ref_resource = "clusterroles" if ref.get("kind") == "ClusterRole" else "roles"
        ok, _ = authorize(
            policy, user, Request("bind", GROUP, ref_resource, "", namespace, str(ref.get("name", "")))
        )
        if ok:
            return None
        ref_rules = role_ref_rules(policy, ref, namespace)
        if ref_rules is None:
            kind = "clusterrole" if ref_resource == "clusterroles" else "role"
            return head + f'{kind}.{GROUP} "{ref.get("name", "")}" not found'
        why = escalation_check(policy, user, namespace, ref_rules)
        return None if why is None else head + why
    return None


# ---- the default policy every cluster starts with -------------------------------------------


def _cluster_role(name: str, rules: list[JSON]) -> JSON:
    return {
        "apiVersion": f"{GROUP}/v1",
        "kind": "ClusterRole",
        "metadata": {
            "name": name,
            "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
            "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"},
        },
        "rules": rules,
    }


def _cluster_binding(name: str, role: str, groups: list[str]) -> JSON:
    return {
        "apiVersion": f"{GROUP}/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {
            "name": name,
            "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
            "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"},
        },
        "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": role},
        "subjects": [{"apiGroup": GROUP, "kind": "Group", "name": g} for g in groups],
    }


PUBLIC_INFO = ["/healthz", "/livez", "/readyz", "/version", "/version/"]


def bootstrap_policy() -> list[JSON]:
    """cluster-admin and the discovery roles: any authenticated user may discover the API and
    review its own access; anyone may read health and version."""
    return [
        _cluster_role(
            "cluster-admin",
            [
                {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                {"nonResourceURLs": ["*"], "verbs": ["*"]},
            ],
        ),
        _cluster_binding("cluster-admin", "cluster-admin", [MASTERS]),
        _cluster_role(
            "system:discovery",
            [
                {
                    "nonResourceURLs": [
                        "/api",
                        "/api/*",
                        "/apis",
                        "/apis/*",
                        "/openapi",
                        "/openapi/*",
                        *PUBLIC_INFO,
                    ],
                    "verbs": ["get"],
                }
            ],
        ),
        _cluster_binding("system:discovery", "system:discovery", [AUTHENTICATED]),
        _cluster_role(
            "system:basic-user",
            [
                {
                    "apiGroups": ["authorization.k8s.io"],
                    "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                    "verbs": ["create"],
                },
                {
                    "apiGroups": ["authentication.k8s.io"],
                    "resources": ["selfsubjectreviews"],
                    "verbs": ["create"],
                },
            ],
        ),
        _cluster_binding("system:basic-user", "system:basic-user", [AUTHENTICATED]),
        _cluster_role("system:public-info-viewer", [{"nonResourceURLs": PUBLIC_INFO, "verbs": ["get"]}]),
        _cluster_binding(
            "system:public-info-viewer", "system:public-info-viewer", [AUTHENTICATED, UNAUTHENTICATED]
        ),
    ]
