"""Simulated nodes, in the API server's process (as kwok's controller fakes kubelets): Node
objects that take pods without running anything.

Why: a scale test of a controller (the operator at 1000 jobs x 8 pods) needs thousands of pods
that go Running and finish as a kubelet reports them, and the node agent cannot start thousands
of processes on a small machine. A simulated node costs a timer per pod and two status writes.

What a simulated node does, as the kubelet would report it:
- registers its Node (capacity = allocatable, the kubelet's four conditions, `nodeInfo`, the
  well-known labels plus `type: simulated`) and renews its Lease in `kube-node-lease`, so the node
  lifecycle controller keeps it Ready;
- a pod bound to it goes Running in one status write: `startTime`, `hostIP`, a `podIP` of its
  own (`10.244.<node>.<n>`), `qosClass`, conditions PodReadyToStartContainers, Initialized,
  Ready, ContainersReady and PodScheduled True, each container `running` (ready, started), init
  containers `terminated` (exit 0, `Completed`), sidecars (init containers with restartPolicy
  Always) running;
- after its duration (the pod's annotation `localcluster.io/simulated-duration`, in seconds or
  with an `s`/`m` suffix, else the node-level `--simulated-pod-duration`) its containers and
  sidecars are `terminated` with exit code 0, reason `Completed`, and the pod `Succeeded` with
  Ready and ContainersReady False, reason `PodCompleted` — unless its restartPolicy is Always
  (the kubelet would restart the container; the pod stays Running until deleted);
- a pod deleted gracefully is removed at once (its containers "stop" instantly), as the kubelet's
  final delete with grace period 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
from datetime import UTC, datetime
from typing import Any

from ..node.status import ContainerRecord, pod_conditions, pod_status, qos_class, terminated_state
from .deletion import DeleteOptions, delete
from .errors import APIError
from .objects import NODE_STORAGE, POD_STORAGE, ObjectAPI, WriteOptions, now_rfc3339
from .store import WatchEvent

log = logging.getLogger(__name__)
Obj = dict[str, Any]

COMPONENT = "kubelet"
DURATION_ANNOTATION = "localcluster.io/simulated-duration"
LEASE_STORAGE = ("coordination.k8s.io", "leases")
NODE_LEASE_NAMESPACE = "kube-node-lease"
DEFAULT_CAPACITY = {"cpu": "32", "memory": "256Gi", "pods": "110", "ephemeral-storage": "100Gi"}
TERMINAL = ("Succeeded", "Failed")


def parse_duration(text: str) -> float:
    """'30', '2.5s', '1m' -> seconds; ValueError on anything else (or a negative)."""
    value = str(text).strip()
    scale = 1.0
    if value.endswith("ms"):
        value, scale = value[:-2], 0.001
    elif value.endswith("s"):
        value = value[:-1]
    elif value.endswith("m"):
        value, scale = value[:-1], 60.0
    seconds = float(value) * scale
    if seconds < 0 or seconds != seconds:
        raise ValueError(f"duration must be a non-negative number of seconds, got {text!r}")
    return seconds


def _micro() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class SimulatedNodes:
    """`count` nodes `sim-node-1` … `sim-node-<count>`; pods bound to them are simulated."""

    def __init__(
        self,
        api: ObjectAPI,
        count: int,
        *,
        capacity: dict[str, str] | None = None,
        pod_duration: float = 10.0,
        heartbeat_seconds: float = 10.0,
        prefix: str = "sim-node",
    ) -> None:
        self.api = api
        self.store = api.store
        self.capacity = {**DEFAULT_CAPACITY, **(capacity or {})}
        self.pod_duration = pod_duration
        self.heartbeat = heartbeat_seconds
        self.names = [f"{prefix}-{i}" for i in range(1, count + 1)]
        self._index = {name: i for i, name in enumerate(self.names, start=1)}
        self._ips: dict[str, str] = {}  # pod uid -> its IP
        self._next_ip: dict[str, int] = dict.fromkeys(self.names, 0)
        self._timers: dict[str, asyncio.TimerHandle] = {}  # pod uid -> its completion
        self._todo: dict[str, tuple[str, str]] = {}  # pod uid -> (namespace, name), to look at
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._started_at = now_rfc3339()
        self.store.listeners.append(self._on_event)

    # ---- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        for name in self.names:
            self._register(name)
        for pod in self.store.objects.get(POD_STORAGE, {}).values():  # after a restart with state
            if (pod.get("spec") or {}).get("nodeName") in self._index:
                self._todo[pod["metadata"]["uid"]] = (pod["metadata"]["namespace"], pod["metadata"]["name"])
        self._wake.set()
        self._tasks = [
            asyncio.create_task(self._pods_loop(), name="simulated pods"),
            asyncio.create_task(self._heartbeat_loop(), name="simulated node heartbeats"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        if self._on_event in self.store.listeners:
            self.store.listeners.remove(self._on_event)

    # ---- nodes ----------------------------------------------------------------------------------

    def _node_status(self) -> Obj:
        now = now_rfc3339()
        conditions = [
            ("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory"),
            ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            ("Ready", "True", "KubeletReady", "simulated node is posting ready status"),
        ]
        return {
            "capacity": dict(self.capacity),
            "allocatable": dict(self.capacity),
            "conditions": [
                {
                    "type": t,
                    "status": s,
                    "reason": r,
                    "message": m,
                    "lastHeartbeatTime": now,
                    "lastTransitionTime": self._started_at,
                }
                for t, s, r, m in conditions
            ],
            "nodeInfo": {
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
                "kernelVersion": "",
                "osImage": "localcluster (simulated)",
                "containerRuntimeVersion": "localcluster://simulated",
                "kubeletVersion": "v1.32.0-localcluster",
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        }

    def _register(self, name: str) -> None:
        info = self.api.registry.for_storage(NODE_STORAGE)
        assert info is not None
        current = self.store.peek(NODE_STORAGE, "", name)  # copied to change
        if current is None:
            body = {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": name,
                    "labels": {
                        "kubernetes.io/hostname": name,
                        "kubernetes.io/os": "linux",
                        "kubernetes.io/arch": "amd64",
                        "type": "simulated",
                    },
                },
                "spec": {},
                "status": {},
            }
            current = self.api.create(info, "", body, WriteOptions(field_manager=COMPONENT))
        new = copy.deepcopy(current)
        new["status"] = {**(new.get("status") or {}), **self._node_status()}
        new["status"]["addresses"] = [
            {"type": "InternalIP", "address": f"10.244.{self._index[name]}.0"},
            {"type": "Hostname", "address": name},
        ]
        self.api.commit(info, current, new, WriteOptions(field_manager=COMPONENT), COMPONENT, "status")
        self._renew_lease(name)

    def _renew_lease(self, name: str) -> None:
        info = self.api.registry.for_storage(LEASE_STORAGE)
        if info is None:
            return
        spec = {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": _micro()}
        current = self.store.peek(LEASE_STORAGE, NODE_LEASE_NAMESPACE, name)  # copied to change
        opts = WriteOptions(field_manager=COMPONENT)
        with contextlib.suppress(APIError):
            if current is None:
                body = {
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {"name": name, "namespace": NODE_LEASE_NAMESPACE},
                    "spec": spec,
                }
                self.api.create(info, NODE_LEASE_NAMESPACE, body, opts)
            else:
                new = copy.deepcopy(current)
                new["spec"] = {**(new.get("spec") or {}), **spec}
                self.api.commit(info, current, new, opts, COMPONENT, "")

    async def _heartbeat_loop(self) -> None:
        beats = 0
        while True:
            await asyncio.sleep(self.heartbeat)
            beats += 1
            for name in self.names:
                try:
                    if self.store.peek(NODE_STORAGE, "", name) is None or beats % 3 == 0:
                        self._register(name)  # deleted: register again, as the kubelet does
                    else:
                        self._renew_lease(name)
                except APIError as e:
                    log.warning("simulated node %s: heartbeat failed: %s", name, e)

    # ---- pods -----------------------------------------------------------------------------------

    def _on_event(self, ev: WatchEvent) -> None:
        if ev.storage != POD_STORAGE:
            return
        meta = ev.obj["metadata"]
        uid = meta.get("uid", "")
        if ev.type == "DELETED":
            timer = self._timers.pop(uid, None)
            if timer is not None:
                timer.cancel()
            self._ips.pop(uid, None)
            self._todo.pop(uid, None)
            return
        if (ev.obj.get("spec") or {}).get("nodeName") not in self._index:
            return
        old_node = ((ev.old or {}).get("spec") or {}).get("nodeName")
        if (
            ev.type == "ADDED"
            or old_node != ev.obj["spec"]["nodeName"]
            or (
                meta.get("deletionTimestamp")
                and not (ev.old or {}).get("metadata", {}).get("deletionTimestamp")
            )
        ):
            self._todo[uid] = (meta["namespace"], meta["name"])
            self._wake.set()

    async def _pods_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(0)  # let the burst that woke us land first
            todo, self._todo = self._todo, {}
            for uid, (namespace, name) in todo.items():
                try:
                    self._sync(uid, namespace, name)
                except Exception:
                    log.exception("simulated pod %s/%s", namespace, name)

    def _sync(self, uid: str, namespace: str, name: str) -> None:
        pod = self.store.peek(POD_STORAGE, namespace, name)  # read only: writes copy it
        if pod is None or pod["metadata"].get("uid") != uid:
            return
        if pod["metadata"].get("deletionTimestamp"):
            self._remove(pod)
            return
        phase = (pod.get("status") or {}).get("phase")
        if phase in TERMINAL or uid in self._timers:
            return
        if phase != "Running":
            pod = self._run(pod)
            if pod is None:
                return
        spec = pod.get("spec") or {}
        if spec.get("restartPolicy") == "Always":
            return  # the kubelet would restart an exited container: it runs until deleted
        duration = self.pod_duration
        text = (pod["metadata"].get("annotations") or {}).get(DURATION_ANNOTATION)
        if text is not None:
            try:
                duration = parse_duration(text)
            except ValueError:
                log.warning(
                    "pod %s/%s: bad %s %r; using %ss", namespace, name, DURATION_ANNOTATION, text, duration
                )
        loop = asyncio.get_running_loop()
        self._timers[uid] = loop.call_later(duration, self._complete, uid, namespace, name)

    def _ip(self, pod: Obj) -> str:
        uid = pod["metadata"]["uid"]
        ip = self._ips.get(uid)
        if ip is None:
            node = pod["spec"]["nodeName"]
            n = self._next_ip[node] = self._next_ip[node] + 1
            ip = self._ips[uid] = f"10.244.{self._index[node]}.{n % 254 + 1}"
        return ip

    def _records(
        self, pod: Obj, *, finished: str | None
    ) -> tuple[list[ContainerRecord], list[ContainerRecord]]:
        """(init and sidecar records, main records): running, or terminated with 0 at `finished`."""
        spec = pod.get("spec") or {}
        started = ((pod.get("status") or {}).get("startTime")) or now_rfc3339()
        uid = pod["metadata"]["uid"]
        init: list[ContainerRecord] = []
        for c in spec.get("initContainers") or []:
            rec = ContainerRecord(c["name"], c.get("image", ""), kind="init")
            rec.container_id = f"simulated://{uid}/{c['name']}"
            if c.get("restartPolicy") == "Always" and finished is None:
                rec.kind = "sidecar"
                rec.set_running(started, rec.container_id, ready=True)
            else:
                rec.set_terminated(terminated_state(0, started, finished or started))
            init.append(rec)
        main: list[ContainerRecord] = []
        for c in spec.get("containers") or []:
            rec = ContainerRecord(c["name"], c.get("image", ""))
            rec.container_id = f"simulated://{uid}/{c['name']}"
            if finished is None:
                rec.set_running(started, rec.container_id, ready=True)
            else:
                rec.set_terminated(terminated_state(0, started, finished))
            main.append(rec)
        return init, main

    def _status(self, pod: Obj, phase: str, finished: str | None) -> Obj:
        now = now_rfc3339()
        init, main = self._records(pod, finished=finished)
        status = pod_status(
            phase=phase,
            conditions=pod_conditions(
                (pod.get("status") or {}).get("conditions") or [],
                phase=phase,
                initialized=True,
                init_reason=None,
                containers_ready=True,
                now=now,
            ),
            pod_ip=self._ip(pod),
            host_ip=f"10.244.{self._index[pod['spec']['nodeName']]}.0",
            start_time=(pod.get("status") or {}).get("startTime") or now,
            init=init,
            main=main,
            qos=qos_class(pod),
        )
        status.pop("reason", None)
        status.pop("message", None)
        return status

    def _write_status(self, pod: Obj, status: Obj) -> Obj | None:
        info = self.api.registry.for_storage(POD_STORAGE)
        assert info is not None
        # A status write takes only the new status (and keeps the stored rest): no copy of the
        # stored pod, whose metadata `commit` must not change, so it gets a dict of its own.
        new = {**pod, "metadata": dict(pod["metadata"]), "status": status}
        try:
            return self.api.commit(info, pod, new, WriteOptions(field_manager=COMPONENT), COMPONENT, "status")
        except APIError as e:
            log.info("simulated pod %s: status update failed: %s", pod["metadata"]["name"], e)
            return None

    def _run(self, pod: Obj) -> Obj | None:
        return self._write_status(pod, self._status(pod, "Running", None))

    def _complete(self, uid: str, namespace: str, name: str) -> None:
        self._timers.pop(uid, None)
        pod = self.store.peek(POD_STORAGE, namespace, name)  # read only: writes copy it
        if pod is None or pod["metadata"].get("uid") != uid or pod["metadata"].get("deletionTimestamp"):
            return
        if (pod.get("status") or {}).get("phase") in TERMINAL:
            return
        self._write_status(pod, self._status(pod, "Succeeded", now_rfc3339()))

    def _remove(self, pod: Obj) -> None:
        meta = pod["metadata"]
        timer = self._timers.pop(meta["uid"], None)
        if timer is not None:
            timer.cancel()
        info = self.api.registry.for_storage(POD_STORAGE)
        assert info is not None
        with contextlib.suppress(APIError):
            delete(
                self.api,
                info,
                meta["namespace"],
                meta["name"],
                DeleteOptions(grace_period=0, precondition_uid=meta["uid"]),
            )
