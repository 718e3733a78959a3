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
        self.store.listeners.append(self._on_event)

    def _on_event(self, event: WatchEvent) -> None:
        meta = event.obj["metadata"]
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

    def run_once(self) -> None:
        sa_namespaces, self._sa_namespaces = self._sa_namespaces, set()
        endpoint_namespaces, self._endpoint_namespaces = self._endpoint_namespaces, set()
        if time.monotonic() - self._endpoints_synced > _ENDPOINTS_RESYNC_SECONDS:
            endpoint_namespaces = None
        if endpoint_namespaces is None:
            self._endpoints_synced = time.monotonic()
        self._default_service_accounts(sa_namespaces)
        self._garbage_collect()
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

    def _garbage_collect(self) -> None:
        everything = self.store.iter_all()
        by_uid = {o["metadata"].get("uid"): (s, o) for s, o in everything}
        dependents: dict[str, list[tuple[StorageKey, Obj]]] = {}
        for storage, obj in everything:
            for ref in obj["metadata"].get("ownerReferences") or []:
                dependents.setdefault(ref.get("uid", ""), []).append((storage, obj))
        for storage, obj in everything:
            refs = obj["metadata"].get("ownerReferences") or []
            if not refs:
                continue
            orphaned_by = [
                r.get("uid")
                for r in refs
                if r.get("uid") in by_uid
                and by_uid[r["uid"]][1]["metadata"].get("deletionTimestamp")
                and "orphan" in (by_uid[r["uid"]][1]["metadata"].get("finalizers") or [])
            ]
            if orphaned_by:
                self._rewrite(
                    storage,
                    obj,
                    lambda o, gone=set(orphaned_by): (
                        o["metadata"].__setitem__(
                            "ownerReferences",
                            [
                                r
                                for r in o["metadata"].get("ownerReferences") or []
                                if r.get("uid") not in gone
                            ],
                        )
                        if [r for r in o["metadata"].get("ownerReferences") or [] if r.get("uid") not in gone]
                        else o["metadata"].pop("ownerReferences", None)
                    ),
                )
                continue
            if obj["metadata"].get("deletionTimestamp"):
                continue
            live_owners = [by_uid[r["uid"]] for r in refs if r.get("uid") in by_uid]
            if not live_owners:
                self._delete(storage, obj)
                continue
            if any(
                o["metadata"].get("deletionTimestamp")
                and "foregroundDeletion" in (o["metadata"].get("finalizers") or [])
                for _, o in live_owners
            ):
                self._delete(storage, obj, "Foreground")
        for uid, (storage, owner) in by_uid.items():
            fins = owner["metadata"].get("finalizers") or []
            if not owner["metadata"].get("deletionTimestamp"):
                continue
            deps = [
                d
                for d in dependents.get(uid, [])
                if self.store.by_uid(d[1]["metadata"].get("uid", "")) is not None
            ]
            if "orphan" in fins and not deps:
                self._rewrite(storage, owner, _drop_finalizer("orphan"))
            elif "foregroundDeletion" in fins and not deps:
                self._rewrite(storage, owner, _drop_finalizer("foregroundDeletion"))

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
                for s, o in self.store.iter_all()
                if s != NS_STORAGE and o["metadata"].get("namespace") == name
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
        # The stored pods themselves, not copies: this pass runs after every burst of changes, and
        # copying 8000 pods each time was most of the API server's CPU at 1000 jobs x 8 pods.
        for pod in list(self.store.objects.get(POD_STORAGE, {}).values()):
            meta = pod["metadata"]
            if not meta.get("deletionTimestamp") or meta.get("finalizers"):
                continue
            node = (pod.get("spec") or {}).get("nodeName")
            if not node or self.store.peek(NODE_STORAGE, "", node) is None:
                self._delete(POD_STORAGE, copy.deepcopy(pod), None, grace=0)


def _drop_finalizer(name: str) -> Any:
    def change(o: Obj) -> None:
        fins = [f for f in o["metadata"].get("finalizers") or [] if f != name]
        if fins:
            o["metadata"]["finalizers"] = fins
        else:
            o["metadata"].pop("finalizers", None)

    return change
