"""Subresources other than status: serviceaccounts/token (TokenRequest), pods/binding,
pods/eviction, the scale subresource, and the create-only review kinds (TokenReview,
SelfSubjectReview, SubjectAccessReview and friends)."""

from __future__ import annotations

import copy
import json
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from . import disruption, patching
from .auth import Attributes, UserInfo
from .errors import APIError, method_not_allowed
from .objects import now_rfc3339
from .resources import ResourceInfo
from .scheduler import bind_pod
from .store import Obj
from .wire import json_response, read_body, write_options

if TYPE_CHECKING:
    from .app import APIServer


class Subresources:
    def __init__(self, server: APIServer) -> None:
        self.server = server
        self.api = server.api

    async def post(
        self, request: web.Request, info: ResourceInfo, ns: str, name: str, subresource: str
    ) -> web.Response:
        """POST to serviceaccounts/token, pods/binding or pods/eviction."""
        body = await read_body(request) or {}
        if subresource == "token":
            sa = self.api.get(info, ns, name)
            spec = body.get("spec") or {}
            seconds = int(spec.get("expirationSeconds") or 3600)
            if seconds < 600:
                raise APIError(
                    422,
                    "Invalid",
                    f'TokenRequest.authentication.k8s.io "{name}" is invalid: spec.expirationSeconds: '
                    f"Invalid value: {seconds}: may not specify a duration less than 10 minutes",
                    {
                        "name": name,
                        "group": "authentication.k8s.io",
                        "kind": "TokenRequest",
                        "causes": [
                            {
                                "reason": "FieldValueInvalid",
                                "field": "spec.expirationSeconds",
                                "message": f"Invalid value: {seconds}: may not specify a duration less "
                                "than 10 minutes",
                            }
                        ],
                    },
                )
            token, exp = self.server.authenticator.issue(
                ns, name, sa["metadata"]["uid"], spec.get("audiences"), seconds, spec.get("boundObjectRef")
            )
            out_spec = dict(spec)
            out_spec["expirationSeconds"] = seconds
            out_spec.setdefault(
                "audiences", spec.get("audiences") or ["https://kubernetes.default.svc.cluster.local"]
            )
            return json_response(
                {
                    "kind": "TokenRequest",
                    "apiVersion": "authentication.k8s.io/v1",
                    "metadata": {"name": name, "namespace": ns, "creationTimestamp": now_rfc3339()},
                    "spec": out_spec,
                    "status": {
                        "token": token,
                        "expirationTimestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(exp)),
                    },
                },
                201,
            )
        if subresource == "binding":
            node = (body.get("target") or {}).get("name", "")
            bind_pod(self.api, ns, name, node, uid=(body.get("metadata") or {}).get("uid"))
            return json_response(
                {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}, 201
            )
        disruption.evict(self.api, info, ns, name, body)
        return json_response(
            {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}, 201
        )

    async def scale(self, request: web.Request, info: ResourceInfo, ns: str, name: str) -> web.Response:
        """GET, PUT or PATCH the `autoscaling/v1` Scale of an object (replicas at the CRD's paths)."""
        obj = self.api.get(info, ns, name)
        spec_path = ".spec.replicas"
        status_path = ".status.replicas"
        selector_path = ""
        if info.scale:
            spec_path = info.scale.get("specReplicasPath", spec_path)
            status_path = info.scale.get("statusReplicasPath", status_path)
            selector_path = info.scale.get("labelSelectorPath", "")

        def read(o: Obj, p: str) -> Any:
            cur: Any = o
            for part in p.strip(".").split("."):
                cur = cur.get(part) if isinstance(cur, dict) else None
            return cur

        def scale_of(o: Obj) -> Obj:
            sel = read(o, selector_path) if selector_path else None
            if sel is None and isinstance((o.get("spec") or {}).get("selector"), dict):
                ml = o["spec"]["selector"].get("matchLabels") or {}
                sel = ",".join(f"{k}={v}" for k, v in ml.items())
            return {
                "kind": "Scale",
                "apiVersion": "autoscaling/v1",
                "metadata": {
                    k: o["metadata"][k]
                    for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                    if k in o["metadata"]
                },
                "spec": {"replicas": read(o, spec_path) or 0},
                "status": {"replicas": read(o, status_path) or 0, **({"selector": sel} if sel else {})},
            }

        if request.method == "GET":
            return json_response(scale_of(obj))
        current = scale_of(obj)
        if request.method == "PUT":
            new_scale = await read_body(request) or {}
        elif request.method == "PATCH":
            raw = await request.read()
            ctype = request.headers.get("Content-Type", "").split(";")[0]
            patch = json.loads(raw or b"{}")
            new_scale = (
                patching.json_patch(current, patch)
                if ctype == "application/json-patch+json"
                else patching.merge_patch(current, patch)
            )
        else:
            raise method_not_allowed()
        replicas = (new_scale.get("spec") or {}).get("replicas")
        new = copy.deepcopy(obj)
        cur: Any = new
        keys = spec_path.strip(".").split(".")
        for part in keys[:-1]:
            cur = cur.setdefault(part, {})
        cur[keys[-1]] = replicas
        rv = (new_scale.get("metadata") or {}).get("resourceVersion")
        if rv:
            new["metadata"]["resourceVersion"] = rv
        else:
            new["metadata"].pop("resourceVersion", None)
        opts = write_options(request)
        manager = opts.field_manager or request.headers.get("User-Agent", "").split("/")[0]
        stored = self.api.commit(info, obj, new, opts, manager, "scale")
        return json_response(scale_of(stored))

    def review(self, info: ResourceInfo, namespace: str, body: Any, user: UserInfo) -> Obj:
        body = copy.deepcopy(body) if isinstance(body, dict) else {}
        body["apiVersion"] = info.api_version
        body["kind"] = info.kind
        body.setdefault("metadata", {})["creationTimestamp"] = None
        spec = body.get("spec") or {}
        if info.kind == "TokenReview":
            who = self.server.authenticator.user_for_token(spec.get("token", ""))
            body["status"] = (
                {"authenticated": True, "user": who.to_dict(), "audiences": spec.get("audiences") or []}
                if who is not None
                else {"authenticated": False, "error": "invalid bearer token"}
            )
        elif info.kind == "SelfSubjectReview":
            body["status"] = {"userInfo": user.to_dict()}
        elif info.kind == "SelfSubjectRulesReview":
            rules = self.server.authorizer.rules(user, spec.get("namespace") or namespace)
            body["status"] = {
                "resourceRules": [r.to_dict() for r in rules if not r.non_resource_urls],
                "nonResourceRules": [r.to_dict() for r in rules if r.non_resource_urls],
                "incomplete": False,
            }
        else:
            ra = spec.get("resourceAttributes") or {}
            subject = user
            if info.kind in ("SubjectAccessReview", "LocalSubjectAccessReview"):
                subject = UserInfo(spec.get("user", ""), list(spec.get("groups") or []), spec.get("uid", ""))
            allowed, why = self.server.authorizer.allowed(
                subject,
                Attributes(
                    verb=ra.get("verb", ""),
                    group=ra.get("group", ""),
                    resource=ra.get("resource", ""),
                    subresource=ra.get("subresource", ""),
                    namespace=ra.get("namespace", namespace),
                    name=ra.get("name", ""),
                    path=(spec.get("nonResourceAttributes") or {}).get("path", ""),
                ),
            )
            body["status"] = {"allowed": allowed, **({"reason": why} if why else {})}
        out: Obj = body
        return out
