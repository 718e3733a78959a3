"""Who is calling: the static admin token and ServiceAccount tokens (HMAC-signed JWTs).

Every request is identified here, in one place; an `Authorizer` decides. `Authorizer` allows
everything (`--authorization AlwaysAllow`); `RBACAuthorizer` evaluates the stored Roles,
ClusterRoles and bindings (`--authorization RBAC`, see `rbac.py`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import rbac

if TYPE_CHECKING:
    from collections.abc import Iterable

    from .store import Store

ISSUER = "https://kubernetes.default.svc.cluster.local"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class UserInfo:
    username: str
    groups: list[str] = field(default_factory=list)
    uid: str = ""
    extra: dict[str, list[str]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"username": self.username, "groups": self.groups}
        if self.uid:
            out["uid"] = self.uid
        if self.extra:
            out["extra"] = self.extra
        return out


ANONYMOUS = UserInfo("system:anonymous", ["system:unauthenticated"])
ADMIN = UserInfo("admin", ["system:masters", "system:authenticated"])


class Authenticator:
    """Maps a bearer token to a user. `sa_uid` looks up a ServiceAccount's uid (None: gone)."""

    def __init__(self, admin_token: str, key: bytes, sa_uid: Callable[[str, str], str | None]) -> None:
        self.admin_token = admin_token
        self.key = key
        self.sa_uid = sa_uid

    @staticmethod
    def new_key() -> bytes:
        return secrets.token_bytes(32)

    def identify(self, authorization: str | None) -> UserInfo | None:
        """The caller of a request; None means a token was presented and is not valid (401)."""
        if not authorization:
            return ANONYMOUS
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        return self.user_for_token(token.strip())

    def user_for_token(self, token: str) -> UserInfo | None:
        if hmac.compare_digest(token, self.admin_token):
            return ADMIN
        claims = self.verify(token)
        if claims is None:
            return None
        k8s = claims.get("kubernetes.io") or {}
        ns = k8s.get("namespace", "")
        sa = (k8s.get("serviceaccount") or {}).get("name", "")
        return UserInfo(
            f"system:serviceaccount:{ns}:{sa}",
            ["system:serviceaccounts", f"system:serviceaccounts:{ns}", "system:authenticated"],
            uid=(k8s.get("serviceaccount") or {}).get("uid", ""),
        )

    def issue(
        self,
        namespace: str,
        name: str,
        sa_uid: str,
        audiences: list[str] | None,
        expiration_seconds: int,
        bound: dict[str, Any] | None = None,
    ) -> tuple[str, int]:
        now = int(time.time())
        exp = now + expiration_seconds
        k8s: dict[str, Any] = {"namespace": namespace, "serviceaccount": {"name": name, "uid": sa_uid}}
        if bound and bound.get("kind") and bound.get("name"):
            k8s[str(bound["kind"]).lower()] = {"name": bound["name"], "uid": bound.get("uid", "")}
        claims = {
            "iss": ISSUER,
            "sub": f"system:serviceaccount:{namespace}:{name}",
            "aud": audiences or [ISSUER],
            "iat": now,
            "nbf": now,
            "exp": exp,
            "jti": str(uuid.uuid4()),
            "kubernetes.io": k8s,
        }
        header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
        payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
        sig = _b64(hmac.new(self.key, f"{header}.{payload}".encode(), hashlib.sha256).digest())
        return f"{header}.{payload}.{sig}", exp

    def verify(self, token: str) -> dict[str, Any] | None:
        parts = token.split(".")
        if len(parts) != 3:
            return None
        expected = _b64(hmac.new(self.key, f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(expected, parts[2]):
            return None
        try:
            claims: dict[str, Any] = json.loads(_unb64(parts[1]))
        except ValueError:
            return None
        if int(claims.get("exp", 0)) < time.time():
            return None
        k8s = claims.get("kubernetes.io") or {}
        sa = k8s.get("serviceaccount") or {}
        # a token dies with its ServiceAccount, as bound tokens do on a real cluster
        if self.sa_uid(k8s.get("namespace", ""), sa.get("name", "")) != sa.get("uid"):
            return None
        return claims


# What a request asks for, as the authorizer sees it: the RBAC evaluator's own request type.
Attributes = rbac.Request


class Authorizer:
    """AlwaysAllow."""

    mode = "AlwaysAllow"

    def allowed(self, user: UserInfo, attrs: Attributes) -> tuple[bool, str]:
        return True, ""

    def write_forbidden(
        self, user: UserInfo, resource: str, namespace: str, obj: dict[str, Any]
    ) -> str | None:
        """For a write of an RBAC object: None when allowed, else why not (privilege escalation)."""
        return None

    def rules(self, user: UserInfo, namespace: str) -> list[rbac.Rule]:
        """What the user may do in `namespace` (SelfSubjectRulesReview)."""
        return [
            rbac.Rule(("*",), ("*",), ("*",)),
            rbac.Rule(("*",), non_resource_urls=("*",)),
        ]


RBAC_GROUP = rbac.GROUP


class StorePolicy:
    """The RBAC objects as stored; read without copying (nothing here changes them)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def _items(self, resource: str) -> Iterable[dict[str, Any]]:
        return list(self.store.objects.get((RBAC_GROUP, resource), {}).values())

    def role(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.store.peek((RBAC_GROUP, "roles"), namespace, name)

    def cluster_role(self, name: str) -> dict[str, Any] | None:
        return self.store.peek((RBAC_GROUP, "clusterroles"), "", name)

    def cluster_roles(self) -> Iterable[dict[str, Any]]:
        return self._items("clusterroles")

    def role_bindings(self, namespace: str) -> Iterable[dict[str, Any]]:
        # From the store's namespace index: with a RoleBinding or more per namespace, a scan of
        # every binding per request grew with the number of namespaces.
        return list(self.store.namespace_objects((RBAC_GROUP, "rolebindings"), namespace).values())

    def cluster_role_bindings(self) -> Iterable[dict[str, Any]]:
        return self._items("clusterrolebindings")


class RBACAuthorizer(Authorizer):
    """Kubernetes RBAC over the objects in `store` (`--authorization RBAC`)."""

    mode = "RBAC"

    def __init__(self, store: Store) -> None:
        self.policy = StorePolicy(store)

    def allowed(self, user: UserInfo, attrs: Attributes) -> tuple[bool, str]:
        return rbac.authorize(self.policy, user, attrs)

    def write_forbidden(
        self, user: UserInfo, resource: str, namespace: str, obj: dict[str, Any]
    ) -> str | None:
        return rbac.write_forbidden(self.policy, user, resource, namespace, obj)

    def rules(self, user: UserInfo, namespace: str) -> list[rbac.Rule]:
        if rbac.MASTERS in user.groups:
            return super().rules(user, namespace)
        return [g.rule for g in rbac.grants(self.policy, user, namespace)]


def authorizer_for(mode: str, store: Store) -> Authorizer:
    if mode == "RBAC":
        return RBACAuthorizer(store)
    if mode == "AlwaysAllow":
        return Authorizer()
    raise ValueError(f"unknown authorization mode {mode!r} (AlwaysAllow or RBAC)")
