"""The controllers a bare API server still needs for objects to behave as on a real cluster:
ownerReference garbage collection (background, foreground, orphan), namespace termination,
CRD instance cleanup, each namespace's `default` ServiceAccount, and removal of terminating pods
whose node does not exist (what the pod garbage collector does for a vanished node)."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import time
from typing import Any

from .deletion import DeleteOptions, delete
from .disruption import DisruptionController
from .endpoints import EndpointsController
from .errors import APIError
from .objects import (
    CRD_CLEANUP,
    CRD_STORAGE,
    NODE_STORAGE,
    NS_STORAGE,
    POD_STORAGE,
    ObjectAPI,
    WriteOptions,
)
from .store import Obj, StorageKey, WatchEvent

log = logging.getLogger(__name__)
MANAGER = "localcluster-controller"
SA_STORAGE = ("", "serviceaccounts")
# The kinds the endpoints controller reads: a change to one marks its namespace for a new pass.
_ENDPOINT_INPUTS = {POD_STORAGE, ("", "services"), ("", "endpoints"), ("discovery.k8s.io", "endpointslices")}
# Between a wake-up and the pass: at least this (a burst of changes lands first), and at most
# this many times the last pass's duration, so that the passes (each over every object for the
# garbage collector) take a bounded share of the one core however fast changes come.
_MIN_COALESCE_SECONDS = 0.01
_MAX_COALESCE_SECONDS = 1.0
_COALESCE_FACTOR = 2.0
# Every Service's endpoints are looked at again this often, changed or not (a write that failed
# is retried), as the periodic resync of Kubernetes' controllers.
_ENDPOINTS_RESYNC_SECONDS = 30.0
# The garbage collector's pass over every object runs this often; in between it looks only at
# the objects whose owners changed (at 1000 jobs a pass over every object after each burst of
# changes was a fifth of the API server's time).
_GC_RESYNC_SECONDS = 30.0


class Controllers:
    def __init__(self, api: ObjectAPI) -> None:
        self.api = api
        self.store = api.store
        self.endpoints = EndpointsController(api)
        self.disruption = DisruptionController(api)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last_pass = 0.0
        # What changed since the last pass: namespaces whose Services' endpoints may need a new
        # pass, and namespaces that may lack their `default` ServiceAccount (None: all of them).
        self._endpoint_namespaces: set[str] | None = None
        self._sa_namespaces: set[str] | None = None
        self._endpoints_synced = 0.0
        # The garbage collector's graph, kept from the events (as its dependency graph builder
        # keeps it from informers): owner uid -> uids of the objects that name it; and what to
        # look at on the next pass: objects as dependents (their owners changed or went) and as
        # owners (being deleted with the orphan/foreground finalizer).
        self._dependents: dict[str, set[str]] = {}
        self._check_dependents: set[str] = set()
        self._check_owners: set[str] = set()
        self._collected = 0.0  # when the last pass over every object ran
        # Pods being deleted with no finalizer left (namespace, name): the only pods the
        # orphan-pod pass looks at (it walked every pod after each burst of changes).
        self._terminating_pods: set[tuple[str, str]] = set()
        for storage, obj in self.store.iter_all():
            self._index_owners(None, obj)
            if storage == POD_STORAGE:
                self._note_terminating(obj, False)
        self.store.listeners.append(self._on_event)

    def _note_terminating(self, pod: Obj, gone: bool) -> None:
        meta = pod["metadata"]
        key = (meta.get("namespace", ""), meta["name"])
        if not gone and meta.get("deletionTimestamp") and not meta.get("finalizers"):
            self._terminating_pods.add(key)
        else:
            self._terminating_pods.discard(key)

    def _index_owners(self, old: Obj | None, new: Obj | None) -> None:
        uid = ((new or old or {}).get("metadata") or {}).get("uid", "")
        old_refs = {r.get("uid", "") for r in (old or {}).get("metadata", {}).get("ownerReferences") or []}
        new_refs = {r.get("uid", "") for r in (new or {}).get("metadata", {}).get("ownerReferences") or []}
        for owner in old_refs - new_refs:
            deps = self._dependents.get(owner)
            if deps is not None:
                deps.discard(uid)
                if not deps:
                    del self._dependents[owner]
        for owner in new_refs - old_refs:
            self._dependents.setdefault(owner, set()).add(uid)

    def _on_event(self, event: WatchEvent) -> None:
        meta = event.obj["metadata"]
        self._note_for_collection(event)
        if event.storage == POD_STORAGE:
            self._note_terminating(event.obj, event.type == "DELETED")
        if event.storage in _ENDPOINT_INPUTS and self._endpoint_namespaces is not None:
            self._endpoint_namespaces.add(meta.get("namespace", ""))
        if self._sa_namespaces is not None:
            if event.storage == NS_STORAGE:
                self._sa_namespaces.add(meta["name"])
            elif event.storage == SA_STORAGE and event.type == "DELETED":
                self._sa_namespaces.add(meta.get("namespace", ""))
        self._wake.set()

    def start(self) -> None:
        self._wake.set()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._on_event in self.store.listeners:
            self.store.listeners.remove(self._on_event)

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2.0):
                    await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(
                min(_MAX_COALESCE_SECONDS, max(_MIN_COALESCE_SECONDS, _COALESCE_FACTOR * self._last_pass))
            )
            started = time.monotonic()
            try:
                self.run_once()
            except Exception:
                log.exception("controller pass failed")
            self._last_pass = time.monotonic() - started

    def _note_for_collection(self, event: WatchEvent) -> None:
        old = event.old if event.type != "ADDED" else None
        new = event.obj if event.type != "DELETED" else None
        self._index_owners(old, new)
        meta = event.obj["metadata"]
        uid = meta.get("uid", "")
        old_meta = (old or {}).get("metadata") or {}
        if new is not None and meta.get("ownerReferences") != old_meta.get("ownerReferences"):
            self._check_dependents.add(uid)
        if new is None:
            # Its dependents lost an owner; its owners may have lost their last dependent.
            self._check_dependents |= self._dependents.get(uid, set())
            self._check_owners |= {r.get("uid", "") for r in old_meta.get("ownerReferences") or []}
            self._check_dependents.discard(uid)
        elif meta.get("deletionTimestamp") and (
            not old_meta.get("deletionTimestamp") or meta.get("finalizers") != old_meta.get("finalizers")
        ):
            self._check_dependents |= self._dependents.get(uid, set())
            self._check_owners.add(uid)

    def run_once(self) -> None:
        sa_namespaces, self._sa_namespaces = self._sa_namespaces, set()
        endpoint_namespaces, self._endpoint_namespaces = self._endpoint_namespaces, set()
        if time.monotonic() - self._endpoints_synced > _ENDPOINTS_RESYNC_SECONDS:
            endpoint_namespaces = None
        if endpoint_namespaces is None:
            self._endpoints_synced = time.monotonic()
        self._default_service_accounts(sa_namespaces)
        if time.monotonic() - self._collected > _GC_RESYNC_SECONDS:
            self._collected = time.monotonic()
            self._check_dependents, self._check_owners = set(), set()
            self._garbage_collect()
        else:
            dependents, self._check_dependents = self._check_dependents, set()
            owners, self._check_owners = self._check_owners, set()
            self._collect(dependents, owners)
        self._crd_cleanup()
        self._namespaces()
        self._orphan_pods()
        self.endpoints.run_once(endpoint_namespaces)
        self.disruption.run_once()

    # -- helpers -----------------------------------------------------------------
    def _delete(
        self, storage: StorageKey, obj: Obj, propagation: str | None = "Background", grace: int | None = None
    ) -> None:
        info = self.api.registry.for_storage(storage)
        if info is None:
            return
        meta = obj["metadata"]
        with contextlib.suppress(APIError):
            delete(
                self.api,
                info,
                meta.get("namespace", ""),
                meta["name"],
                DeleteOptions(propagation=propagation, grace_period=grace, precondition_uid=meta.get("uid")),
            )

    def _rewrite(self, storage: StorageKey, obj: Obj, change: Any) -> None:
        info = self.api.registry.for_storage(storage)
        if info is None:
            return
        new = copy.deepcopy(obj)
        change(new)
        meta = obj["metadata"]
        current = self.store.get(storage, meta.get("namespace", ""), meta["name"])
        if current is None:
            return
        with contextlib.suppress(APIError):
            self.api.commit(info, current, new, WriteOptions(field_manager=MANAGER), MANAGER, "")

    # -- passes ------------------------------------------------------------------
    def _default_service_accounts(self, namespaces: set[str] | None) -> None:
        """Each namespace's `default` ServiceAccount: of the namespaces named (None: every one)."""
        info = self.api.registry.get("", "v1", "serviceaccounts")
        if info is None:
            return
        stored = self.store.objects.get(NS_STORAGE, {})
        names = sorted(name for _, name in stored) if namespaces is None else sorted(namespaces)
        for name in names:
            ns = stored.get(("", name))
            if ns is None or ns["metadata"].get("deletionTimestamp"):
                continue
            if self.store.peek(SA_STORAGE, name, "default") is None:
                with contextlib.suppress(APIError):
                    self.api.create(
                        info,
                        name,
                        {"metadata": {"name": "default", "namespace": name}},
                        WriteOptions(field_manager=MANAGER),
                    )

    def _collect(self, dependents: set[str], owners: set[str]) -> None:
        """The pass of `_garbage_collect`, over the named objects only: `dependents` as objects
        whose owners may be gone or going, `owners` as objects whose deletion waits on theirs."""
        for uid in sorted(dependents):
            found = self.store.by_uid(uid)
            if found is not None:
                self._collect_dependent(found[0], found[1], self._owner_by_uid)
        for uid in sorted(owners):
            found = self.store.by_uid(uid)
            if found is not None:
                deps = [d for d in self._dependents.get(uid, set()) if self.store.by_uid(d) is not None]
                self._finish_owner(found[0], found[1], bool(deps))

    def _owner_by_uid(self, uid: str) -> tuple[StorageKey, Obj] | None:
        return self.store.by_uid(uid)

    def _collect_dependent(self, storage: StorageKey, obj: Obj, owner: Any) -> None:
        """Orphan `obj` from owners deleted with `orphan`, or delete it when no owner is left (or
        when one is deleted in the foreground)."""
        refs = obj["metadata"].get("ownerReferences") or []
        if not refs:
            return
        found = {r.get("uid"): owner(r.get("uid", "")) for r in refs}
        orphaned_by = [
            uid
            for uid, o in found.items()
            if o is not None
            and o[1]["metadata"].get("deletionTimestamp")
            and "orphan" in (o[1]["metadata"].get("finalizers") or [])
        ]
        if orphaned_by:
            self._rewrite(storage, obj, _drop_owners(set(orphaned_by)))
            return
        if obj["metadata"].get("deletionTimestamp"):
            return
        live_owners = [o for o in found.values() if o is not None]
        if not live_owners:
            self._delete(storage, obj)
            return
        if any(
            o["metadata"].get("deletionTimestamp")
            and "foregroundDeletion" in (o["metadata"].get("finalizers") or [])
            for _, o in live_owners
        ):
            self._delete(storage, obj, "Foreground")

    def _finish_owner(self, storage: StorageKey, owner: Obj, has_dependents: bool) -> None:
        """An owner deleted with `orphan` or `foregroundDeletion` goes once its dependents have."""
        fins = owner["metadata"].get("finalizers") or []
        if not owner["metadata"].get("deletionTimestamp") or has_dependents:
            return
        if "orphan" in fins:
            self._rewrite(storage, owner, _drop_finalizer("orphan"))
        elif "foregroundDeletion" in fins:
            self._rewrite(storage, owner, _drop_finalizer("foregroundDeletion"))

    def _garbage_collect(self) -> None:
        """The pass over every object (at start and as a periodic resync)."""
        everything = self.store.iter_all()
        by_uid = {o["metadata"].get("uid"): (s, o) for s, o in everything}
        dependents: dict[str, list[tuple[StorageKey, Obj]]] = {}
        for storage, obj in everything:
            for ref in obj["metadata"].get("ownerReferences") or []:
                dependents.setdefault(ref.get("uid", ""), []).append((storage, obj))
        for storage, obj in everything:
            self._collect_dependent(storage, obj, by_uid.get)
        for uid, (storage, owner) in by_uid.items():
            if not owner["metadata"].get("deletionTimestamp"):
                continue
            deps = [
                d
                for d in dependents.get(uid, [])
                if self.store.by_uid(d[1]["metadata"].get("uid", "")) is not None
            ]
            self._finish_owner(storage, owner, bool(deps))

    def _crd_cleanup(self) -> None:
        for crd in self.store.select(CRD_STORAGE):
            meta = crd["metadata"]
            if not meta.get("deletionTimestamp") or CRD_CLEANUP not in (meta.get("finalizers") or []):
                continue
            spec = crd.get("spec") or {}
            storage = (spec.get("group", ""), (spec.get("names") or {}).get("plural", ""))
            remaining = self.store.select(storage)
            for obj in remaining:
                if not obj["metadata"].get("deletionTimestamp"):
                    self._delete(storage, obj)
            if not remaining:
                self._rewrite(CRD_STORAGE, crd, _drop_finalizer(CRD_CLEANUP))

    def _namespaces(self) -> None:
        terminating = [
            ns
            for ns in self.store.objects.get(NS_STORAGE, {}).values()
            if ns["metadata"].get("deletionTimestamp")
        ]
        for ns in terminating:
            ns = copy.deepcopy(ns)
            meta = ns["metadata"]
            name = meta["name"]
            remaining = [
                (s, o)
                for s in list(self.store.objects)
                if s != NS_STORAGE
                for _, o in sorted(self.store.namespace_objects(s, name).items())
            ]
            for storage, obj in remaining:
                if not obj["metadata"].get("deletionTimestamp"):
                    self._delete(storage, copy.deepcopy(obj))
            if not remaining and (ns.get("spec") or {}).get("finalizers"):
                info = self.api.registry.get("", "v1", "namespaces")
                if info is None:
                    continue
                new = copy.deepcopy(ns)
                new["spec"]["finalizers"] = []
                with contextlib.suppress(APIError):
                    self.api.commit(info, ns, new, WriteOptions(field_manager=MANAGER), MANAGER, "finalize")

    def _orphan_pods(self) -> None:
        # Only the pods being deleted with no finalizer left, kept from the events (a walk over
        # every pod after each burst of changes was a tenth of the API server at 1000 jobs x 8);
        # the stored pods themselves are read, not copied.
        for key in sorted(self._terminating_pods):
            pod = self.store.peek(POD_STORAGE, *key)
            if pod is None:
                continue
            node = (pod.get("spec") or {}).get("nodeName")
            if not node or self.store.peek(NODE_STORAGE, "", node) is None:
                self._delete(POD_STORAGE, copy.deepcopy(pod), None, grace=0)


def _drop_owners(gone: set[str]) -> Any:
    def change(o: Obj) -> None:
        kept = [r for r in o["metadata"].get("ownerReferences") or [] if r.get("uid") not in gone]
        if kept:
            o["metadata"]["ownerReferences"] = kept
        else:
            o["metadata"].pop("ownerReferences", None)

    return change


def _drop_finalizer(name: str) -> Any:
    def change(o: Obj) -> None:
        fins = [f for f in o["metadata"].get("finalizers") or [] if f != name]
        if fins:
            o["metadata"]["finalizers"] = fins
        else:
            o["metadata"].pop("finalizers", None)

    return change
