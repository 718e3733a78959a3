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

Status is patched by one publisher task that coalesces changes and skips a patch equal to the
previous one, so watchers see each real transition and no more.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from localcluster.node import logs as logfiles
from localcluster.node.containers import ContainerProcess, run_probe, stop_processes
from localcluster.node.envvars import (
    ConfigError,
    PodContext,
    Refs,
    base_environment,
    decode_configmap,
    decode_secret,
    referenced_objects,
    resolve_argv,
    resolve_env,
)
from localcluster.node.kube import ApiError, KubeClient
from localcluster.node.network import IPAllocator, pod_hostname
from localcluster.node.sandbox import SandboxMode, fallback_env, split_hiding_mounts, wrap_command
from localcluster.node.status import (
    ContainerRecord,
    now_iso,
    pod_conditions,
    pod_status,
    qos_class,
    ready_summary,
    terminated_state,
)
from localcluster.node.volumes import (
    AUTO_SA_VOLUME,
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


class Agent(Protocol):
    client: KubeClient
    settings: NodeSettings
    allocator: IPAllocator
    sandbox: SandboxMode

    def render_hosts(self, worker: PodWorker) -> str: ...

    def network_changed(self) -> None: ...

    def forget(self, worker: PodWorker) -> None: ...

    def pids_changed(self) -> None: ...


class PodGone(Exception):
    pass


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
        self.records: dict[str, ContainerRecord] = {}
        self.specs: dict[str, JSON] = {}
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
            self.records[self.init_order[0]].set_waiting("ContainerCreating")
        self.procs: dict[str, ContainerProcess] = {}
        self.proc_instance: dict[str, int] = {}
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
        self._supervisors: dict[str, asyncio.Task[int]] = {}
        self._terminating: asyncio.Task[None] | None = None
        self._no_restart: set[str] = set()  # containers being stopped for good
        self._started = {name: asyncio.Event() for name in self.records}

    def _add(self, c: JSON, kind: str, waiting: str) -> None:
        rec = ContainerRecord(name=c["name"], image=c.get("image", ""), kind=kind)
        rec.set_waiting(waiting)
        self.records[c["name"]] = rec
        self.specs[c["name"]] = c

    # ---- public API used by the agent -------------------------------------------------------

    def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._publisher(), name=f"publish {self.key}"))
        self._tasks.append(asyncio.create_task(self._run(), name=f"pod {self.key}"))

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def ready(self) -> bool:
        sidecars = [self.records[n] for n in self.init_order if self.records[n].kind == "sidecar"]
        return self.phase == "Running" and ready_summary([self.records[n] for n in self.main_order], sidecars)

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
        rec = self.records.get(container)
        if rec is None:
            return f'container "{container}" is not valid for pod "{self.name}"'
        instance = rec.restart_count - (1 if previous else 0)
        path = logfiles.log_path(self.dir, container, instance)
        if instance < 0 or not path.exists():
            if previous:
                return f'previous terminated container "{container}" in pod "{self.name}" not found'
            return f'container "{container}" in pod "{self.name}" is waiting to start'

        def alive() -> bool:
            proc = self.procs.get(container)
            return proc is not None and proc.alive and self.proc_instance.get(container) == instance

        return logfiles.LogTarget(path, alive)

    # ---- status -------------------------------------------------------------------------------

    def changed(self) -> None:
        self._dirty.set()
        # Readiness and phase decide which names resolve to this pod.
        self.agent.network_changed()

    def build_status(self) -> JSON:
        now = now_iso()
        init_reason = None if self.initialized else "ContainersNotInitialized"
        sidecars = [self.records[n] for n in self.init_order if self.records[n].kind == "sidecar"]
        containers_ready = ready_summary([self.records[n] for n in self.main_order], sidecars)
        self.conditions = pod_conditions(
            self.conditions,
            phase=self.phase,
            initialized=self.initialized,
            init_reason=init_reason,
            containers_ready=containers_ready,
            now=now,
        )
        return pod_status(
            phase=self.phase,
            conditions=self.conditions,
            pod_ip=self.ip,
            host_ip=self.settings.host_ip,
            start_time=self.start_time,
            init=[self.records[n] for n in self.init_order],
            main=[self.records[n] for n in self.main_order],
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
            files = volume_files(v, ctx, self.refs, self.tokens)
            if files is not None:
                write_files(self.volume_dirs[v["name"]], files)

    async def _setup_volumes(self) -> None:
        await self._fetch_refs()
        shortest = await self._fetch_tokens()
        shared = self.settings.state_dir / "volumes"
        for v in (self.spec_pod.get("spec") or {}).get("volumes") or []:
            path = volume_dir(v, self.dir, shared, self.namespace)
            self.volume_dirs[v["name"]] = path
            if volume_files(v, self._ctx(), self.refs, self.tokens) is None:
                prepare_dir_volume(v, path)
        self._write_content_volumes()
        if shortest != float("inf"):
            self._tasks.append(asyncio.create_task(self._refresh_tokens(shortest)))

    async def _refresh_tokens(self, lifetime: float) -> None:
        # The kubelet renews a projected token at 80% of its lifetime.
        while not self.stopping.is_set():
            await self._sleep_or_stop(max(5.0, lifetime * 0.8))
            if self.stopping.is_set():
                return
            try:
                await self._fetch_tokens()
                self._write_content_volumes()
            except Exception as e:
                log.warning("pod %s: token refresh failed: %s", self.key, e)

    async def _sleep_or_stop(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), seconds)

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
                msg = f"MountVolume.SetUp failed: {e}"
                for n in self.init_order[:1] or self.main_order:
                    self.records[n].set_waiting("ContainerCreating", msg)
                self.message = msg if attempt > 1 else None
                self.changed()
                log.info("pod %s: %s (retrying)", self.key, msg)
                await self._sleep_or_stop(self.settings.retry_interval)
        self.message = None
        self.write_hosts()
        self.agent.network_changed()

        init_policy = "Never" if self.restart_policy == "Never" else "OnFailure"
        for name in self.init_order:
            if self.stopping.is_set():
                return
            rec = self.records[name]
            if rec.kind == "sidecar":
                task = asyncio.create_task(self._supervise(name, "Always"))
                self._supervisors[name] = task
                # The next init container starts once this sidecar runs (its readiness: started).
                waits = [
                    asyncio.ensure_future(self._started[name].wait()),
                    asyncio.ensure_future(self.stopping.wait()),
                ]
                await asyncio.wait([task, *waits], return_when=asyncio.FIRST_COMPLETED)
                for w in waits:
                    w.cancel()
                continue
            code = await self._supervise(name, init_policy)
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
            self.records[name].set_waiting("ContainerCreating")
        self.changed()
        mains = {n: asyncio.create_task(self._supervise(n, self.restart_policy)) for n in self.main_order}
        self._supervisors.update(mains)
        codes = await asyncio.gather(*mains.values())
        if self.stopping.is_set():
            return
        await self._stop_sidecars()
        self.phase = "Succeeded" if all(c == 0 for c in codes) else "Failed"
        self.changed()
        self.agent.network_changed()

    async def _enforce_deadline(self, seconds: float) -> None:
        """spec.activeDeadlineSeconds: the kubelet kills the pod and fails it (DeadlineExceeded)."""
        await self._sleep_or_stop(seconds)
        if self.stopping.is_set() or self.phase in ("Succeeded", "Failed"):
            return
        self.stopping.set()
        self._no_restart.update(self.records)
        grace = float((self.spec_pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30))
        await stop_processes([p for p in self.procs.values() if p.alive], grace)
        self.phase, self.reason = "Failed", "DeadlineExceeded"
        self.message = "Pod was active on the node longer than the specified deadline"
        self.changed()

    async def _stop_sidecars(self) -> None:
        grace = float((self.spec_pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30))
        for name in reversed(self.init_order):
            if self.records[name].kind == "sidecar":
                await self._stop_container(name, grace)

    async def _stop_container(self, name: str, grace: float) -> None:
        task = self._supervisors.get(name)
        proc = self.procs.get(name)
        # Tell the supervisor not to restart it, then stop it.
        self._no_restart.add(name)
        if proc is not None:
            await stop_processes([proc], grace)
        if task is not None and not task.done():
            # It may be sleeping in a restart backoff: there is nothing left to wait for then.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), 1.0)
            if not task.done() and not (name in self.procs and self.procs[name].alive):
                task.cancel()
            with contextlib.suppress(BaseException):
                await task

    def _configure(self, name: str) -> tuple[list[str], dict[str, str], str | None, list[Mount], list[str]]:
        """(argv, env, cwd, mounts, command) for a container, or ConfigError."""
        spec = self.specs[name]
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
        return argv, env, cwd, mounts, command

    async def _supervise(self, name: str, policy: str) -> int:
        """Run one container, restarting it per `policy`; returns the last exit code."""
        rec = self.records[name]
        spec = self.specs[name]
        backoff = self.settings.backoff_initial
        last_code = -1
        instances = 0
        while not self.stopping.is_set() and name not in self._no_restart:
            try:
                argv, env, cwd, _, command = self._configure(name)
            except ConfigError as e:
                # Missing secret/config map: keep waiting (re-fetching), as the kubelet does.
                rec.set_waiting("CreateContainerConfigError", str(e))
                self.changed()
                await self._sleep_or_stop(self.settings.retry_interval)
                with contextlib.suppress(ApiError, OSError):
                    await self._fetch_refs()
                continue
            if instances:
                rec.restart_count += 1
            instances += 1
            started_at = now_iso()
            start_error = _check_executable(command, env)
            proc = ContainerProcess(argv, env, cwd, logfiles.log_path(self.dir, name, rec.restart_count))
            logfiles.prune_logs(self.dir, name, rec.restart_count)
            if start_error is None:
                try:
                    await proc.start()
                except OSError as e:
                    start_error = str(e)
            if start_error is not None:
                rc = 128
                rec.container_id = ""
                rec.set_terminated(
                    {
                        "exitCode": 128,
                        "reason": "StartError",
                        "message": start_error,
                        "startedAt": started_at,
                        "finishedAt": now_iso(),
                    }
                )
                ran_for = 0.0
            else:
                self.procs[name] = proc
                self.proc_instance[name] = rec.restart_count
                self.agent.pids_changed()
                if self.stopping.is_set() or name in self._no_restart:
                    # A stop came while it was starting: it gets the same SIGTERM as the others.
                    proc.signal_group(signal.SIGTERM)
                startup = _numeric_ports(spec.get("startupProbe"), spec)
                readiness = _numeric_ports(spec.get("readinessProbe"), spec)
                rec.set_running(started_at, f"local://{proc.pid}", ready=False)
                if startup is None:
                    self._mark_started(name, readiness is None)
                if rec.kind == "main" and self.phase == "Pending":
                    self.phase = "Running"
                self.changed()
                probe_task = (
                    asyncio.create_task(self._probe_loop(name, proc, startup, readiness, env))
                    if startup is not None or readiness is not None
                    else None
                )
                rc = await proc.wait()
                self.agent.pids_changed()
                if probe_task is not None:
                    probe_task.cancel()
                ran_for = time.monotonic() - proc.started_monotonic
                rec.set_terminated(terminated_state(rc, started_at, now_iso()))
            last_code = rec.terminated["exitCode"] if rec.terminated else rc
            self.changed()
            restart = policy == "Always" or (policy == "OnFailure" and last_code != 0)
            if not restart or self.stopping.is_set() or name in self._no_restart:
                break
            if ran_for >= self.settings.backoff_reset_after:
                backoff = self.settings.backoff_initial
            rec.last_state = dict(rec.state)
            rec.set_waiting(
                "CrashLoopBackOff",
                f"back-off {backoff:g}s restarting failed container={name} pod={self.name}",
            )
            self.changed()
            await self._sleep_or_stop(backoff)
            backoff = min(backoff * 2, self.settings.backoff_max)
        return last_code

    def _mark_started(self, name: str, ready: bool) -> None:
        rec = self.records[name]
        rec.started = True
        rec.ready = ready
        self._started[name].set()
        self.changed()

    async def _probe_loop(
        self,
        name: str,
        proc: ContainerProcess,
        startup: JSON | None,
        readiness: JSON | None,
        env: dict[str, str],
    ) -> None:
        """startupProbe until it passes (a container that never starts is killed and restarted per
        restartPolicy), then readinessProbe for as long as the process runs."""

        async def probe(p: JSON) -> bool:
            return await run_probe(p, pod_ip=self.ip, pid=proc.pid, mode=self.agent.sandbox, env=env)

        rec = self.records[name]
        if startup is not None:
            await asyncio.sleep(float(startup.get("initialDelaySeconds") or 0))
            failures = 0
            while proc.alive:
                if await probe(startup):
                    self._mark_started(name, readiness is None)
                    break
                failures += 1
                if failures >= int(startup.get("failureThreshold") or 3):
                    log.info("pod %s: container %s failed its startup probe; killing it", self.key, name)
                    proc.signal_group(signal.SIGKILL)
                    return
                await asyncio.sleep(float(startup.get("periodSeconds") or 10))
        if readiness is None:
            return
        period = float(readiness.get("periodSeconds") or 10)
        success_needed = int(readiness.get("successThreshold") or 1)
        failure_needed = int(readiness.get("failureThreshold") or 3)
        await asyncio.sleep(float(readiness.get("initialDelaySeconds") or 0))
        successes = failures = 0
        while proc.alive:
            ok = await probe(readiness)
            successes, failures = (successes + 1, 0) if ok else (0, failures + 1)
            new_ready = rec.ready
            if ok and successes >= success_needed:
                new_ready = True
            elif not ok and failures >= failure_needed:
                new_ready = False
            if new_ready != rec.ready and proc.alive:
                rec.ready = new_ready
                self.changed()
            await asyncio.sleep(period)

    async def _terminate(self, grace: float, delete: bool) -> None:
        self.stopping.set()
        deadline = time.monotonic() + grace
        regular = [n for n in self.init_order if self.records[n].kind == "init"] + self.main_order
        self._no_restart.update(regular)
        await stop_processes([self.procs[n] for n in regular if n in self.procs], grace)
        sidecars = [n for n in reversed(self.init_order) if self.records[n].kind == "sidecar"]
        self._no_restart.update(sidecars)
        for n in sidecars:
            if n in self.procs:
                await stop_processes([self.procs[n]], max(2.0, deadline - time.monotonic()))
        for t in self._supervisors.values():
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


def _check_executable(command: list[str], env: dict[str, str]) -> str | None:
    """The runtime's StartError when the command cannot be found (checked before the sandbox)."""
    exe = command[0]
    if "/" in exe:
        return None  # may live in a volume that only exists inside the mount namespace
    if shutil.which(exe, path=env.get("PATH")) is None:
        return f'exec: "{exe}": executable file not found in $PATH'
    return None


def _numeric_ports(probe: JSON | None, container: JSON) -> JSON | None:
    """The probe with a named port (httpGet/tcpSocket) replaced by the container's port number."""
    if probe is None:
        return None
    named = {p.get("name"): p.get("containerPort") for p in container.get("ports") or [] if p.get("name")}
    out = dict(probe)
    for kind in ("httpGet", "tcpSocket"):
        action = out.get(kind)
        if isinstance(action, dict) and isinstance(action.get("port"), str) and not action["port"].isdigit():
            out[kind] = {**action, "port": named.get(action["port"], action["port"])}
    return out
