"""Pod status as the kubelet reports it, computed from what the agent knows about its processes.

`ContainerRecord` is the agent's record of one container; `container_status`, `update_conditions`
and `pod_status` are pure functions from records to the JSON the API server stores.
"""

from __future__ import annotations

import signal as _signal
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

JSON = dict[str, Any]


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def exit_code_of(returncode: int) -> tuple[int, int | None]:
    """(exitCode, signal): a process killed by signal N reports 128+N, as the kubelet does."""
    if returncode < 0:
        return 128 - returncode, -returncode
    return returncode, None


def terminated_state(
    returncode: int, started_at: str, finished_at: str, *, oom: bool = False, message: str | None = None
) -> JSON:
    code, sig = exit_code_of(returncode)
    reason = "OOMKilled" if oom else ("Completed" if code == 0 else "Error")
    state: JSON = {
        "exitCode": code,
        "reason": reason,
        "startedAt": started_at,
        "finishedAt": finished_at,
        "containerID": "",
    }
    if sig is not None:
        state["signal"] = sig
        with_name = _signal.Signals(sig).name if sig in _signal.Signals._value2member_map_ else None
        if with_name and not message:
            message = f"killed by {with_name}"
    if message:
        state["message"] = message
    return state


@dataclass
class ContainerRecord:
    """What the agent knows of one container (its current and previous instance)."""

    name: str
    image: str = ""
    kind: str = "main"  # "init", "sidecar" (init with restartPolicy Always) or "main"
    state: JSON = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: JSON = field(default_factory=dict)
    restart_count: int = 0
    ready: bool = False
    started: bool = False
    container_id: str = ""

    def set_waiting(self, reason: str, message: str | None = None) -> None:
        waiting: JSON = {"reason": reason}
        if message:
            waiting["message"] = message
        self.state = {"waiting": waiting}
        self.started = False
        self.ready = False

    def set_running(self, started_at: str, container_id: str, ready: bool) -> None:
        self.state = {"running": {"startedAt": started_at}}
        self.container_id = container_id
        self.started = True
        self.ready = ready

    def set_terminated(self, terminated: JSON) -> None:
        terminated = dict(terminated, containerID=self.container_id)
        self.state = {"terminated": terminated}
        self.started = False
        self.ready = False

    @property
    def terminated(self) -> JSON | None:
        t = self.state.get("terminated")
        return t if isinstance(t, dict) else None


def container_status(rec: ContainerRecord) -> JSON:
    status: JSON = {
        "name": rec.name,
        "image": rec.image,
        "imageID": "",
        "ready": rec.ready,
        "started": rec.started,
        "restartCount": rec.restart_count,
        "state": rec.state,
        "lastState": rec.last_state,
    }
    if rec.container_id:
        status["containerID"] = rec.container_id
    return status


def update_conditions(
    previous: list[JSON], wanted: dict[str, tuple[bool, str | None]], now: str
) -> list[JSON]:
    """Conditions of the given types; lastTransitionTime moves only when the status flips."""
    prev = {c.get("type"): c for c in previous}
    out: list[JSON] = []
    for ctype, (ok, reason) in wanted.items():
        status = "True" if ok else "False"
        old = prev.get(ctype)
        cond: JSON = {"type": ctype, "status": status, "lastProbeTime": None}
        cond["lastTransitionTime"] = old["lastTransitionTime"] if old and old.get("status") == status else now
        if reason and not ok:
            cond["reason"] = reason
        out.append(cond)
    return out


def pod_conditions(
    previous: list[JSON],
    *,
    phase: str,
    initialized: bool,
    init_reason: str | None,
    containers_ready: bool,
    now: str,
) -> list[JSON]:
    terminal = phase in ("Succeeded", "Failed")
    not_ready = "PodCompleted" if terminal else "ContainersNotReady"
    ready = containers_ready and not terminal
    return update_conditions(
        previous,
        {
            "PodReadyToStartContainers": (True, None),
            "Initialized": (initialized, "PodCompleted" if terminal and initialized else init_reason),
            "Ready": (ready, not_ready),
            "ContainersReady": (ready, not_ready),
            "PodScheduled": (True, None),
        },
        now,
    )


def pod_status(
    *,
    phase: str,
    conditions: list[JSON],
    pod_ip: str,
    host_ip: str,
    start_time: str | None,
    init: list[ContainerRecord],
    main: list[ContainerRecord],
    reason: str | None = None,
    message: str | None = None,
    qos: str = "BestEffort",
) -> JSON:
    status: JSON = {
        "phase": phase,
        "conditions": conditions,
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "qosClass": qos,
        "containerStatuses": [container_status(c) for c in main],
    }
    if pod_ip:
        status["podIP"] = pod_ip
        status["podIPs"] = [{"ip": pod_ip}]
    if start_time:
        status["startTime"] = start_time
    if init:
        status["initContainerStatuses"] = [container_status(c) for c in init]
    # Merge patches keep keys that are absent, so clear reason/message explicitly.
    status["reason"] = reason
    status["message"] = message
    return status


def ready_summary(main: list[ContainerRecord], sidecars: list[ContainerRecord]) -> bool:
    """ContainersReady: every regular container and every running sidecar is ready."""
    return bool(main) and all(c.ready for c in main) and all(c.ready for c in sidecars)


def qos_class(pod: JSON) -> str:
    spec = pod.get("spec") or {}
    containers = spec.get("containers") or []
    requests_any = False
    guaranteed = bool(containers)
    for c in containers:
        res = c.get("resources") or {}
        lim, req = res.get("limits") or {}, res.get("requests") or {}
        if lim or req:
            requests_any = True
        for r in ("cpu", "memory"):
            if r not in lim or req.get(r, lim.get(r)) != lim.get(r):
                guaranteed = False
    if guaranteed:
        return "Guaranteed"
    return "Burstable" if requests_any else "BestEffort"
