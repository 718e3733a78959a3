"""HTTP entry point: authenticate, parse Kubernetes REST paths, authorize, and route each request
to discovery, a verb on the object store, list/watch (`watch.py`), a subresource
(`subresources.py`) or the node proxy (`nodeproxy.py`). Errors are answered as `Status` objects.

Every request is logged at DEBUG as `METHOD PATH` (bench/ counts requests from that line)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from . import applying, deletion, discovery, nodeproxy, rbac, wire
from .auth import Attributes, UserInfo
from .errors import APIError, method_not_allowed, unauthorized
from .objects import ObjectAPI
from .resources import ResourceInfo
from .subresources import Subresources
from .watch import list_response, watch_response
from .wire import json_response, render, status_response

if TYPE_CHECKING:
    from .app import APIServer

log = logging.getLogger(__name__)
# subresources whose GET (a WebSocket upgrade) is authorized as `create`, as Kubernetes does
STREAMING = ("exec", "portforward")


@dataclass
class Target:
    info: ResourceInfo
    namespace: str | None
    name: str | None
    subresource: str
    watch_path: bool


class Handlers:
    def __init__(self, server: APIServer) -> None:
        self.server = server
        self.api: ObjectAPI = server.api
        self.store = server.store
        self.registry = server.registry
        self.bookmark_interval = server.bookmark_interval
        self.subresources = Subresources(server)

    # -- entry point -------------------------------------------------------------
    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        log.debug("%s %s", request.method, request.path_qs)
        try:
            user = self.server.authenticator.identify(request.headers.get("Authorization"))
            if user is None:
                raise unauthorized()
            if "Impersonate-User" in request.headers:
                user = self._impersonate(request, user)
            return await self._route(request, user)
        except APIError as err:
            return status_response(err)
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception as exc:
            log.exception("internal error on %s %s", request.method, request.path_qs)
            return status_response(APIError(500, "InternalError", f"Internal error occurred: {exc}"))

    async def _route(self, request: web.Request, user: UserInfo) -> web.StreamResponse:
        path = request.path.rstrip("/") or "/"
        parts = path.strip("/").split("/")
        if not ((parts[0] == "api" and len(parts) >= 3) or (parts[0] == "apis" and len(parts) >= 4)):
            # discovery, OpenAPI, health, version: non-resource requests, authorized by path
            self._authorize(user, Attributes(verb=request.method.lower(), path=request.path))
        if path in ("/healthz", "/livez", "/readyz") or path.startswith(("/healthz/", "/livez/", "/readyz/")):
            return web.Response(text="ok")
        if path == "/version":
            return json_response(discovery.version_info())
        if path == "/api":
            return json_response(discovery.api_versions(f"{request.host}"))
        if path == "/apis":
            return json_response(discovery.api_group_list(self.registry))
        if path == "/openapi/v3":
            return json_response(discovery.openapi_v3_root(self.registry))
        if path.startswith("/openapi/v3/"):
            return self._openapi_gv(path[len("/openapi/v3/") :])
        if parts[0] == "api" and len(parts) >= 2:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[0] == "apis" and len(parts) >= 2:
            if len(parts) == 2:
                doc = discovery.api_group(self.registry, parts[1])
                if doc is None:
                    raise self._no_resource()
                return json_response(doc)
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise self._no_resource()
        if not rest:
            listing = discovery.api_resource_list(self.registry, group, version)
            if listing is None:
                raise self._no_resource()
            return json_response(listing)
        target = self._target(group, version, rest)
        verb = self._verb(request, target)
        name = target.name or ""
        if not name and verb in ("list", "watch"):
            # As Kubernetes does: a list or watch of one object by field selector is authorized
            # with that name, so resourceNames rules can grant it.
            name = _selected_name(request.query.get("fieldSelector"))
        self._authorize(
            user,
            Attributes(
                verb=verb,
                group=group,
                resource=target.info.resource,
                subresource=target.subresource,
                namespace=target.namespace or "",
                name=name,
                path=path,
            ),
        )
        return await self._serve(request, target, verb, user)

    def _impersonate(self, request: web.Request, user: UserInfo) -> UserInfo:
        """`kubectl --as`: act as another user, if the caller may `impersonate` it (and each group)."""
        name = request.headers["Impersonate-User"]
        groups = request.headers.getall("Impersonate-Group", [])
        prefix = "system:serviceaccount:"
        if name.startswith(prefix) and name.count(":") == 3:
            ns, sa = name[len(prefix) :].split(":")
            self._authorize(user, Attributes("impersonate", "", "serviceaccounts", "", ns, sa))
            implied = ["system:serviceaccounts", f"system:serviceaccounts:{ns}"]
        else:
            self._authorize(user, Attributes("impersonate", "", "users", "", "", name))
            implied = []
        for group in groups:
            self._authorize(user, Attributes("impersonate", "", "groups", "", "", group))
        extra = [] if name == "system:anonymous" else ["system:authenticated"]
        return UserInfo(name, list(dict.fromkeys([*implied, *groups, *extra])))

    def _authorize(self, user: UserInfo, attrs: Attributes) -> None:
        allowed, _ = self.server.authorizer.allowed(user, attrs)
        if allowed:
            return
        req = rbac.Request(
            attrs.verb,
            attrs.group,
            attrs.resource,
            attrs.subresource,
            attrs.namespace,
            attrs.name,
            attrs.path,
        )
        details = {"name": attrs.name, "group": attrs.group, "kind": attrs.resource} if attrs.resource else {}
        raise APIError(403, "Forbidden", rbac.forbidden_message(user, req), details)

    def _check_rbac_write(self, user: UserInfo, info: ResourceInfo, namespace: str, obj: Any) -> None:
        """Privilege escalation prevention: a Role or binding grants no more than its writer holds
        (unless the writer may `escalate` or `bind`)."""
        if info.group != rbac.GROUP or not isinstance(obj, dict):
            return
        why = self.server.authorizer.write_forbidden(user, info.resource, namespace, obj)
        if why is not None:
            name = (obj.get("metadata") or {}).get("name", "")
            raise APIError(403, "Forbidden", why, {"name": name, "group": info.group, "kind": info.resource})

    @staticmethod
    def _no_resource() -> APIError:
        return APIError(404, "NotFound", "the server could not find the requested resource", {})

    def _openapi_gv(self, gv_path: str) -> web.Response:
        parts = gv_path.split("/")
        if parts[0] == "api" and len(parts) == 2:
            doc = discovery.openapi_v3_group_version(self.registry, "", parts[1])
        elif parts[0] == "apis" and len(parts) == 3:
            doc = discovery.openapi_v3_group_version(self.registry, parts[1], parts[2])
        else:
            doc = None
        if doc is None:
            raise self._no_resource()
        return json_response(doc)

    def _target(self, group: str, version: str, rest: list[str]) -> Target:
        watch_path = False
        if rest[0] == "watch":
            watch_path = True
            rest = rest[1:]
            if not rest:
                raise self._no_resource()
        namespace: str | None = None
        if rest[0] == "namespaces" and len(rest) >= 3:
            candidate = self.registry.get(group, version, rest[2])
            if candidate is not None and candidate.namespaced:
                namespace = rest[1]
                rest = rest[2:]
        if len(rest) > 3:
            raise self._no_resource()
        info = self.registry.get(group, version, rest[0])
        if info is None:
            raise self._no_resource()
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else ""
        if info.namespaced and namespace is None and name is not None:
            raise self._no_resource()
        if not info.namespaced and namespace is not None:
            raise self._no_resource()
        if sub and sub not in info.subresources:
            raise self._no_resource()
        return Target(info, namespace, name, sub, watch_path)

    @staticmethod
    def _verb(request: web.Request, t: Target) -> str:
        m = request.method
        if t.subresource in STREAMING:
            return "create"
        if m == "GET":
            if t.watch_path or (wire.truthy(request.query.get("watch")) and "watch" in request.query):
                return "watch"
            return "get" if t.name else "list"
        return {
            "POST": "create",
            "PUT": "update",
            "PATCH": "patch",
            "DELETE": "delete" if t.name else "deletecollection",
        }.get(m, m.lower())

    # -- verbs --------------------------------------------------------------------
    async def _serve(self, request: web.Request, t: Target, verb: str, user: UserInfo) -> web.StreamResponse:
        info = t.info
        ns = t.namespace or ""
        ua = request.headers.get("User-Agent", "")
        if t.subresource == "log":
            if request.method != "GET":
                raise method_not_allowed()
            return await nodeproxy.pod_log(self.api, request, ns, t.name or "")
        if t.subresource in STREAMING:
            if request.method not in ("GET", "POST"):
                raise method_not_allowed()
            return await nodeproxy.pod_stream(self.api, request, ns, t.name or "", t.subresource)
        if info.virtual:
            if request.method != "POST":
                raise method_not_allowed()
            return json_response(self.subresources.review(info, ns, await wire.read_body(request), user), 201)
        if t.subresource in ("token", "binding", "eviction"):
            if request.method != "POST":
                raise method_not_allowed()
            return await self.subresources.post(request, info, ns, t.name or "", t.subresource)
        if t.subresource == "scale":
            return await self.subresources.scale(request, info, ns, t.name or "")
        if verb == "watch":
            return await watch_response(self.api, request, info, t.namespace, t.name, self.bookmark_interval)
        if verb == "get":
            obj = self.api.view(info, self.api.peek(info, ns, t.name or ""))  # only serialized
            return render(request, info, obj)
        if verb == "list":
            return list_response(self.api, request, info, t.namespace)
        if verb not in info.verbs and not t.subresource:
            raise method_not_allowed()
        if verb == "create":
            if t.name:
                raise method_not_allowed()
            opts = wire.write_options(request)
            body = await wire.read_body(request)
            self._check_rbac_write(user, info, ns, body)
            obj = self.api.create(info, ns, body, opts, ua)
            return render(request, info, obj, 201, opts.warnings)
        if verb == "update":
            opts = wire.write_options(request)
            body = await wire.read_body(request)
            self._check_rbac_write(user, info, ns, body)
            obj = self.api.update(info, ns, t.name or "", body, opts, ua, t.subresource)
            return render(request, info, obj, 200, opts.warnings)
        if verb == "patch":
            opts = wire.write_options(request)
            raw = await request.read()
            existed = self.store.peek(info.storage, ns if info.namespaced else "", t.name or "") is not None
            if info.group == rbac.GROUP and self.server.authorizer.mode != "AlwaysAllow":
                # the object the patch would produce is what must not escalate
                preview = applying.patch(
                    self.api,
                    info,
                    ns,
                    t.name or "",
                    request.headers.get("Content-Type", ""),
                    raw,
                    dataclasses.replace(opts, dry_run=True, warnings=[]),
                    ua,
                    t.subresource,
                )
                self._check_rbac_write(user, info, ns, preview)
            obj = applying.patch(
                self.api,
                info,
                ns,
                t.name or "",
                request.headers.get("Content-Type", ""),
                raw,
                opts,
                ua,
                t.subresource,
            )
            return render(request, info, obj, 200 if existed else 201, opts.warnings)
        if verb == "delete":
            d = await wire.delete_options(request)
            result = deletion.delete(self.api, info, ns, t.name or "", d)
            return render(request, info, result, 200)
        if verb == "deletecollection":
            d = await wire.delete_options(request)
            items = self.api.list_objects(
                info, t.namespace, request.query.get("labelSelector"), request.query.get("fieldSelector")
            )
            for item in items:
                with contextlib.suppress(APIError):
                    deletion.delete(
                        self.api, info, item["metadata"].get("namespace", ""), item["metadata"]["name"], d
                    )
            return json_response(
                {
                    "kind": info.list_kind,
                    "apiVersion": info.api_version,
                    "metadata": {"resourceVersion": str(self.store.rv)},
                    "items": [self.api.output(info, i) for i in items],
                }
            )
        raise method_not_allowed()


def _selected_name(field_selector: str | None) -> str:
    """The name a field selector pins (`metadata.name=x`), else ""."""
    for term in (field_selector or "").split(","):
        key, op, value = term.partition("==") if "==" in term else term.partition("=")
        if op and key.strip() == "metadata.name" and not key.endswith("!"):
            return value.strip()
    return ""
