"""One pod on this node: its volumes, its containers' processes, its status.

Lifecycle, as the kubelet runs it:

1. allocate the pod IP, report Pending with podIP/hostIP/startTime;
2. set up volumes (retried while a secret/config map/token is missing) and the hosts file;
3. init containers in order: a regular one must exit 0 (restarted with backoff on failure unless
   restartPolicy is Never, which fails the pod); a native sidecar (restartPolicy Always) is started
   and the next one starts once it runs; sidecars restart whenever they exit;
4. main containers all at once, restarted per restartPolicy (Always / OnFailure / Never) with an
   exponential backoff that resets after a container ran for a while;
5. when every main container is done: sidecars get SIGTERM (reverse order), the phase becomes
   Succeeded (all exited 0) or Failed. Sidecars never decide the phase.

Graceful deletion (`terminate`): no more starts; SIGTERM to every main container's process group,
wait up to the grace period, SIGKILL; then the sidecars the same way with what is left of the
grace (at least 2s); the agent then deletes the pod with grace 0.

Each container is run by a `ContainerSupervisor` (supervisor.py): its instances, restarts and
probes; this module decides when each container runs and what the pod's status says.

Status is patched by one publisher task that coalesces changes and skips a patch equal to the
previous one, so watchers see each real transition and no more.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from localcluster.node import logs as logfiles
from localcluster.node.containers import ContainerProcess, stop_processes
from localcluster.node.envvars import (
    PodContext,
    Refs,
    base_environment,
    decode_configmap,
    decode_secret,
    referenced_objects,
    resolve_argv,
    resolve_env,
)
from localcluster.node.events import EventRecorder
from localcluster.node.images import PULL_BACKOFF_INITIAL, PULL_BACKOFF_MAX, PullBackOff
from localcluster.node.kube import ApiError, KubeClient
from localcluster.node.network import IPAllocator, pod_hostname
from localcluster.node.sandbox import SandboxMode, fallback_env, split_hiding_mounts, wrap_command
from localcluster.node.status import (
    now_iso,
    pod_conditions,
    pod_status,
    qos_class,
    ready_summary,
)
from localcluster.node.supervisor import ContainerSupervisor, LaunchSpec
from localcluster.node.volumes import (
    AUTO_SA_VOLUME,
    FileContent,
    Mount,
    TokenKey,
    VolumeError,
    container_mounts,
    prepare_dir_volume,
    token_requests,
    volume_dir,
    volume_files,
    with_automount,
    write_files,
)

log = logging.getLogger(__name__)

JSON = dict[str, Any]


def mount_failure(error: BaseException) -> str:
    """The FailedMount event's and the waiting container's message for a volume setup that failed:
    the kubelet's words. A timed-out request has no words of its own, so its kind is named."""
    said = str(error) or type(error).__name__
    return said if said.startswith("MountVolume.") else f"MountVolume.SetUp failed: {said}"


@dataclass
class NodeSettings:
    """What every pod worker needs from the agent's configuration."""

    node_name: str
    state_dir: Path
    root_dir: Path
    host_ip: str = "127.0.0.1"
    api_host: str = "127.0.0.1"
    api_port: str = ""
    api_url: str = ""
    python_bin_dir: str = field(default_factory=lambda: str(Path(sys.executable).parent))
    pass_env: tuple[str, ...] = ()
    capacity: dict[str, str] = field(default_factory=dict)
    backoff_initial: float = 1.0
    backoff_max: float = 20.0
    backoff_reset_after: float = 60.0
    retry_interval: float = 2.0
    # Images this node cannot pull (shell patterns), besides those of `.invalid` registries.
    unpullable_images: tuple[str, ...] = ()
    image_backoff_initial: float = PULL_BACKOFF_INITIAL
    image_backoff_max: float = PULL_BACKOFF_MAX


class Agent(Protocol):
    client: KubeClient
    settings: NodeSettings
    allocator: IPAllocator
    sandbox: SandboxMode

    def render_hosts(self, worker: PodWorker) -> str: ...

    def network_changed(self) -> None: ...

    def forget(self, worker: PodWorker) -> None: ...

    def pids_changed(self) -> None: ...


class PodWorker:
    def __init__(self, agent: Agent, pod: JSON) -> None:
        self.agent = agent
        self.settings = agent.settings
        meta = pod.get("metadata") or {}
        self.uid: str = meta.get("uid") or f"{meta.get('namespace')}-{meta.get('name')}"
        self.namespace: str = meta.get("namespace") or "default"
        self.name: str = meta.get("name", "")
        self.pod = pod
        self.spec_pod = with_automount(pod)
        spec = self.spec_pod.get("spec") or {}
        self.restart_policy: str = spec.get("restartPolicy") or "Always"
        self.dir = self.settings.state_dir / "pods" / self.uid
        self.hosts_file = self.dir / "etc-hosts"
        self.hostname = pod_hostname(pod)
        self.ip = ""
        self.events = EventRecorder(agent.client, self.settings.node_name)
        self.pull_backoff = PullBackOff(self.settings.image_backoff_initial, self.settings.image_backoff_max)
        self.containers: dict[str, ContainerSupervisor] = {}
        self.init_order: list[str] = []
        self.main_order: list[str] = []
        for c in spec.get("initContainers") or []:
            kind = "sidecar" if c.get("restartPolicy") == "Always" else "init"
            self._add(c, kind, "PodInitializing")
            self.init_order.append(c["name"])
        for c in spec.get("containers") or []:
            self._add(c, "main", "PodInitializing" if self.init_order else "ContainerCreating")
            self.main_order.append(c["name"])
        if self.init_order:
            self.containers[self.init_order[0]].record.set_waiting("ContainerCreating")
        self.volume_dirs: dict[str, Path] = {}
        self.refs = Refs()
        self.tokens: dict[TokenKey, str] = {}
        self.phase = "Pending"
        self.initialized = False
        self.reason: str | None = None
        self.message: str | None = None
        self.conditions: list[JSON] = []
        self.start_time: str | None = None
        self.stopping = asyncio.Event()
        self.done = asyncio.Event()  # containers all finished (terminal phase or stopped)
        self.gone = False
        self._dirty = asyncio.Event()
        self._last_status: JSON | None = None
        self._publish_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[Any]] = []
        self._terminating: asyncio.Task[None] | None = None

    def _add(self, c: JSON, kind: str, waiting: str) -> None:
        self.containers[c["name"]] = ContainerSupervisor(self, c, kind, waiting)

    # ---- public API used by the agent -------------------------------------------------------

    def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._publisher(), name=f"publish {self.key}"))
        self._tasks.append(asyncio.create_task(self._run(), name=f"pod {self.key}"))

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def ready(self) -> bool:
        return self.phase == "Running" and self._containers_ready()

    def update(self, pod: JSON) -> None:
        """A newer version of the pod object from the watch."""
        old_meta, new_meta = self.pod.get("metadata") or {}, pod.get("metadata") or {}
        self.pod = pod
        self.spec_pod = {**self.spec_pod, "metadata": new_meta}
        if (old_meta.get("labels"), old_meta.get("annotations")) != (
            new_meta.get("labels"),
            new_meta.get("annotations"),
        ):
            # Downward-API files follow labels and annotations; service membership may change.
            with contextlib.suppress(VolumeError, OSError):
                self._write_content_volumes()
            self.agent.network_changed()

    def terminate(self, grace: float, *, delete: bool) -> asyncio.Task[None]:
        """Stop every container (graceful deletion or agent shutdown); idempotent."""
        if self._terminating is None:
            self._terminating = asyncio.create_task(self._terminate(grace, delete), name=f"stop {self.key}")
        return self._terminating

    def find_log(self, container: str, previous: bool) -> logfiles.LogTarget | str:
        sup = self.containers.get(container)
        if sup is None:
            return f'container "{container}" is not valid for pod "{self.name}"'
        instance = sup.record.restart_count - (1 if previous else 0)
        path = logfiles.log_path(self.dir, container, instance)
        if instance < 0 or not path.exists():
            if previous:
                return f'previous terminated container "{container}" in pod "{self.name}" not found'
            return f'container "{container}" in pod "{self.name}" is waiting to start'

        def alive() -> bool:
            return sup.alive and sup.instance == instance

        return logfiles.LogTarget(path, alive)

    # ---- status -------------------------------------------------------------------------------

    @property
    def procs(self) -> dict[str, ContainerProcess]:
        """The current process of each container that has one (the agent records their pids)."""
        return {n: sup.proc for n, sup in self.containers.items() if sup.proc is not None}

    @property
    def sandbox(self) -> SandboxMode:
        return self.agent.sandbox

    def pids_changed(self) -> None:
        self.agent.pids_changed()

    async def refetch_refs(self) -> None:
        """Fetch the secrets and config maps again (a container waits for a missing one)."""
        await self._fetch_refs()

    def _containers_ready(self) -> bool:
        init = [self.containers[n].record for n in self.init_order]
        sidecars = [r for r in init if r.kind == "sidecar"]
        return ready_summary([self.containers[n].record for n in self.main_order], sidecars)

    def changed(self) -> None:
        self._dirty.set()
        # Readiness and phase decide which names resolve to this pod.
        self.agent.network_changed()

    def build_status(self) -> JSON:
        now = now_iso()
        init_reason = None if self.initialized else "ContainersNotInitialized"
        containers_ready = self._containers_ready()
        self.conditions = pod_conditions(
            self.conditions,
            phase=self.phase,
            initialized=self.initialized,
            init_reason=init_reason,
            containers_ready=containers_ready,
            now=now,
        )
        # Conditions the control plane set (DisruptionTarget) stay, as the kubelet keeps them.
        foreign = [
            c
            for c in (self.pod.get("status") or {}).get("conditions") or []
            if c.get("type") not in {own.get("type") for own in self.conditions}
        ]
        return pod_status(
            phase=self.phase,
            conditions=self.conditions + foreign,
            pod_ip=self.ip,
            host_ip=self.settings.host_ip,
            start_time=self.start_time,
            init=[self.containers[n].record for n in self.init_order],
            main=[self.containers[n].record for n in self.main_order],
            reason=self.reason,
            message=self.message,
            qos=qos_class(self.pod),
        )

    async def publish(self) -> None:
        async with self._publish_lock:
            if self.gone:
                return
            status = self.build_status()
            if status == self._last_status:
                return
            path = f"/api/v1/namespaces/{self.namespace}/pods/{self.name}/status"
            try:
                await self.agent.client.request(
                    "PATCH", path, body={"status": status}, content_type="application/merge-patch+json"
                )
            except ApiError as e:
                if e.status == 404:
                    self.gone = True
                    return
                raise
            self._last_status = status

    def republish(self) -> None:
        """Patch the whole status again even if it did not change here (the node lifecycle
        controller may have changed it while this node was away)."""
        self._last_status = None
        self._dirty.set()

    async def _publisher(self) -> None:
        failures = 0
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            try:
                await self.publish()
                failures = 0
            except Exception as e:
                failures += 1
                log.debug("status patch of %s failed (%s); retrying", self.key, e)
                self._dirty.set()
                await asyncio.sleep(min(5.0, 0.2 * 2**failures))
                continue
            # Coalesce a burst of transitions into one patch.
            await asyncio.sleep(0.05)

    # ---- setup --------------------------------------------------------------------------------

    async def _fetch_refs(self) -> None:
        secrets, configmaps = referenced_objects(self.spec_pod)
        client = self.agent.client
        for name in secrets:
            obj = await client.get_or_none(f"/api/v1/namespaces/{self.namespace}/secrets/{name}")
            self.refs.secrets[(self.namespace, name)] = decode_secret(obj) if obj is not None else None
        for name in configmaps:
            obj = await client.get_or_none(f"/api/v1/namespaces/{self.namespace}/configmaps/{name}")
            self.refs.configmaps[(self.namespace, name)] = decode_configmap(obj) if obj is not None else None

    async def _fetch_tokens(self) -> float:
        """Request every projected service-account token; returns the shortest lifetime."""
        spec = self.spec_pod.get("spec") or {}
        sa = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
        auto = {(v["name"]) for v in spec.get("volumes") or [] if v.get("name") == AUTO_SA_VOLUME}
        shortest = float("inf")
        for audience, seconds in token_requests(self.spec_pod):
            body = {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {
                    "audiences": [audience] if audience else [],
                    "expirationSeconds": seconds,
                    "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": self.name, "uid": self.uid},
                },
            }
            try:
                resp = await self.agent.client.request(
                    "POST", f"/api/v1/namespaces/{self.namespace}/serviceaccounts/{sa}/token", body=body
                )
                self.tokens[(audience, seconds)] = str((resp.get("status") or {}).get("token", ""))
                shortest = min(shortest, seconds)
            except ApiError as e:
                if auto and (audience, seconds) == ("", 3607):
                    # The automounted token is a convenience: a missing account must not block the pod.
                    log.warning("pod %s: no token for service account %s (%s)", self.key, sa, e)
                    self.tokens[(audience, seconds)] = ""
                    continue
                raise VolumeError(f"token request for service account {sa!r} failed: {e}") from e
        return shortest

    def _ctx(self) -> PodContext:
        return PodContext(
            pod=self.spec_pod,
            pod_ip=self.ip,
            host_ip=self.settings.host_ip,
            node_capacity=self.settings.capacity,
        )

    def _write_content_volumes(self) -> None:
        ctx = self._ctx()
        for v in (self.spec_pod.get("spec") or {}).get("volumes") or []:
            files = self._volume_files(v, ctx)
            if files is not None:
                write_files(self.volume_dirs[v["name"]], files)

    def _volume_files(self, volume: JSON, ctx: PodContext) -> dict[str, FileContent] | None:
        try:
            return volume_files(volume, ctx, self.refs, self.tokens)
        except VolumeError as e:
            # The kubelet's words, naming the volume (its FailedMount event says the same).
            raise VolumeError(f'MountVolume.SetUp failed for volume "{volume["name"]}" : {e}') from e

    async def _setup_volumes(self) -> None:
        await self._fetch_refs()
        shortest = await self._fetch_tokens()
        shared = self.settings.state_dir / "volumes"
        for v in (self.spec_pod.get("spec") or {}).get("volumes") or []:
            path = volume_dir(v, self.dir, shared, self.namespace)
            self.volume_dirs[v["name"]] = path
            if self._volume_files(v, self._ctx()) is None:
                prepare_dir_volume(v, path)
        self._write_content_volumes()
        if shortest != float("inf"):
            self._tasks.append(asyncio.create_task(self._refresh_tokens(shortest)))

    async def _refresh_tokens(self, lifetime: float) -> None:
        # The kubelet renews a projected token at 80% of its lifetime.
        while not self.stopping.is_set():
            await self.sleep_or_stop(max(5.0, lifetime * 0.8))
            if self.stopping.is_set():
                return
            try:
                await self._fetch_tokens()
                self._write_content_volumes()
            except Exception as e:
                log.warning("pod %s: token refresh failed: %s", self.key, e)

    async def sleep_or_stop(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self.stopping.wait()

    def write_hosts(self) -> None:
        from localcluster.node.network import write_in_place

        if self.dir.exists():
            write_in_place(self.hosts_file, self.agent.render_hosts(self))

    # ---- running ------------------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            await self._run_inner()
        except Exception:
            log.exception("pod %s: worker failed", self.key)
            self.phase, self.reason, self.message = (
                "Failed",
                "NodeAgentError",
                "the node agent failed to run the pod",
            )
            self.changed()
        finally:
            self.done.set()

    async def _run_inner(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ip = self.agent.allocator.allocate(self.uid)
        self.start_time = now_iso()
        self.changed()
        deadline = (self.spec_pod.get("spec") or {}).get("activeDeadlineSeconds")
        if deadline:
            self._tasks.append(asyncio.create_task(self._enforce_deadline(float(deadline))))
        attempt = 0
        while True:
            if self.stopping.is_set():
                return
            try:
                await self._setup_volumes()
                break
            except (VolumeError, ApiError, OSError) as e:
                attempt += 1
                msg = mount_failure(e)
                await self.events.record(self.pod, "", "Warning", "FailedMount", msg)
                for n in self.init_order[:1] or self.main_order:
                    self.containers[n].record.set_waiting("ContainerCreating", msg)
                self.message = msg if attempt > 1 else None
                self.changed()
                log.info("pod %s: %s (retrying)", self.key, msg, exc_info=not isinstance(e, VolumeError))
                await self.sleep_or_stop(self.settings.retry_interval)
        self.message = None
        self.write_hosts()
        self.agent.network_changed()

        init_policy = "Never" if self.restart_policy == "Never" else "OnFailure"
        for name in self.init_order:
            if self.stopping.is_set():
                return
            sup = self.containers[name]
            if sup.record.kind == "sidecar":
                task = sup.start("Always")
                # The next init container starts once this sidecar runs (its readiness: started).
                waits = [
                    asyncio.ensure_future(sup.started.wait()),
                    asyncio.ensure_future(self.stopping.wait()),
                ]
                await asyncio.wait([task, *waits], return_when=asyncio.FIRST_COMPLETED)
                for w in waits:
                    w.cancel()
                continue
            code = await sup.start(init_policy)
            if self.stopping.is_set():
                return
            if code != 0:
                self.phase, self.reason = "Failed", None
                self.message = f"init container {name} failed with exit code {code}"
                await self._stop_sidecars()
                self.changed()
                return
        self.initialized = True
        for name in self.main_order:
            self.containers[name].record.set_waiting("ContainerCreating")
        self.changed()
        mains = [self.containers[n].start(self.restart_policy) for n in self.main_order]
        codes = await asyncio.gather(*mains)
        if self.stopping.is_set():
            return
        await self._stop_sidecars()
        self.phase = "Succeeded" if all(c == 0 for c in codes) else "Failed"
        self.changed()
        self.agent.network_changed()

    async def _enforce_deadline(self, seconds: float) -> None:
        """spec.activeDeadlineSeconds: the kubelet kills the pod and fails it (DeadlineExceeded)."""
        await self.sleep_or_stop(seconds)
        if self.stopping.is_set() or self.phase in ("Succeeded", "Failed"):
            return
        self.stopping.set()
        for sup in self.containers.values():
            sup.no_restart = True
        grace = float((self.spec_pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30))
        await stop_processes([p for p in self.procs.values() if p.alive], grace)
        self.phase, self.reason = "Failed", "DeadlineExceeded"
        self.message = "Pod was active on the node longer than the specified deadline"
        self.changed()

    async def _stop_sidecars(self) -> None:
        grace = float((self.spec_pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30))
        for name in reversed(self.init_order):
            if self.containers[name].record.kind == "sidecar":
                await self.containers[name].stop(grace)

    def termination_file(self, name: str) -> Path:
        """Where a container's terminationMessagePath lives on this machine."""
        return self.dir / "termination" / name

    def launch_spec(self, name: str) -> LaunchSpec:
        """How to start the next instance of a container, or ConfigError."""
        spec = self.containers[name].spec
        s = self.settings
        extra = {
            "KUBERNETES_SERVICE_HOST": s.api_host,
            "KUBERNETES_SERVICE_PORT": s.api_port,
            "KUBERNETES_PORT": f"tcp://{s.api_host}:{s.api_port}",
            "LOCALCLUSTER_API_URL": s.api_url,
            "LOCALCLUSTER_POD_IP": self.ip,
            "LOCALCLUSTER_POD_DIR": str(self.dir),
        }
        base = base_environment(
            python_bin_dir=s.python_bin_dir, hostname=self.hostname, pass_env=s.pass_env, extra=extra
        )
        env = resolve_env(spec, self._ctx(), self.refs, base)
        command = resolve_argv(spec, env)
        mounts = container_mounts(spec, self.volume_dirs, env)
        message_path = spec.get("terminationMessagePath") or logfiles.DEFAULT_TERMINATION_MESSAGE_PATH
        if message_path != logfiles.DEFAULT_TERMINATION_MESSAGE_PATH:
            # /dev is the host's own: a file is not created there, so the default path is not
            # mounted (README); any other path is, as a file the agent reads after the exit.
            mounts.append(Mount(source=str(self.termination_file(name)), target=message_path))
        env.update(fallback_env(mounts, self.volume_dirs, self.hosts_file))
        workdir = spec.get("workingDir") or str(s.root_dir)
        made, withheld = split_hiding_mounts(mounts, (s.python_bin_dir, str(s.root_dir)))
        for mount in withheld:
            log.warning(
                "pod %s container %s: not mounting %s at %s, it would hide this project's files; "
                "LOCALCLUSTER_MOUNTS names it",
                self.key,
                name,
                mount.source,
                mount.target,
            )
            if mount.target.rstrip("/") == "/tmp":  # noqa: S108 - the path compared, not used
                env["TMPDIR"] = mount.source
        argv, cwd = wrap_command(
            self.agent.sandbox,
            command,
            mounts=made,
            hosts_file=self.hosts_file,
            hostname=self.hostname,
            workdir=workdir,
        )
        return LaunchSpec(argv=argv, env=env, cwd=cwd, command=command)

    async def _terminate(self, grace: float, delete: bool) -> None:
        self.stopping.set()
        deadline = time.monotonic() + grace
        regular = [self.containers[n] for n in self.init_order if self.containers[n].record.kind == "init"]
        regular += [self.containers[n] for n in self.main_order]
        for sup in regular:
            sup.no_restart = True
        await stop_processes([sup.proc for sup in regular if sup.proc is not None], grace)
        sidecars = [self.containers[n] for n in reversed(self.init_order)]
        sidecars = [sup for sup in sidecars if sup.record.kind == "sidecar"]
        for sup in sidecars:
            sup.no_restart = True
        for sup in sidecars:
            if sup.proc is not None:
                await stop_processes([sup.proc], max(2.0, deadline - time.monotonic()))
        for t in [sup.task for sup in self.containers.values() if sup.task is not None]:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(t, 10)
        if delete and not self.gone:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.publish(), 5)
            try:
                await self.agent.client.request(
                    "DELETE",
                    f"/api/v1/namespaces/{self.namespace}/pods/{self.name}",
                    body={"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0},
                    params={"gracePeriodSeconds": "0"},
                )
            except ApiError as e:
                if e.status != 404:
                    log.warning("pod %s: final delete failed: %s", self.key, e)
                    raise
        self.cleanup()

    def cleanup(self) -> None:
        for t in self._tasks:
            t.cancel()
        self.agent.allocator.release(self.uid)
        shutil.rmtree(self.dir, ignore_errors=True)
        self.agent.forget(self)
        self.agent.network_changed()
