"""The node lifecycle controller, its NoExecute taint eviction, and the pod garbage collector's
out-of-service pass, in the API server's process (kube-controller-manager's `node-lifecycle`
and `pod-garbage-collector` controllers).

- Health: a node's heartbeat is its Lease in `kube-node-lease` being renewed or its Ready
  condition's lastHeartbeatTime moving. When neither happened for `--node-monitor-grace-seconds`
  (Kubernetes' default, 50 s), every condition becomes `Unknown` (reason `NodeStatusUnknown`,
  `Kubelet stopped posting node status.`), the node gets the taints
  `node.kubernetes.io/unreachable` NoSchedule and NoExecute, a `NodeNotReady` event, and each of
  its pods' Ready condition turns False (with a `NodeNotReady` event on the pod). When the node
  posts Ready again the taints go.
- Taint eviction: a pod bound to a node with NoExecute taints it does not tolerate is deleted at
  once; one that tolerates them for `tolerationSeconds` is deleted that long after the taint's
  `timeAdded`. Deletion is graceful, after the `DisruptionTarget` condition (reason
  `DeletionByTaintManager`) and a `TaintManagerEviction` event; the pod stays Terminating
  until its node's agent stops it (or someone force-deletes it).
- Pod GC: on a node that is not Ready and has the `node.kubernetes.io/out-of-service` taint,
  terminating pods are set Failed and force-deleted (non-graceful node shutdown).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import datetime
from typing import Any

from .deletion import DeleteOptions, delete
from .errors import APIError
from .objects import NODE_STORAGE, POD_STORAGE, ObjectAPI, now_rfc3339
from .recorder import Recorder, condition, set_condition
from .scheduler import toleration_matches
from .store import WatchEvent

log = logging.getLogger(__name__)
Obj = dict[str, Any]

LEASE_STORAGE = ("coordination.k8s.io", "leases")
NODE_LEASE_NAMESPACE = "kube-node-lease"
UNREACHABLE_TAINT = "node.kubernetes.io/unreachable"
NOT_READY_TAINT = "node.kubernetes.io/not-ready"
OUT_OF_SERVICE_TAINT = "node.kubernetes.io/out-of-service"
DEFAULT_NODE_MONITOR_GRACE_SECONDS = 50.0
CONDITION_TYPES = ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure")


def _parse_time(value: str | None) -> float | None:
    if not value:
        return None
    with contextlib.suppress(ValueError):
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    return None


class NodeLifecycleController:
    def __init__(self, api: ObjectAPI, grace_seconds: float = DEFAULT_NODE_MONITOR_GRACE_SECONDS) -> None:
        self.api = api
        self.store = api.store
        self.grace = grace_seconds
        self.nodes = Recorder(api, "node-controller")
        self.taints = Recorder(api, "taint-eviction-controller")
        self.podgc = Recorder(api, "pod-garbage-collector")
        # When this controller last saw each node's heartbeat (its own clock, as the real one).
        self._seen: dict[str, float] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.store.listeners.append(self._on_event)

    def start(self) -> None:
        now = time.monotonic()
        for node in self.store.objects.get(NODE_STORAGE, {}).values():
            self._seen[node["metadata"]["name"]] = now  # a full grace after (re)start, as on a real cluster
        self._task = asyncio.create_task(self._run(), name="node lifecycle")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._on_event in self.store.listeners:
            self.store.listeners.remove(self._on_event)

    def _on_event(self, ev: WatchEvent) -> None:
        if ev.storage == LEASE_STORAGE and ev.obj["metadata"].get("namespace") == NODE_LEASE_NAMESPACE:
            old = ((ev.old or {}).get("spec") or {}).get("renewTime")
            if ev.type != "DELETED" and (ev.obj.get("spec") or {}).get("renewTime") != old:
                self._seen[ev.obj["metadata"]["name"]] = time.monotonic()
        elif ev.storage == NODE_STORAGE:
            name = ev.obj["metadata"]["name"]
            if ev.type == "DELETED":
                self._seen.pop(name, None)
                return
            new_ready = condition(ev.obj, "Ready") or {}
            old_ready = condition(ev.old or {}, "Ready") or {}
            if ev.type == "ADDED" or new_ready.get("lastHeartbeatTime") != old_ready.get("lastHeartbeatTime"):
                self._seen[name] = time.monotonic()
            if new_ready.get("status") != old_ready.get("status") or (ev.obj.get("spec") or {}).get(
                "taints"
            ) != ((ev.old or {}).get("spec") or {}).get("taints"):
                self._wake.set()

    async def _run(self) -> None:
        period = max(0.2, min(5.0, self.grace / 5))  # --node-monitor-period (5 s), shortened with the grace
        while True:
            with contextlib.suppress(TimeoutError):
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for drops a cancellation
                # that arrives as the event is set, and this loop would then never stop.
                async with asyncio.timeout(period):
                    await self._wake.wait()
            self._wake.clear()
            try:
                self.run_once()
            except Exception:
                log.exception("node lifecycle pass failed")

    def run_once(self) -> None:
        now = time.monotonic()
        for node in self.store.scan(NODE_STORAGE):  # read; `Recorder.update` copies to change
            name = node["metadata"]["name"]
            seen = self._seen.setdefault(name, now)
            ready = condition(node, "Ready")
            if now - seen > self.grace and (ready is None or ready.get("status") != "Unknown"):
                node = self._mark_unknown(node) or node
            elif ready is not None and ready.get("status") == "True":
                node = self._untaint(node) or node
        self._evict()
        self._gc_out_of_service()

    # ---- node health ----------------------------------------------------------------------------

    def _mark_unknown(self, node: Obj) -> Obj | None:
        name = node["metadata"]["name"]
        log.info("node %s: no heartbeat for %.0fs, marking it Unknown", name, self.grace)
        stamp = now_rfc3339()

        def unknown(n: Obj) -> None:
            for ctype in CONDITION_TYPES:
                old = condition(n, ctype) or {}
                set_condition(
                    n,
                    {
                        "type": ctype,
                        "status": "Unknown",
                        "reason": "NodeStatusUnknown",
                        "message": "Kubelet stopped posting node status.",
                        "lastHeartbeatTime": old.get("lastHeartbeatTime") or stamp,
                        "lastTransitionTime": stamp,
                    },
                )

        updated = self.nodes.update(NODE_STORAGE, node, unknown, "status")

        def taint(n: Obj) -> None:
            taints = [
                t for t in (n.setdefault("spec", {}).get("taints") or []) if t.get("key") != NOT_READY_TAINT
            ]
            for effect in ("NoSchedule", "NoExecute"):
                if not any(t.get("key") == UNREACHABLE_TAINT and t.get("effect") == effect for t in taints):
                    entry: Obj = {"key": UNREACHABLE_TAINT, "effect": effect}
                    if effect == "NoExecute":
                        entry["timeAdded"] = stamp
                    taints.append(entry)
            n["spec"]["taints"] = taints

        updated = self.nodes.update(NODE_STORAGE, updated or node, taint) or updated
        self.nodes.event(node, "Normal", "NodeNotReady", f"Node {name} status is now: NodeNotReady")
        for pod in self._pods_on(name):
            ready = condition(pod, "Ready")
            if ready is None or ready.get("status") == "False":
                continue

            def not_ready(p: Obj) -> None:
                set_condition(p, {"type": "Ready", "status": "False", "lastTransitionTime": stamp})

            self.nodes.update(POD_STORAGE, pod, not_ready, "status")
            self.nodes.event(pod, "Warning", "NodeNotReady", "Node is not ready")
        return updated

    def _untaint(self, node: Obj) -> Obj | None:
        taints = (node.get("spec") or {}).get("taints") or []
        if not any(t.get("key") in (UNREACHABLE_TAINT, NOT_READY_TAINT) for t in taints):
            return None

        def untaint(n: Obj) -> None:
            n["spec"]["taints"] = [
                t
                for t in n["spec"].get("taints") or []
                if t.get("key") not in (UNREACHABLE_TAINT, NOT_READY_TAINT)
            ]
            if not n["spec"]["taints"]:
                del n["spec"]["taints"]

        name = node["metadata"]["name"]
        self.nodes.event(node, "Normal", "NodeReady", f"Node {name} status is now: NodeReady")
        return self.nodes.update(NODE_STORAGE, node, untaint)

    def _pods_on(self, node: str) -> list[Obj]:
        # The stored pods, read (`Recorder.update` copies what it changes): a copy of every pod
        # of the cluster per lost node was a twentieth of the API server at 8000 pods.
        return [p for p in self.store.scan(POD_STORAGE) if (p.get("spec") or {}).get("nodeName") == node]

    # ---- taint eviction --------------------------------------------------------------------------

    def _evict(self) -> None:
        nodes = {n["metadata"]["name"]: n for n in self.store.objects.get(NODE_STORAGE, {}).values()}
        tainted = {
            name: [t for t in (n.get("spec") or {}).get("taints") or [] if t.get("effect") == "NoExecute"]
            for name, n in nodes.items()
        }
        if not any(tainted.values()):
            return
        wall = time.time()
        for pod in list(self.store.objects.get(POD_STORAGE, {}).values()):
            node = (pod.get("spec") or {}).get("nodeName")
            taints = tainted.get(node or "")
            if not taints or pod["metadata"].get("deletionTimestamp"):
                continue
            due = self._eviction_time(pod, taints)
            if due is not None and due <= wall:
                self._delete_for_taint(pod)

    @staticmethod
    def _eviction_time(pod: Obj, taints: list[Obj]) -> float | None:
        """When the pod must go (epoch seconds), None when it tolerates the taints for ever."""
        tolerations = (pod.get("spec") or {}).get("tolerations") or []
        due: float | None = None
        for taint in taints:
            matching = [t for t in tolerations if toleration_matches(t, taint)]
            if not matching:
                return 0.0
            seconds = [t.get("tolerationSeconds") for t in matching]
            if any(s is None for s in seconds):
                continue
            added = _parse_time(taint.get("timeAdded")) or 0.0
            at = added + max(0, min(int(s) for s in seconds if s is not None))
            due = at if due is None else min(due, at)
        return due

    def _delete_for_taint(self, pod: Obj) -> None:
        meta = pod["metadata"]

        def disrupted(p: Obj) -> None:
            set_condition(
                p,
                {
                    "type": "DisruptionTarget",
                    "status": "True",
                    "lastTransitionTime": now_rfc3339(),
                    "reason": "DeletionByTaintManager",
                    "message": "Taint manager: deleting due to NoExecute taint",
                },
            )

        self.taints.event(
            pod,
            "Normal",
            "TaintManagerEviction",
            f"Marking for deletion Pod {meta['namespace']}/{meta['name']}",
        )
        self.taints.update(POD_STORAGE, pod, disrupted, "status")
        info = self.api.registry.for_storage(POD_STORAGE)
        if info is not None:
            with contextlib.suppress(APIError):
                delete(
                    self.api,
                    info,
                    meta["namespace"],
                    meta["name"],
                    DeleteOptions(precondition_uid=meta["uid"]),
                )

    # ---- pod GC: out-of-service nodes ------------------------------------------------------------

    def _gc_out_of_service(self) -> None:
        for node in list(self.store.objects.get(NODE_STORAGE, {}).values()):
            taints = (node.get("spec") or {}).get("taints") or []
            ready = condition(node, "Ready") or {}
            if ready.get("status") == "True" or not any(t.get("key") == OUT_OF_SERVICE_TAINT for t in taints):
                continue
            for pod in self._pods_on(node["metadata"]["name"]):
                if not pod["metadata"].get("deletionTimestamp"):
                    continue

                def failed(p: Obj) -> None:
                    if p.setdefault("status", {}).get("phase") not in ("Succeeded", "Failed"):
                        p["status"]["phase"] = "Failed"

                self.podgc.update(POD_STORAGE, pod, failed, "status")
                info = self.api.registry.for_storage(POD_STORAGE)
                meta = pod["metadata"]
                if info is not None:
                    with contextlib.suppress(APIError):
                        delete(
                            self.api,
                            info,
                            meta["namespace"],
                            meta["name"],
                            DeleteOptions(grace_period=0, precondition_uid=meta["uid"]),
                        )
