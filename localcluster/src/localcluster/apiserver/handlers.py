"""HTTP: parse Kubernetes REST paths and query parameters, negotiate JSON/Table output, stream
watches and pod logs, and answer errors as `Status` objects."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import dataclasses
import json
import logging
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
import yaml
from aiohttp import web

from . import discovery, protobuf, rbac
from .auth import Attributes, UserInfo
from .errors import APIError, bad_request, gone, method_not_allowed, not_found, unauthorized
from .objects import DeleteOptions, ObjectAPI, WriteOptions, now_rfc3339
from .resources import ResourceInfo
from .selectors import (
    check_field_selector,
    fields_match,
    labels_match,
    parse_field_selector,
    parse_label_selector,
)
from .store import Obj, WatchEvent
from .tables import to_table

if TYPE_CHECKING:
    from .app import APIServer

log = logging.getLogger(__name__)
JSON = "application/json"


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def json_response(obj: Any, status: int = 200, warnings: list[str] | None = None) -> web.Response:
    headers = {}
    if warnings:
        headers["Warning"] = ", ".join(f'299 - "{w.replace(chr(34), chr(92) + chr(34))}"' for w in warnings)
    return web.Response(text=dumps(obj), status=status, content_type=JSON, headers=headers)


def status_response(err: APIError) -> web.Response:
    return json_response(err.status(), err.code)


def _truthy(value: str | None) -> bool:
    return value is not None and value.lower() in ("true", "1", "")


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
        if m == "GET":
            if t.watch_path or (_truthy(request.query.get("watch")) and "watch" in request.query):
                return "watch"
            return "get" if t.name else "list"
        return {
            "POST": "create",
            "PUT": "update",
            "PATCH": "patch",
            "DELETE": "delete" if t.name else "deletecollection",
        }.get(m, m.lower())

    # -- helpers ------------------------------------------------------------------
    @staticmethod
    async def _body(request: web.Request) -> Any:
        raw = await request.read()
        if not raw:
            return None
        ctype = (request.content_type or "").lower()
        if "protobuf" in ctype:
            try:
                return protobuf.decode(raw)
            except protobuf.ProtobufError as exc:
                raise APIError(
                    415,
                    "UnsupportedMediaType",
                    f"the body of the request was in an unknown format - accepted media types include: "
                    f"application/json, application/yaml ({exc})",
                ) from exc
        try:
            if "yaml" in ctype:
                return yaml.safe_load(raw)
            return json.loads(raw)
        except (ValueError, yaml.YAMLError) as exc:
            raise bad_request(f"the object provided is unrecognized: {exc}") from exc

    @staticmethod
    def _write_options(request: web.Request) -> WriteOptions:
        q = request.query
        dry = q.getall("dryRun", [])
        for d in dry:
            if d != "All":
                raise bad_request(f'Invalid value: "{d}": supported values: "All"')
        validation_mode = q.get("fieldValidation", "Warn") or "Warn"
        if validation_mode not in ("Strict", "Warn", "Ignore"):
            raise bad_request(
                f'Invalid value: "{validation_mode}": fieldValidation must be one of Strict, Warn or Ignore'
            )
        return WriteOptions(
            dry_run=bool(dry),
            field_manager=q.get("fieldManager", ""),
            field_validation=validation_mode,
            force=_truthy(q.get("force")) if "force" in q else False,
        )

    @staticmethod
    def _wants_table(request: web.Request) -> bool:
        accept = request.headers.get("Accept", "")
        for part in accept.split(","):
            if "as=Table" in part and "g=meta.k8s.io" in part:
                return True
            if part.strip().startswith(JSON) or part.strip() in ("*/*", ""):
                return False
        return False

    @staticmethod
    def _wants_metadata(request: web.Request) -> bool:
        accept = request.headers.get("Accept", "")
        first = accept.split(",")[0]
        return "as=PartialObjectMetadata" in first

    def _render(
        self,
        request: web.Request,
        info: ResourceInfo,
        obj: Obj,
        status: int = 200,
        warnings: list[str] | None = None,
    ) -> web.Response:
        if obj.get("kind") != "Status":
            if self._wants_table(request):
                include = request.query.get("includeObject", "Metadata")
                return json_response(
                    to_table(
                        info, [obj], include, {"resourceVersion": obj["metadata"].get("resourceVersion", "")}
                    ),
                    status,
                    warnings,
                )
            if self._wants_metadata(request):
                return json_response(_partial(obj), status, warnings)
        return json_response(obj, status, warnings)

    # -- verbs --------------------------------------------------------------------
    async def _serve(self, request: web.Request, t: Target, verb: str, user: UserInfo) -> web.StreamResponse:
        info = t.info
        ns = t.namespace or ""
        ua = request.headers.get("User-Agent", "")
        if t.subresource == "log":
            if request.method != "GET":
                raise method_not_allowed()
            return await self._pod_log(request, ns, t.name or "")
        if info.virtual:
            if request.method != "POST":
                raise method_not_allowed()
            return json_response(self._review(info, ns, await self._body(request), user), 201)
        if t.subresource in ("token", "binding", "eviction"):
            if request.method != "POST":
                raise method_not_allowed()
            return await self._post_subresource(request, t)
        if t.subresource == "scale":
            return await self._scale(request, t)
        if verb == "watch":
            return await self._watch(request, info, t.namespace, t.name)
        if verb == "get":
            obj = self.api.output(info, self.api.get(info, ns, t.name or ""))
            return self._render(request, info, obj)
        if verb == "list":
            return self._list(request, info, t.namespace)
        if verb not in info.verbs and not t.subresource:
            raise method_not_allowed()
        if verb == "create":
            if t.name:
                raise method_not_allowed()
            opts = self._write_options(request)
            body = await self._body(request)
            self._check_rbac_write(user, info, ns, body)
            obj = self.api.create(info, ns, body, opts, ua)
            return self._render(request, info, obj, 201, opts.warnings)
        if verb == "update":
            opts = self._write_options(request)
            body = await self._body(request)
            self._check_rbac_write(user, info, ns, body)
            obj = self.api.update(info, ns, t.name or "", body, opts, ua, t.subresource)
            return self._render(request, info, obj, 200, opts.warnings)
        if verb == "patch":
            opts = self._write_options(request)
            raw = await request.read()
            existed = self.store.peek(info.storage, ns if info.namespaced else "", t.name or "") is not None
            if info.group == rbac.GROUP and self.server.authorizer.mode != "AlwaysAllow":
                # the object the patch would produce is what must not escalate
                preview = self.api.patch(
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
            obj = self.api.patch(
                info, ns, t.name or "", request.headers.get("Content-Type", ""), raw, opts, ua, t.subresource
            )
            return self._render(request, info, obj, 200 if existed else 201, opts.warnings)
        if verb == "delete":
            d = await self._delete_options(request)
            result = self.api.delete(info, ns, t.name or "", d)
            return self._render(request, info, result, 200)
        if verb == "deletecollection":
            d = await self._delete_options(request)
            items = self.api.list_objects(
                info, t.namespace, request.query.get("labelSelector"), request.query.get("fieldSelector")
            )
            for item in items:
                with contextlib.suppress(APIError):
                    self.api.delete(info, item["metadata"].get("namespace", ""), item["metadata"]["name"], d)
            return json_response(
                {
                    "kind": info.list_kind,
                    "apiVersion": info.api_version,
                    "metadata": {"resourceVersion": str(self.store.rv)},
                    "items": [self.api.output(info, i) for i in items],
                }
            )
        raise method_not_allowed()

    async def _delete_options(self, request: web.Request) -> DeleteOptions:
        q = request.query
        body: dict[str, Any] = {}
        try:
            parsed = await self._body(request)
        except APIError:
            parsed = None
        if isinstance(parsed, dict):
            body = parsed
        grace = body.get("gracePeriodSeconds", q.get("gracePeriodSeconds"))
        propagation = body.get("propagationPolicy") or q.get("propagationPolicy")
        orphan = body.get("orphanDependents", q.get("orphanDependents"))
        if propagation is None and orphan is not None:
            propagation = "Orphan" if str(orphan).lower() == "true" else "Background"
        if propagation not in (None, "Orphan", "Background", "Foreground"):
            raise bad_request(
                f'Unsupported value: "{propagation}": supported values: "Foreground", "Background", "Orphan"'
            )
        pre = body.get("preconditions") or {}
        dry = body.get("dryRun") or q.getall("dryRun", [])
        return DeleteOptions(
            grace_period=int(grace) if grace is not None else None,
            propagation=propagation,
            precondition_uid=pre.get("uid"),
            precondition_rv=pre.get("resourceVersion"),
            dry_run=bool(dry),
        )

    # -- list and watch -----------------------------------------------------------
    def _list(self, request: web.Request, info: ResourceInfo, namespace: str | None) -> web.StreamResponse:
        q = request.query
        items = self.api.list_objects(info, namespace, q.get("labelSelector"), q.get("fieldSelector"))
        rv = str(self.store.rv)
        meta: dict[str, Any] = {"resourceVersion": rv}
        token = q.get("continue")
        if token:
            try:
                state = json.loads(base64.urlsafe_b64decode(token.encode()))
                start = tuple(state["start"])
            except (ValueError, KeyError, TypeError) as exc:
                raise bad_request(f"continue key is not valid: {exc}") from exc
            if int(state.get("rv", 0)) < self.store.compacted:
                raise APIError(
                    410,
                    "Expired",
                    "The provided continue parameter is too old to display a consistent list result. "
                    "You can start a new list without the continue parameter.",
                )
            items = [i for i in items if (i["metadata"].get("namespace", ""), i["metadata"]["name"]) > start]
        limit = int(q.get("limit", "0") or 0)
        if limit > 0 and len(items) > limit:
            last = items[limit - 1]["metadata"]
            meta["continue"] = base64.urlsafe_b64encode(
                dumps({"rv": self.store.rv, "start": [last.get("namespace", ""), last["name"]]}).encode()
            ).decode()
            meta["remainingItemCount"] = len(items) - limit
            items = items[:limit]
        out = [self.api.output(info, i) for i in items]
        if self._wants_table(request):
            return json_response(to_table(info, out, q.get("includeObject", "Metadata"), meta))
        if self._wants_metadata(request):
            return json_response(
                {
                    "kind": "PartialObjectMetadataList",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": meta,
                    "items": [_partial(o) for o in out],
                }
            )
        return json_response(
            {"kind": info.list_kind, "apiVersion": info.api_version, "metadata": meta, "items": out}
        )

    async def _watch(
        self, request: web.Request, info: ResourceInfo, namespace: str | None, name: str | None
    ) -> web.StreamResponse:
        q = request.query
        labels = parse_label_selector(q.get("labelSelector"))
        fields = parse_field_selector(q.get("fieldSelector"))
        check_field_selector(fields, info.kind)
        if name:
            fields.append(parse_field_selector(f"metadata.name={name}")[0])
        ns_filter = namespace if info.namespaced else None
        timeout = float(q["timeoutSeconds"]) if q.get("timeoutSeconds") else 1800.0 * (1 + random.random())
        bookmarks = _truthy(q.get("allowWatchBookmarks")) if "allowWatchBookmarks" in q else False
        send_initial = q.get("sendInitialEvents", "").lower() == "true"
        table = self._wants_table(request)
        metadata_only = self._wants_metadata(request)
        include = q.get("includeObject", "Metadata")
        rv_param = q.get("resourceVersion", "")

        def matches(obj: Obj | None) -> bool:
            if obj is None:
                return False
            meta = obj["metadata"]
            if ns_filter is not None and meta.get("namespace", "") != ns_filter:
                return False
            if not labels_match(labels, meta.get("labels")):
                return False
            view = self.api.output(info, obj) if info.group == "events.k8s.io" else obj
            return fields_match(fields, view)

        queue = self.store.subscribe(info.storage)
        try:
            # The snapshot and the subscription happen with no await in between: no change is lost.
            initial: list[tuple[str, Obj]] = []
            expired = False
            if rv_param in ("", "0") or send_initial:
                for obj in self.store.select(info.storage, ns_filter):
                    if matches(obj):
                        initial.append(("ADDED", obj))
            else:
                try:
                    since = int(rv_param)
                except ValueError as exc:
                    raise bad_request(f"invalid resource version: {rv_param}") from exc
                events = self.store.events_since(since)
                if events is None:
                    expired = True
                else:
                    for ev in events:
                        initial += self._translate(ev, info, matches)
            initial_rv = self.store.rv
            resp = web.StreamResponse(status=200, headers={"Content-Type": JSON, "Cache-Control": "no-cache"})
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            first_table = [True]

            async def send(kind: str, obj: Obj) -> None:
                if kind in ("ERROR", "BOOKMARK"):
                    payload = obj
                else:
                    out = self.api.output(info, obj)
                    if table:
                        payload = to_table(
                            info,
                            [out],
                            include,
                            {"resourceVersion": out["metadata"].get("resourceVersion", "")},
                        )
                        if not first_table[0]:
                            payload["columnDefinitions"] = []
                        first_table[0] = False
                    elif metadata_only:
                        payload = _partial(out)
                    else:
                        payload = out
                await resp.write((dumps({"type": kind, "object": payload}) + "\n").encode())

            if expired:
                err = gone(f"too old resource version: {rv_param} ({self.store.compacted + 1})")
                await send("ERROR", err.status())
                return resp
            for kind, obj in initial:
                await send(kind, obj)
            if send_initial and bookmarks:
                await send("BOOKMARK", self._bookmark(info, initial_rv, initial_end=True))
            deadline = time.monotonic() + timeout
            next_bookmark = time.monotonic() + self.bookmark_interval
            while True:
                now = time.monotonic()
                if now >= deadline:
                    break
                wait = min(deadline, next_bookmark) - now if bookmarks else deadline - now
                try:
                    # wake at least every few seconds to notice a client that went away
                    ev = await asyncio.wait_for(queue.get(), timeout=max(min(wait, 5.0), 0.001))
                except TimeoutError:
                    if request.transport is None or request.transport.is_closing():
                        break
                    if bookmarks and time.monotonic() >= next_bookmark and queue.empty():
                        await send("BOOKMARK", self._bookmark(info, self.store.rv))
                        next_bookmark = time.monotonic() + self.bookmark_interval
                    continue
                if ev.storage != info.storage:
                    continue
                for kind, obj in self._translate(ev, info, matches):
                    await send(kind, obj)
            return resp
        except (ConnectionResetError, aiohttp.ClientConnectionResetError):
            return web.Response(status=200)
        finally:
            self.store.unsubscribe(queue)

    @staticmethod
    def _translate(ev: WatchEvent, info: ResourceInfo, matches: Any) -> list[tuple[str, Obj]]:
        """A stored change as the watcher sees it through its selectors."""
        if ev.storage != info.storage:
            return []
        new_ok = matches(ev.obj)
        if ev.type == "ADDED":
            return [("ADDED", ev.obj)] if new_ok else []
        if ev.type == "DELETED":
            return [("DELETED", ev.obj)] if new_ok else []
        old_ok = matches(ev.old)
        if old_ok and new_ok:
            return [("MODIFIED", ev.obj)]
        if new_ok:
            return [("ADDED", ev.obj)]
        if old_ok:
            return [("DELETED", ev.obj)]
        return []

    @staticmethod
    def _bookmark(info: ResourceInfo, rv: int, initial_end: bool = False) -> Obj:
        meta: dict[str, Any] = {"resourceVersion": str(rv)}
        if initial_end:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        return {"kind": info.kind, "apiVersion": info.api_version, "metadata": meta}

    # -- subresources -------------------------------------------------------------
    async def _post_subresource(self, request: web.Request, t: Target) -> web.Response:
        ns = t.namespace or ""
        name = t.name or ""
        body = await self._body(request) or {}
        if t.subresource == "token":
            sa = self.api.get(t.info, ns, name)
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
        if t.subresource == "binding":
            pod = self.api.get(t.info, ns, name)
            node = (body.get("target") or {}).get("name", "")
            if pod.get("spec", {}).get("nodeName"):
                raise APIError(
                    409,
                    "Conflict",
                    f'Operation cannot be fulfilled on pods/binding "{name}": pod {name} is already '
                    f'assigned to node "{pod["spec"]["nodeName"]}"',
                )
            pod["spec"]["nodeName"] = node
            self.api._commit(t.info, self.api.get(t.info, ns, name), pod, WriteOptions(), "binding", "")
            return json_response(
                {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}, 201
            )
        # eviction: a graceful delete of the pod
        opts = body.get("deleteOptions") or {}
        self.api.delete(
            t.info,
            ns,
            name,
            DeleteOptions(
                grace_period=opts.get("gracePeriodSeconds"), propagation=opts.get("propagationPolicy")
            ),
        )
        return json_response(
            {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}, 201
        )

    async def _scale(self, request: web.Request, t: Target) -> web.Response:
        info = t.info
        ns = t.namespace or ""
        name = t.name or ""
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
            new_scale = await self._body(request) or {}
        elif request.method == "PATCH":
            from . import patching

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
        opts = self._write_options(request)
        manager = opts.field_manager or request.headers.get("User-Agent", "").split("/")[0]
        stored = self.api._commit(info, obj, new, opts, manager, "scale")
        return json_response(scale_of(stored))

    def _review(self, info: ResourceInfo, namespace: str, body: Any, user: UserInfo) -> Obj:
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

    # -- pod logs ------------------------------------------------------------------
    async def _pod_log(self, request: web.Request, namespace: str, name: str) -> web.StreamResponse:
        info = self.registry.get("", "v1", "pods")
        assert info is not None
        pod = self.api.get(info, namespace, name)
        spec = pod.get("spec") or {}
        containers = [c.get("name", "") for c in spec.get("containers") or []]
        inits = [c.get("name", "") for c in spec.get("initContainers") or []]
        container = request.query.get("container", "")
        if not container:
            default = (pod["metadata"].get("annotations") or {}).get(
                "kubectl.kubernetes.io/default-container"
            )
            if default and default in containers + inits:
                container = default
            elif len(containers) == 1:
                container = containers[0]
            else:
                msg = (
                    f"a container name must be specified for pod {name}, "
                    f"choose one of: [{' '.join(containers)}]"
                )
                if inits:
                    msg += f" or one of the init containers: [{' '.join(inits)}]"
                raise bad_request(msg)
        if container not in containers + inits + [
            c.get("name") for c in spec.get("ephemeralContainers") or []
        ]:
            raise bad_request(f"container {container} is not valid for pod {name}")
        node_name = spec.get("nodeName")
        node = self.store.get(("", "nodes"), "", node_name) if node_name else None
        if node is None:
            raise bad_request(
                f"pod {name} does not have a host assigned"
                if not node_name
                else f'nodes "{node_name}" not found'
            )
        status = node.get("status") or {}
        ip = next(
            (a.get("address") for a in status.get("addresses") or [] if a.get("type") == "InternalIP"), None
        )
        port = ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port")
        if not ip or not port:
            raise APIError(
                500,
                "InternalError",
                f"node {node_name} has no kubelet endpoint "
                "(InternalIP address and daemonEndpoints.kubeletEndpoint.Port)",
            )
        params = {
            k: v
            for k, v in request.query.items()
            if k
            in ("follow", "tailLines", "previous", "timestamps", "sinceSeconds", "sinceTime", "limitBytes")
        }
        url = f"http://{ip}:{port}/containerLogs/{namespace}/{name}/{container}"
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
        resp: web.StreamResponse | None = None
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(url, params=params) as upstream,
            ):
                if upstream.status != 200:
                    text = await upstream.text()
                    try:
                        status_obj = json.loads(text)
                        if isinstance(status_obj, dict) and status_obj.get("kind") == "Status":
                            return json_response(status_obj, upstream.status)
                    except ValueError:
                        pass
                    reason = {400: "BadRequest", 404: "NotFound"}.get(upstream.status, "InternalError")
                    return status_response(APIError(upstream.status, reason, text.strip() or reason))
                resp = web.StreamResponse(status=200, headers={"Content-Type": "text/plain"})
                resp.enable_chunked_encoding()
                await resp.prepare(request)
                async for chunk in upstream.content.iter_any():
                    await resp.write(chunk)
                await resp.write_eof()
                return resp
        except aiohttp.ClientConnectorError as exc:
            if resp is not None:
                return resp
            raise APIError(
                500, "InternalError", f'Get "{url}": dial tcp {ip}:{port}: connect: connection refused'
            ) from exc
        except (ConnectionResetError, aiohttp.ClientConnectionResetError):
            return resp or web.Response(status=200)


def _selected_name(field_selector: str | None) -> str:
    """The name a field selector pins (`metadata.name=x`), else ""."""
    for term in (field_selector or "").split(","):
        key, op, value = term.partition("==") if "==" in term else term.partition("=")
        if op and key.strip() == "metadata.name" and not key.endswith("!"):
            return value.strip()
    return ""


def _partial(obj: Obj) -> Obj:
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata", {}),
    }


__all__ = ["Handlers", "not_found"]
