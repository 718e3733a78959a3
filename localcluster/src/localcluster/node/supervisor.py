"""One container of a pod: its instances (start, exit, restart with back-off) and its probes.

The pod worker (pod.py) decides *when* a container runs (init order, main containers, sidecars,
termination); a `ContainerSupervisor` runs it: it configures each instance through the pod,
starts the process, follows startup and readiness probes, records the exit, and restarts per the
restart policy with the kubelet's exponential back-off (reset after an instance ran long enough).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from localcluster.node import logs as logfiles
from localcluster.node.containers import ContainerProcess, run_probe, stop_processes
from localcluster.node.envvars import ConfigError
from localcluster.node.events import EventRecorder, container_field_path
from localcluster.node.images import PullBackOff, PullRules, invalid_name_message
from localcluster.node.kube import ApiError
from localcluster.node.sandbox import SandboxMode
from localcluster.node.status import ContainerRecord, exit_code_of, now_iso, terminated_state

if TYPE_CHECKING:
    from localcluster.node.pod import NodeSettings

log = logging.getLogger(__name__)

JSON = dict[str, Any]


@dataclass
class LaunchSpec:
    """What the pod resolved for one instance of a container."""

    argv: list[str]  # what is executed (the command inside its sandbox)
    env: dict[str, str]
    cwd: str | None
    command: list[str]  # the container's own command, before the sandbox wraps it


class PodHost(Protocol):
    """What a supervisor needs from the pod it belongs to."""

    name: str
    dir: Path
    ip: str
    phase: str
    stopping: asyncio.Event
    settings: NodeSettings
    pod: JSON
    events: EventRecorder
    pull_backoff: PullBackOff

    @property
    def key(self) -> str: ...

    @property
    def sandbox(self) -> SandboxMode: ...

    def changed(self) -> None: ...

    def pids_changed(self) -> None: ...

    def launch_spec(self, name: str) -> LaunchSpec: ...

    def termination_file(self, name: str) -> Path: ...

    async def refetch_refs(self) -> None: ...

    async def sleep_or_stop(self, seconds: float) -> None: ...


class ContainerSupervisor:
    def __init__(self, pod: PodHost, spec: JSON, kind: str, waiting: str) -> None:
        self.pod = pod
        self.spec = spec
        self.name: str = spec["name"]
        self.record = ContainerRecord(name=self.name, image=spec.get("image", ""), kind=kind)
        self.record.set_waiting(waiting)
        self.proc: ContainerProcess | None = None
        self.instance = 0  # restart count of the instance `proc` belongs to
        self.started = asyncio.Event()  # the current instance has passed its startup probe
        self.no_restart = False  # being stopped for good
        self.task: asyncio.Task[int] | None = None

    def start(self, policy: str) -> asyncio.Task[int]:
        self.task = asyncio.create_task(self.run(policy), name=f"container {self.pod.key}/{self.name}")
        return self.task

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.alive

    async def stop(self, grace: float) -> None:
        """Stop it for good: no restart, SIGTERM, SIGKILL after `grace`, wait for the supervisor."""
        self.no_restart = True
        if self.proc is not None:
            await stop_processes([self.proc], grace)
        task = self.task
        if task is not None and not task.done():
            # It may be sleeping in a restart backoff: there is nothing left to wait for then.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), 1.0)
            if not task.done() and not self.alive:
                task.cancel()
            with contextlib.suppress(BaseException):
                await task

    def _stopped(self) -> bool:
        return self.pod.stopping.is_set() or self.no_restart

    async def run(self, policy: str) -> int:
        """Run the container, restarting it per `policy`; returns the last exit code."""
        pod, rec, settings = self.pod, self.record, self.pod.settings
        backoff = settings.backoff_initial
        last_code = -1
        instances = 0
        while not self._stopped():
            if not await self._ensure_image():
                continue
            try:
                launch = pod.launch_spec(self.name)
            except ConfigError as e:
                # Missing secret/config map: keep waiting (re-fetching), as the kubelet does.
                rec.set_waiting("CreateContainerConfigError", str(e))
                pod.changed()
                await pod.events.record(
                    pod.pod, container_field_path(rec.kind, self.name), "Warning", "Failed", f"Error: {e}"
                )
                await pod.sleep_or_stop(settings.retry_interval)
                with contextlib.suppress(ApiError, OSError):
                    await pod.refetch_refs()
                continue
            if instances:
                rec.restart_count += 1
            instances += 1
            started_at = now_iso()
            _fresh_file(pod.termination_file(self.name))
            start_error = _check_executable(launch.command, launch.env)
            proc = ContainerProcess(
                launch.argv, launch.env, launch.cwd, logfiles.log_path(pod.dir, self.name, rec.restart_count)
            )
            logfiles.prune_logs(pod.dir, self.name, rec.restart_count)
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
                rc, ran_for = await self._follow(proc, started_at, launch.env)
            last_code = rec.terminated["exitCode"] if rec.terminated else rc
            pod.changed()
            restart = policy == "Always" or (policy == "OnFailure" and last_code != 0)
            if not restart or self._stopped():
                break
            if ran_for >= settings.backoff_reset_after:
                backoff = settings.backoff_initial
            rec.last_state = dict(rec.state)
            rec.set_waiting(
                "CrashLoopBackOff",
                f"back-off {backoff:g}s restarting failed container={self.name} pod={pod.name}",
            )
            pod.changed()
            await pod.sleep_or_stop(backoff)
            backoff = min(backoff * 2, settings.backoff_max)
        return last_code

    async def _ensure_image(self) -> bool:
        """True when the image is present; otherwise the kubelet's waiting reason, events and wait.

        As the kubelet's image manager: an invalid reference is InvalidImageName; a failed pull is
        ErrImagePull, then ImagePullBackOff until the per-(pod, image) back-off has passed.
        """
        pod, rec, settings = self.pod, self.record, self.pod.settings
        image = str(self.spec.get("image") or "")
        if not image:
            return True  # no image at all: this cluster runs the command as it is (README)
        where = container_field_path(rec.kind, self.name)

        async def event(type_: str, reason: str, message: str) -> None:
            await pod.events.record(pod.pod, where, type_, reason, message)

        invalid = invalid_name_message(image)
        if invalid is not None:
            rec.set_waiting("InvalidImageName", invalid)
            pod.changed()
            await event("Warning", "InspectFailed", invalid)
            await event("Warning", "Failed", "Error: InvalidImageName")
            await pod.sleep_or_stop(settings.image_backoff_initial)
            return False
        error = PullRules(settings.unpullable_images).pull_error(image)
        if error is None:
            pod.pull_backoff.reset(image)
            return True
        if self.spec.get("imagePullPolicy") == "Never":
            message = f'Container image "{image}" is not present with pull policy of Never'
            rec.set_waiting("ErrImageNeverPull", message)
            pod.changed()
            await event("Warning", "ErrImageNeverPull", message)
            await event("Warning", "Failed", "Error: ErrImageNeverPull")
            await pod.sleep_or_stop(settings.image_backoff_initial)
            return False
        await event("Normal", "Pulling", f'Pulling image "{image}"')
        await event("Warning", "Failed", f'Failed to pull image "{image}": {error}')
        wait = pod.pull_backoff.next(image)
        rec.set_waiting("ErrImagePull", error)
        pod.changed()
        await event("Warning", "Failed", "Error: ErrImagePull")
        # The pod worker syncs again soon and finds the image in back-off.
        first = min(settings.retry_interval, wait)
        await pod.sleep_or_stop(first)
        if self._stopped():
            return False
        rec.set_waiting("ImagePullBackOff", f'Back-off pulling image "{image}": ErrImagePull: {error}')
        pod.changed()
        await event("Normal", "BackOff", f'Back-off pulling image "{image}"')
        await event("Warning", "Failed", "Error: ImagePullBackOff")
        await pod.sleep_or_stop(wait - first)
        return False

    async def _follow(
        self, proc: ContainerProcess, started_at: str, env: dict[str, str]
    ) -> tuple[int, float]:
        """A started instance until it exits: (returncode, seconds it ran)."""
        pod, rec = self.pod, self.record
        self.proc = proc
        self.instance = rec.restart_count
        pod.pids_changed()
        if self._stopped():
            # A stop came while it was starting: it gets the same SIGTERM as the others.
            proc.signal_group(signal.SIGTERM)
        startup = _numeric_ports(self.spec.get("startupProbe"), self.spec)
        readiness = _numeric_ports(self.spec.get("readinessProbe"), self.spec)
        rec.set_running(started_at, f"local://{proc.pid}", ready=False)
        if startup is None:
            self._mark_started(readiness is None)
        if rec.kind == "main" and pod.phase == "Pending":
            pod.phase = "Running"
        pod.changed()
        probe_task = (
            asyncio.create_task(self._probe_loop(proc, startup, readiness, env))
            if startup is not None or readiness is not None
            else None
        )
        rc = await proc.wait()
        pod.pids_changed()
        if probe_task is not None:
            probe_task.cancel()
        ran_for = time.monotonic() - proc.started_monotonic
        code = exit_code_of(rc)[0]
        fallback = self.spec.get("terminationMessagePolicy") == "FallbackToLogsOnError" and code != 0
        message = logfiles.termination_message(
            pod.termination_file(self.name), proc.log_file, fallback_to_logs=fallback
        )
        rec.set_terminated(terminated_state(rc, started_at, now_iso(), message=message or None))
        return rc, ran_for

    def _mark_started(self, ready: bool) -> None:
        self.record.started = True
        self.record.ready = ready
        self.started.set()
        self.pod.changed()

    async def _probe_loop(
        self, proc: ContainerProcess, startup: JSON | None, readiness: JSON | None, env: dict[str, str]
    ) -> None:
        """startupProbe until it passes (a container that never starts is killed and restarted per
        restartPolicy), then readinessProbe for as long as the process runs."""
        pod, rec = self.pod, self.record

        async def probe(p: JSON) -> bool:
            return await run_probe(p, pod_ip=pod.ip, pid=proc.pid, mode=pod.sandbox, env=env)

        if startup is not None:
            await asyncio.sleep(float(startup.get("initialDelaySeconds") or 0))
            failures = 0
            while proc.alive:
                if await probe(startup):
                    self._mark_started(readiness is None)
                    break
                failures += 1
                if failures >= int(startup.get("failureThreshold") or 3):
                    log.info("pod %s: container %s failed its startup probe; killing it", pod.key, self.name)
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
                pod.changed()
            await asyncio.sleep(period)


def _fresh_file(path: Path) -> None:
    """An empty termination message file for the next instance (the kubelet makes a new one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")


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
