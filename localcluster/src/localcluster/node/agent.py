"""The node agent: registers the Node, watches the pods bound to it and runs them.

- Node object: addresses (InternalIP 127.0.0.1), the kubelet endpoint port (for logs), capacity
  (configured, else this machine's with a floor: see machine_capacity), labels and taints at
  registration, a Ready condition whose lastHeartbeatTime is renewed, and a Lease in
  kube-node-lease (renewed every heartbeat) when the server serves coordination.k8s.io.
- Pods: list + watch with `fieldSelector=spec.nodeName=<node>`, resumed from the last
  resourceVersion, re-listed on 410 Gone; on a connection error it retries with backoff (the API
  server may restart; running pods keep running meanwhile).
- Services: list + watch, for the per-pod hosts files (see network.py).
- On SIGTERM (`stop`) every process the agent started is stopped (SIGTERM, a short grace, SIGKILL).
- Several nodes in one process (`peers`): each has its own API client, registration, heartbeat,
  pod watch and kubelet endpoint; they share the pod-IP allocator, the state directory and the
  hosts files' view of every pod (cluster DNS covers the whole cluster). `stop_node` cuts one
  node off the API server (its heartbeats stop; its processes die, or keep running with
  `keep_processes`: a partition) and `start_node` brings it back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import platform
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from localcluster.cluster import POD_PIDS_FILE, kill_pod_leftovers
from localcluster.node import streaming
from localcluster.node.kube import ApiError, Gone, KubeClient, KubeConfig
from localcluster.node.logs import KubeletServer, LogTarget
from localcluster.node.network import (
    DEFAULT_LEASE_DIR,
    IPAllocator,
    ServiceRecord,
    pod_record,
    render_hosts,
    service_record,
)
from localcluster.node.pod import NodeSettings, PodWorker
from localcluster.node.sandbox import SandboxMode, detect_isolation
from localcluster.node.status import now_iso

log = logging.getLogger(__name__)

JSON = dict[str, Any]
TERMINAL = ("Succeeded", "Failed")
NETWORK_ERRORS = (aiohttp.ClientError, OSError, TimeoutError, ApiError)


@dataclass
class AgentConfig:
    kubeconfig: Path
    node_name: str = "localnode"
    state_dir: Path = field(default_factory=lambda: Path(".local/localcluster/node"))
    root_dir: Path = field(default_factory=Path.cwd)
    kubelet_port: int = 0
    isolation: str = "auto"  # auto | mount | user | none
    pass_env: tuple[str, ...] = ()
    lease_dir: Path = DEFAULT_LEASE_DIR
    heartbeat_seconds: float = 10.0
    shutdown_grace: float = 5.0
    backoff_initial: float = 1.0
    backoff_max: float = 20.0
    unpullable_images: tuple[str, ...] = ()
    capacity: dict[str, str] | None = None  # over the machine's (cpu, memory, pods, ephemeral-storage)
    labels: dict[str, str] = field(default_factory=dict)
    taints: list[JSON] = field(default_factory=list)


# A node's cpu and memory when `--node-capacity` does not say: this machine's, but never less
# than these. Pods are processes sharing this machine (nothing enforces a request), and manifests
# written for real nodes (a worker asking for a whole cpu) must still be scheduled on a 2-core
# laptop or CI runner; `--node-capacity` schedules against exact numbers.
DEFAULT_MIN_CPU = 32
DEFAULT_MIN_MEMORY_KIB = 64 * 1024 * 1024


def machine_capacity(path: Path) -> dict[str, str]:
    mem_kib = 0
    with contextlib.suppress(OSError, ValueError), open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    disk = shutil.disk_usage(path).total if path.exists() else 0
    return {
        "cpu": str(max(os.cpu_count() or 1, DEFAULT_MIN_CPU)),
        "memory": f"{max(mem_kib, DEFAULT_MIN_MEMORY_KIB)}Ki",
        "pods": "110",
        "ephemeral-storage": str(disk),
    }


class NodeAgent:
    def __init__(self, config: AgentConfig, peers: list[NodeAgent] | None = None) -> None:
        self.config = config
        # Every node agent of this process, this one included (shared by all of them).
        self.peers: list[NodeAgent] = peers if peers is not None else []
        self.peers.append(self)
        kube = KubeConfig.load(config.kubeconfig)
        self.client = KubeClient(kube)
        api = urlsplit(kube.server)
        config.state_dir.mkdir(parents=True, exist_ok=True)
        self.settings = NodeSettings(
            node_name=config.node_name,
            state_dir=config.state_dir.resolve(),
            root_dir=config.root_dir.resolve(),
            api_host=api.hostname or "127.0.0.1",
            api_port=str(api.port or (443 if api.scheme == "https" else 80)),
            api_url=kube.server,
            pass_env=config.pass_env,
            capacity={**machine_capacity(config.state_dir), **(config.capacity or {})},
            backoff_initial=config.backoff_initial,
            backoff_max=config.backoff_max,
            unpullable_images=config.unpullable_images,
        )
        self.allocator: IPAllocator = (
            self.peers[0].allocator if len(self.peers) > 1 else IPAllocator(config.lease_dir)
        )
        self.sandbox: SandboxMode = detect_isolation(config.isolation)
        self._started_at = now_iso()
        self.workers: dict[str, PodWorker] = {}
        self.services: dict[tuple[str, str], ServiceRecord] = {}
        self.server = KubeletServer(self, port=config.kubelet_port, routes=streaming.routes(self))
        self._network_dirty = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._watches: list[asyncio.Task[Any]] = []
        self._stopped = asyncio.Event()
        self.registered = asyncio.Event()
        self.node_stopped = False
        self._resumed = asyncio.Event()

    # ---- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        if self.peers[0] is self:
            # A previous agent with this state directory that died without stopping its pods left
            # their process groups behind: they are orphans now (their pods restart afresh).
            left = kill_pod_leftovers(self.settings.state_dir)
            if left:
                log.warning("killed %d process groups left by a previous node agent", len(left))
            shutil.rmtree(self.settings.state_dir / "pods", ignore_errors=True)
        port = await self.server.start()
        log.info(
            "node agent %s: kubelet endpoint 127.0.0.1:%d, isolation %s, root %s",
            self.config.node_name,
            port,
            self.sandbox.isolation.value,
            self.settings.root_dir,
        )
        self._tasks = [
            asyncio.create_task(self._heartbeat(), name="heartbeat"),
            asyncio.create_task(self._hosts_loop(), name="hosts"),
        ]
        self._start_watches()

    def _start_watches(self) -> None:
        self._watches = [
            asyncio.create_task(self._watch_pods(), name="watch pods"),
            asyncio.create_task(self._watch_services(), name="watch services"),
        ]

    async def run_forever(self) -> None:
        await self.start()
        await self._stopped.wait()

    async def stop(self) -> None:
        """Stop every process this agent started, then the agent itself."""
        for t in self._tasks + self._watches:
            t.cancel()
        workers = list(self.workers.values())
        stops = [
            w.terminate(
                min(
                    self.config.shutdown_grace,
                    float((w.pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30)),
                ),
                delete=False,
            )
            for w in workers
        ]
        if stops:
            await asyncio.gather(*stops, return_exceptions=True)
        for w in workers:
            w.cleanup()
        if self.peers[0] is self:
            self.allocator.release_all()
        self.pids_changed()
        await self.server.stop()
        await self.client.close()
        self._stopped.set()

    async def stop_node(self, *, keep_processes: bool) -> None:
        """The node is lost: no more heartbeats, no more API calls. Its pods' processes die (a
        crash) or, with keep_processes, go on running unseen (a network partition)."""
        if self.node_stopped:
            return
        self.node_stopped = True
        self.client.disconnect()
        for t in self._watches:
            t.cancel()
        await asyncio.gather(*self._watches, return_exceptions=True)
        log.warning("node %s stopped (%s)", self.config.node_name, "partition" if keep_processes else "crash")
        if not keep_processes:
            workers = list(self.workers.values())
            if workers:
                await asyncio.gather(
                    *(w.terminate(0.0, delete=False) for w in workers), return_exceptions=True
                )
            for w in workers:
                w.cleanup()
            self.pids_changed()

    def start_node(self) -> None:
        """The node is back: heartbeats resume at once, the pod watch re-lists (what was deleted
        meanwhile is stopped) and every pod's status is patched again."""
        if not self.node_stopped:
            return
        self.node_stopped = False
        self._started_at = now_iso()
        self.client.reconnect()
        self._start_watches()  # a fresh list: what was deleted meanwhile is stopped
        for w in self.workers.values():
            w.republish()
        self._resumed.set()
        self._resumed = asyncio.Event()
        log.warning("node %s started again", self.config.node_name)

    async def _backoff(self, attempt: int) -> None:
        """backoff_sleep, cut short when the node comes back."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(min(5.0, 0.2 * (2 ** min(attempt, 10)))):
                await self._resumed.wait()

    # ---- node registration and heartbeat -------------------------------------------------------

    def _node_status(self) -> JSON:
        now = now_iso()
        cap = self.settings.capacity
        return {
            "capacity": cap,
            "allocatable": cap,
            "addresses": [
                {"type": "InternalIP", "address": self.settings.host_ip},
                {"type": "Hostname", "address": self.config.node_name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.server.port}},
            "conditions": [
                {
                    "type": t,
                    "status": s,
                    "reason": r,
                    "message": m,
                    "lastHeartbeatTime": now,
                    "lastTransitionTime": self._started_at,
                }
                for t, s, r, m in (
                    (
                        "MemoryPressure",
                        "False",
                        "KubeletHasSufficientMemory",
                        "kubelet has sufficient memory",
                    ),
                    ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                    (
                        "PIDPressure",
                        "False",
                        "KubeletHasSufficientPID",
                        "kubelet has sufficient PID available",
                    ),
                    ("Ready", "True", "KubeletReady", "localcluster node agent is posting ready status"),
                )
            ],
            "nodeInfo": {
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
                "kernelVersion": platform.release(),
                "osImage": "localcluster (local processes)",
                "containerRuntimeVersion": f"localcluster://{self.sandbox.isolation.value}",
                "kubeletVersion": "v1.32.0-localcluster",
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": {"x86_64": "amd64", "aarch64": "arm64"}.get(
                    platform.machine(), platform.machine()
                ),
            },
        }

    async def _register(self) -> None:
        name = self.config.node_name
        node = await self.client.get_or_none(f"/api/v1/nodes/{name}")
        if node is None:
            body = {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": name,
                    "labels": {
                        "kubernetes.io/hostname": name,
                        "kubernetes.io/os": "linux",
                        "kubernetes.io/arch": self._node_status()["nodeInfo"]["architecture"],
                        **self.config.labels,
                    },
                },
                # --register-with-taints
                "spec": {"taints": list(self.config.taints)} if self.config.taints else {},
            }
            try:
                await self.client.request("POST", "/api/v1/nodes", body=body)
            except ApiError as e:
                if e.status != 409:
                    raise
        await self._patch_node_status()
        self.registered.set()

    async def _patch_node_status(self) -> None:
        await self.client.request(
            "PATCH",
            f"/api/v1/nodes/{self.config.node_name}/status",
            body={"status": self._node_status()},
            content_type="application/merge-patch+json",
        )

    async def _renew_lease(self) -> bool:
        name = self.config.node_name
        path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{name}"
        now = datetime_micro()
        patch = {"spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": now}}
        try:
            await self.client.request("PATCH", path, body=patch, content_type="application/merge-patch+json")
            return True
        except ApiError as e:
            if e.status != 404:
                raise
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": name, "namespace": "kube-node-lease"},
            "spec": patch["spec"],
        }
        try:
            await self.client.request(
                "POST", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", body=body
            )
            return True
        except ApiError as e:
            # No Lease API or no kube-node-lease namespace: the Ready heartbeat is enough.
            if e.status in (404, 405):
                return False
            raise

    async def _heartbeat(self) -> None:
        attempt = 0
        leases = True
        beats = 0
        while True:
            if self.node_stopped:
                beats = 0  # the first beat after the return posts the node status
                await self._backoff(10)
                continue
            try:
                if not self.registered.is_set():
                    await self._register()
                    log.info("node %s registered", self.config.node_name)
                    continue  # its Lease at once, as the kubelet's
                else:
                    if leases:
                        leases = await self._renew_lease()
                    # The Ready condition's heartbeat every third beat: enough, and quiet for watchers.
                    if beats % 3 == 0 or not leases:
                        try:
                            await self._patch_node_status()
                        except ApiError as e:
                            if e.status == 404:
                                self.registered.clear()
                                continue
                            raise
                beats += 1
                attempt = 0
                await asyncio.sleep(self.config.heartbeat_seconds)
            except asyncio.CancelledError:
                raise
            except NETWORK_ERRORS as e:
                attempt += 1
                log.info("heartbeat: API server not reachable (%s); retrying", e)
                await self._backoff(attempt)

    # ---- pods ----------------------------------------------------------------------------------

    async def _watch_pods(self) -> None:
        selector = {"fieldSelector": f"spec.nodeName={self.config.node_name}"}
        await self._list_watch("/api/v1/pods", selector, self._sync_pods, self._on_pod_event)

    async def _list_watch(
        self,
        path: str,
        params: dict[str, str],
        on_list: Any,
        on_event: Any,
    ) -> None:
        attempt = 0
        while True:
            try:
                listing = await self.client.get(path, params)
                rv = str((listing.get("metadata") or {}).get("resourceVersion", ""))
                await on_list(listing.get("items") or [])
                attempt = 0
                while True:
                    query = dict(params, timeoutSeconds="300")
                    if rv:
                        query["resourceVersion"] = rv
                    async for event in self.client.watch(path, query):
                        obj = event.get("object") or {}
                        rv = str((obj.get("metadata") or {}).get("resourceVersion") or rv)
                        if event.get("type") != "BOOKMARK":
                            await on_event(event.get("type"), obj)
            except asyncio.CancelledError:
                raise
            except Gone:
                log.info("watch %s: resourceVersion too old, re-listing", path)
            except (*NETWORK_ERRORS, ValueError) as e:
                attempt += 1
                if not self.node_stopped:
                    log.info("watch %s failed (%s); re-listing after backoff", path, e)
                await self._backoff(attempt)

    async def _sync_pods(self, pods: list[JSON]) -> None:
        seen: set[str] = set()
        for pod in pods:
            seen.add(str((pod.get("metadata") or {}).get("uid")))
            await self._on_pod_event("MODIFIED", pod)
        for uid, worker in list(self.workers.items()):
            if uid not in seen:
                # Deleted while the watch was down.
                await self._on_pod_event("DELETED", worker.pod)

    async def _on_pod_event(self, kind: str | None, pod: JSON) -> None:
        meta = pod.get("metadata") or {}
        uid = str(meta.get("uid"))
        if (pod.get("spec") or {}).get("nodeName") != self.config.node_name:
            return
        worker = self.workers.get(uid)
        if kind == "DELETED":
            if worker is not None:
                worker.gone = True
                worker.terminate(2.0, delete=False)
            return
        if worker is None:
            phase = (pod.get("status") or {}).get("phase")
            if phase in TERMINAL:
                return  # finished under a previous agent: nothing to run
            if meta.get("deletionTimestamp"):
                # Nothing of it runs here: let the server remove it.
                with contextlib.suppress(*NETWORK_ERRORS):
                    await self.client.request(
                        "DELETE",
                        f"/api/v1/namespaces/{meta.get('namespace')}/pods/{meta.get('name')}",
                        params={"gracePeriodSeconds": "0"},
                    )
                return
            worker = PodWorker(self, pod)
            self.workers[uid] = worker
            log.info("pod %s: starting", worker.key)
            worker.start()
            return
        worker.update(pod)
        if meta.get("deletionTimestamp"):
            grace = meta.get("deletionGracePeriodSeconds")
            if grace is None:
                grace = (pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
            worker.terminate(float(grace), delete=True)

    def pids_changed(self) -> None:
        """Record the running containers' process groups, so `LocalCluster.stop` can kill what a
        crashed agent left behind."""
        pgids = sorted(
            p.pid for peer in self.peers for w in peer.workers.values() for p in w.procs.values() if p.alive
        )
        tmp = self.settings.state_dir / (POD_PIDS_FILE + ".tmp")
        tmp.write_text(json.dumps(pgids))
        tmp.replace(self.settings.state_dir / POD_PIDS_FILE)

    def forget(self, worker: PodWorker) -> None:
        if self.workers.get(worker.uid) is worker:
            del self.workers[worker.uid]

    # ---- services and hosts files --------------------------------------------------------------

    async def _watch_services(self) -> None:
        await self._list_watch("/api/v1/services", {}, self._sync_services, self._on_service_event)

    async def _sync_services(self, items: list[JSON]) -> None:
        self.services = {(r.namespace, r.name): r for r in map(service_record, items)}
        self.network_changed()

    async def _on_service_event(self, kind: str | None, svc: JSON) -> None:
        rec = service_record(svc)
        if kind == "DELETED":
            self.services.pop((rec.namespace, rec.name), None)
        else:
            self.services[(rec.namespace, rec.name)] = rec
        self.network_changed()

    def network_changed(self) -> None:
        for peer in self.peers:
            peer._network_dirty.set()

    def render_hosts(self, worker: PodWorker) -> str:
        # A terminating pod is no longer an endpoint, as with the endpoints controller.
        records = [
            pod_record(w.pod, w.ip, w.ready and not w.stopping.is_set())
            for peer in self.peers
            for w in peer.workers.values()
            if w.ip and w.phase not in TERMINAL
        ]
        me = pod_record(worker.pod, worker.ip, worker.ready)
        return render_hosts(me, records, self.services.values(), api_host=self.settings.api_host)

    async def _hosts_loop(self) -> None:
        while True:
            await self._network_dirty.wait()
            await asyncio.sleep(0.02)  # one rewrite for a burst of changes
            self._network_dirty.clear()
            for w in list(self.workers.values()):
                try:
                    w.write_hosts()
                except OSError as e:
                    log.debug("hosts file of %s: %s", w.key, e)

    # ---- logs ----------------------------------------------------------------------------------

    def find_log(self, namespace: str, pod: str, container: str, previous: bool) -> LogTarget | str | None:
        for w in self.workers.values():
            if w.namespace == namespace and w.name == pod:
                return w.find_log(container, previous)
        return None


def datetime_micro() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
