"""The generic REST semantics every resource shares: create, read, update, and the commit that
update, patch, apply and graceful deletion all end in.

HTTP parsing lives in `handlers.py` and `wire.py`; patches and server-side apply in
`applying.py`; deletion (grace periods, finalizers, propagation) in `deletion.py`. This module
knows metadata rules (uid, resourceVersion, generation, finalizers), status subresources, CRD
schemas and field managers.
"""

from __future__ import annotations

import copy
import json
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from . import crds as crdlib
from . import patching, validation
from .errors import (
    APIError,
    already_exists,
    bad_request,
    conflict,
    invalid,
    not_found,
)
from .kinds import KindHooks
from .resources import Registry, ResourceInfo
from .selectors import (
    check_field_selector,
    fields_match,
    labels_match,
    parse_field_selector,
    parse_label_selector,
)
from .store import Obj, StorageKey, Store

NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"
CRD_STORAGE = ("apiextensions.k8s.io", "customresourcedefinitions")
NS_STORAGE = ("", "namespaces")
NODE_STORAGE = ("", "nodes")
POD_STORAGE = ("", "pods")
CRD_CLEANUP = "customresourcecleanup.apiextensions.k8s.io"


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class WriteOptions:
    dry_run: bool = False
    field_manager: str = ""
    field_validation: str = "Warn"
    force: bool = False
    warnings: list[str] = field(default_factory=list)


# -- events.k8s.io/v1 <-> core/v1 Event: one storage, two shapes -------------------
_EV_PAIRS = [
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
    ("source", "deprecatedSource"),
    ("reportingComponent", "reportingController"),
]


def core_event_to_events_v1(obj: Obj) -> Obj:
    out = copy.deepcopy(obj)
    for core, new in _EV_PAIRS:
        if core in out:
            out[new] = out.pop(core)
    return out


def events_v1_to_core(obj: Obj) -> Obj:
    out = copy.deepcopy(obj)
    for core, new in _EV_PAIRS:
        if new in out:
            out[core] = out.pop(new)
    return out


class ObjectAPI:
    def __init__(self, store: Store, registry: Registry, node_name: str = "localnode") -> None:
        self.store = store
        self.registry = registry
        self.hooks = KindHooks(node_name)

    # -- shapes ------------------------------------------------------------------
    def output(self, info: ResourceInfo, obj: Obj) -> Obj:
        out = copy.deepcopy(obj)
        if info.group == "events.k8s.io":
            out = core_event_to_events_v1(out)
        out["apiVersion"] = info.api_version
        out["kind"] = info.kind
        return out

    def view(self, info: ResourceInfo, obj: Obj) -> Obj:
        """`output` without the deep copy, for an answer that is only serialized or read: its
        parts are the stored object's, which no one changes in place (a write stores a new
        object). What a write returns is a view: at thousands of writes a second, copying each
        stored object once more to answer was the API server's largest cost."""
        if info.group == "events.k8s.io":
            return self.output(info, obj)
        return {**obj, "apiVersion": info.api_version, "kind": info.kind}

    def to_storage(self, info: ResourceInfo, obj: Obj) -> Obj:
        if info.group == "events.k8s.io":
            obj = events_v1_to_core(obj)
            obj["apiVersion"] = "v1"
        return obj

    def list_strategy(self, info: ResourceInfo) -> patching.ListStrategy:
        if info.builtin:
            return patching.builtin_list_strategy
        return patching.schema_list_strategy(info.schema)

    # -- reads -------------------------------------------------------------------
    def get(self, info: ResourceInfo, namespace: str, name: str) -> Obj:
        obj = self.store.get(info.storage, namespace if info.namespaced else "", name)
        if obj is None:
            raise not_found(info.resource, info.group, name)
        return obj

    def peek(self, info: ResourceInfo, namespace: str, name: str) -> Obj:
        """`get` without the copy, for a reader that only reads or serializes: the stored object
        itself, which callers must not change."""
        obj = self.store.peek(info.storage, namespace if info.namespaced else "", name)
        if obj is None:
            raise not_found(info.resource, info.group, name)
        return obj

    def list_objects(
        self,
        info: ResourceInfo,
        namespace: str | None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[Obj]:
        """The objects a list selects, in (namespace, name) order: the stored objects themselves,
        which callers must not change (answer with `view` or `output`)."""
        labels = parse_label_selector(label_selector)
        fields = parse_field_selector(field_selector)
        check_field_selector(fields, info.kind)
        # The stored objects, not copies: a list is only filtered and serialized (`view`), and
        # copying every object of a kind per list was a list's largest cost.
        items = self.store.scan(info.storage, namespace if info.namespaced else None)
        return [
            o
            for o in items
            if labels_match(labels, o["metadata"].get("labels"))
            and fields_match(fields, self.output(info, o) if info.group == "events.k8s.io" else o)
        ]

    # -- validation helpers ------------------------------------------------------
    def _check_schema(self, info: ResourceInfo, obj: Obj, opts: WriteOptions) -> None:
        """Prune, default and validate a custom resource against its version's schema."""
        name = obj.get("metadata", {}).get("name", "") or obj.get("metadata", {}).get("generateName", "")
        if info.builtin:
            causes = validation.validate_labels(obj.get("metadata", {}).get("labels"), "metadata.labels")
            if causes:
                raise invalid(info.kind, info.group, name, causes)
            return
        schema = info.schema
        if schema is None:
            return
        unknown = validation.unknown_fields(obj, schema)
        if unknown:
            if opts.field_validation == "Strict":
                raise bad_request(
                    f'{info.kind} in version "{info.version}" cannot be handled as a {info.kind}: '
                    "strict decoding error: " + ", ".join(f'unknown field "{u}"' for u in unknown)
                )
            if opts.field_validation == "Warn":
                opts.warnings += [f'unknown field "{u}"' for u in unknown]
        validation.prune(obj, schema)
        validation.apply_defaults(obj, schema)
        causes = validation.validate(obj, schema)
        causes += validation.validate_labels(obj.get("metadata", {}).get("labels"), "metadata.labels")
        if causes:
            raise invalid(info.kind, info.group, name, causes)

    def _check_name(self, info: ResourceInfo, name: str) -> None:
        if info.group == "rbac.authorization.k8s.io" or info.storage == ("", "events"):
            bad = "/" in name or "%" in name or name in (".", "..")
            why = "may not contain '/' or '%'" if bad else None
        else:
            why = validation.validate_name(name, label=info.storage in (NS_STORAGE, ("", "services")))
        if why:
            raise invalid(
                info.kind,
                info.group,
                name,
                [
                    {
                        "reason": "FieldValueInvalid",
                        "message": f'Invalid value: "{name}": {why}',
                        "field": "metadata.name",
                    }
                ],
            )

    def _namespace_ok(self, info: ResourceInfo, namespace: str) -> None:
        if not info.namespaced:
            return
        ns = self.store.peek(NS_STORAGE, "", namespace)
        if ns is None:
            raise not_found("namespaces", "", namespace)
        if ns["metadata"].get("deletionTimestamp"):
            raise APIError(
                403,
                "Forbidden",
                f'{info.resource} "{{name}}" is forbidden: unable to create new content in namespace '
                f"{namespace} because it is being terminated",
                {"name": "", "kind": info.resource, "causes": [{"reason": "NamespaceTerminating"}]},
            )

    def manager(self, opts: WriteOptions, user_agent: str) -> str:
        if opts.field_manager:
            return opts.field_manager
        return (user_agent or "unknown").split("/", 1)[0] or "unknown"

    # -- create ------------------------------------------------------------------
    def create(
        self,
        info: ResourceInfo,
        namespace: str,
        body: Any,
        opts: WriteOptions,
        user_agent: str = "",
        *,
        managed: list[dict[str, Any]] | None = None,
    ) -> Obj:
        if not isinstance(body, dict):
            raise bad_request("the body of the request was not a JSON object")
        obj = self.to_storage(info, copy.deepcopy(body))
        self.check_type(info, obj)
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise bad_request("metadata must be an object")
        if info.namespaced:
            if meta.get("namespace") and meta["namespace"] != namespace:
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        if not meta.get("name"):
            if meta.get("generateName"):
                meta["name"] = meta["generateName"] + "".join(random.choice(NAME_CHARS) for _ in range(5))
            else:
                raise invalid(
                    info.kind,
                    info.group,
                    "",
                    [
                        {
                            "reason": "FieldValueRequired",
                            "message": "Required value: name or generateName is required",
                            "field": "metadata.name",
                        }
                    ],
                )
        name = meta["name"]
        self._check_name(info, name)
        self._namespace_ok(info, namespace)
        for key in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"):
            meta.pop(key, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_rfc3339()
        meta["generation"] = 1
        if not info.builtin and info.has_status:
            obj.pop("status", None)
        storage = info.storage
        self.hooks.on_create(info.kind, info.group, obj, self._allocated_ips_for(info))
        if storage == CRD_STORAGE:
            crdlib.prepare_crd(obj)
            obj["status"] = crdlib.crd_status(obj, now_rfc3339(), None)
        self._check_schema(info, obj, opts)
        if managed is not None:
            meta["managedFields"] = managed
        else:
            mf = patching.ManagedFields(None)
            mf.record_update(
                None, obj, self.manager(opts, user_agent), info.api_version, self.list_strategy(info)
            )
            meta["managedFields"] = mf.to_list()
            if not meta["managedFields"]:
                meta.pop("managedFields")
        if self.store.peek(storage, meta.get("namespace", ""), name) is not None:
            raise already_exists(info.resource, info.group, name)
        if opts.dry_run:
            return self.output(info, obj)
        stored = self.put(storage, obj)
        return self.view(info, stored)

    def check_type(self, info: ResourceInfo, obj: Obj) -> None:
        kind = obj.get("kind")
        api_version = obj.get("apiVersion")
        storage_av = "v1" if info.group == "events.k8s.io" else info.api_version
        if kind and kind != info.kind:
            raise bad_request(
                f"the API version in the data ({api_version}) does not match the expected API version "
                f"({info.api_version})"
                if api_version and api_version not in (info.api_version, storage_av)
                else f"the kind in the data ({kind}) does not match the expected kind ({info.kind})"
            )
        if api_version and api_version not in (info.api_version, storage_av):
            raise bad_request(
                f"the API version in the data ({api_version}) does not match the expected API version "
                f"({info.api_version})"
            )
        obj["apiVersion"] = info.api_version if info.group != "events.k8s.io" else "v1"
        obj["kind"] = info.kind

    def _allocated_ips_for(self, info: ResourceInfo) -> set[str]:
        """The cluster IPs in use, which only a Service's write needs (a set over every Service:
        not built for the writes of other kinds)."""
        return self._allocated_ips() if info.storage == ("", "services") else set()

    def _allocated_ips(self) -> set[str]:
        return {
            o.get("spec", {}).get("clusterIP", "")
            for o in self.store.objects.get(("", "services"), {}).values()
        }

    # -- update ------------------------------------------------------------------
    def update(
        self,
        info: ResourceInfo,
        namespace: str,
        name: str,
        body: Any,
        opts: WriteOptions,
        user_agent: str = "",
        subresource: str = "",
    ) -> Obj:
        if not isinstance(body, dict):
            raise bad_request("the body of the request was not a JSON object")
        ns = namespace if info.namespaced else ""
        old = self.store.peek(info.storage, ns, name)  # `commit` only reads it
        if old is None:
            raise not_found(info.resource, info.group, name)
        new = self.to_storage(info, copy.deepcopy(body))
        self.check_type(info, new)
        body_name = (new.get("metadata") or {}).get("name")
        if body_name and body_name != name:
            raise bad_request(
                f"the name of the object ({body_name}) does not match the name on the URL ({name})"
            )
        rv = (new.get("metadata") or {}).get("resourceVersion")
        if not rv and info.storage not in (("", "events"),) and not info.builtin:
            # custom resources require a resourceVersion on update, as the real server does
            raise invalid(
                info.kind,
                info.group,
                name,
                [
                    {
                        "reason": "FieldValueInvalid",
                        "message": "Invalid value: 0x0: must be specified for an update",
                        "field": "metadata.resourceVersion",
                    }
                ],
            )
        return self.commit(info, old, new, opts, self.manager(opts, user_agent), subresource)

    def commit(
        self,
        info: ResourceInfo,
        old: Obj,
        new: Obj,
        opts: WriteOptions,
        manager: str,
        subresource: str,
        *,
        applied_managed: list[dict[str, Any]] | None = None,
    ) -> Obj:
        """The common tail of update, patch and apply: `new` is the whole desired object. Returns
        a `view` of what was stored: read it, never change it."""
        old_meta = old["metadata"]
        meta = new.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise bad_request("metadata must be an object")
        rv = meta.get("resourceVersion")
        name = old_meta["name"]
        if rv and str(rv) != old_meta.get("resourceVersion"):
            raise conflict(
                info.resource,
                info.group,
                name,
                "the object has been modified; please apply your changes to the latest version and try again",
            )
        uid = meta.get("uid")
        if uid and uid != old_meta.get("uid"):
            raise conflict(
                info.resource,
                info.group,
                name,
                f"Precondition failed: UID in precondition: {uid}, UID in object meta: {old_meta.get('uid')}",
            )
        for key in (
            "uid",
            "creationTimestamp",
            "name",
            "namespace",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "resourceVersion",
        ):
            if key in old_meta:
                meta[key] = old_meta[key]
            else:
                meta.pop(key, None)
        if old_meta.get("deletionTimestamp"):
            # finalizers may only be removed from an object being deleted, never added
            added = set(meta.get("finalizers") or []) - set(old_meta.get("finalizers") or [])
            if added:
                raise invalid(
                    info.kind,
                    info.group,
                    name,
                    [
                        {
                            "reason": "FieldValueForbidden",
                            "message": "Forbidden: no new finalizers can be added if the object is being "
                            f"deleted, found new finalizers {json.dumps(sorted(added))}",
                            "field": "metadata.finalizers",
                        }
                    ],
                )
        if subresource == "status":
            # The old object with the new status. A builtin kind's parts are not changed in place
            # below (only a custom resource's schema pruning and defaulting do that), and `put`
            # stores a copy: a shallow copy does (a deep one per status write was the simulated
            # kubelet's largest cost at 8000 pods).
            result = {**old, "metadata": dict(old_meta)} if info.builtin else copy.deepcopy(old)
            if "status" in new:
                result["status"] = new["status"]
            else:
                result.pop("status", None)
            result["metadata"]["managedFields"] = meta.get("managedFields", old_meta.get("managedFields"))
            new = result
            meta = new["metadata"]
        elif subresource == "finalize" and info.storage == NS_STORAGE:
            result = copy.deepcopy(old)
            result.setdefault("spec", {})["finalizers"] = (new.get("spec") or {}).get("finalizers") or []
            new = result
            meta = new["metadata"]
        elif info.has_status:
            if "status" in old:
                # A builtin kind's update hooks at most add top-level status keys (a Service's
                # loadBalancer): a copy of the top level keeps the stored status as it is.
                status = old["status"]
                new["status"] = (
                    dict(status) if info.builtin and isinstance(status, dict) else copy.deepcopy(status)
                )
            else:
                new.pop("status", None)
        if info.storage == CRD_STORAGE and subresource != "status":
            crdlib.prepare_crd(new)
            new["status"] = crdlib.crd_status(new, now_rfc3339(), old.get("status"))
        if subresource not in ("status", "finalize"):
            self.hooks.on_update(info.kind, info.group, old, new, self._allocated_ips_for(info))
        self._check_schema(info, new, opts)
        if self._spec_changed(info, old, new):
            meta["generation"] = int(old_meta.get("generation") or 1) + 1
        if applied_managed is not None:
            meta["managedFields"] = applied_managed
        else:
            mf = patching.ManagedFields(old_meta.get("managedFields"))
            mf.record_update(old, new, manager, info.api_version, self.list_strategy(info), subresource)
            meta["managedFields"] = mf.to_list()
        if not meta.get("managedFields"):
            meta.pop("managedFields", None)
        if self.same(old, new):
            return self.output(info, old)
        if opts.dry_run:
            return self.output(info, new)
        # An update deletes an object being deleted once nothing holds it: no finalizer left and
        # no grace period running (as the generic registry's ShouldDeleteDuringUpdate). A pod
        # deleted with a grace period waits for its node's final delete (grace 0) however its
        # status changes meanwhile: one on a lost node stays Terminating.
        grace = old_meta.get("deletionGracePeriodSeconds")
        if meta.get("deletionTimestamp") and not grace and not self.blocked(info, new):
            gone = self.remove(info.storage, meta.get("namespace", ""), name)
            return self.output(info, gone or new)
        stored = self.put(info.storage, new)
        return self.view(info, stored)

    @staticmethod
    def same(old: Obj, new: Obj) -> bool:
        """Whether a write changes nothing but the resourceVersion and managedFields' times.
        Compares shallow views, not deep copies (this runs on every write)."""

        def strip(o: Obj) -> Obj:
            meta = dict(o["metadata"])
            meta.pop("resourceVersion", None)
            if meta.get("managedFields"):
                meta["managedFields"] = [
                    {k: v for k, v in e.items() if k != "time"} for e in meta["managedFields"]
                ]
            return {**o, "metadata": meta}

        return strip(old) == strip(new)

    @staticmethod
    def _spec_changed(info: ResourceInfo, old: Obj, new: Obj) -> bool:
        skip = {"metadata", "status"} if info.has_status else {"metadata"}
        skip |= {"apiVersion", "kind"}
        a = {k: v for k, v in old.items() if k not in skip}
        b = {k: v for k, v in new.items() if k not in skip}
        return a != b

    @staticmethod
    def blocked(info: ResourceInfo, obj: Obj) -> bool:
        if obj["metadata"].get("finalizers"):
            return True
        return info.storage == NS_STORAGE and bool((obj.get("spec") or {}).get("finalizers"))

    # -- writes to the store, with the registry kept in step (a CRD serves its kinds) --------
    def put(self, storage: StorageKey, obj: Obj) -> Obj:
        stored = self.store.put(storage, obj)
        if storage == CRD_STORAGE:
            self.registry.remove_crd(stored["metadata"]["name"])
            for res in crdlib.resources_for_crd(stored):
                self.registry.add(res)
        return stored

    def remove(self, storage: StorageKey, namespace: str, name: str) -> Obj | None:
        gone = self.store.remove(storage, namespace, name)
        if storage == CRD_STORAGE and gone is not None:
            self.registry.remove_crd(gone["metadata"]["name"])
            spec = gone.get("spec") or {}
            self.store.drop_storage((spec.get("group", ""), (spec.get("names") or {}).get("plural", "")))
        return gone

    def register_crds(self) -> None:
        """Serve every stored CRD (after loading a state file)."""
        for crd in self.store.select(CRD_STORAGE):
            for res in crdlib.resources_for_crd(crd):
                self.registry.add(res)

    # -- bootstrap -----------------------------------------------------------------
    def ensure(self, info: ResourceInfo, namespace: str, body: Obj) -> None:
        """Create `body` unless an object of that name exists (default namespaces and the like)."""
        name = body["metadata"]["name"]
        if self.store.peek(info.storage, namespace if info.namespaced else "", name) is None:
            self.create(info, namespace, body, WriteOptions(field_manager="localcluster"))
