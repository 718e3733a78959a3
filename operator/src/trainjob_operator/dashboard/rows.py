"""What the dashboard shows of each object, as plain JSON-ready dicts (pure functions).

The page renders these rows and nothing else, so every rule about *what* a person sees (the
reason a job is not running, its progress, a pod's state) lives here and is unit-tested without a
browser; the JavaScript only lays them out.
"""

from __future__ import annotations

from typing import Any

from trainjob_operator.api import constants

JSON = dict[str, Any]

# A job in these phases shows why; the others are self-explanatory.
_EXPLAINED_PHASES = ("Pending", "Restarting", "Failed", "Suspended")
# A pod that waits for one of these reasons is merely starting: not worth naming as "why".
_ORDINARY_WAITING = ("ContainerCreating", "PodInitializing")


def _status(obj: JSON) -> JSON:
    return dict(obj.get("status") or {})


def _spec(obj: JSON) -> JSON:
    return dict(obj.get("spec") or {})


def job_key(job: JSON) -> str:
    metadata = job["metadata"]
    return f"{metadata.get('namespace', '')}/{metadata['name']}"


def progress(job: JSON) -> JSON | None:
    """`{"percent", "etaSeconds"}`: the status's own progress when the coordinator publishes one
    (`status.progress`: the program told its total), else iteration over `spec.config.epochs`
    (the examples report once per epoch); None when the job says nothing of its length."""
    status = _status(job)
    published = status.get("progress")
    if isinstance(published, dict) and isinstance(published.get("percentage"), int | float):
        return {
            "percent": float(published["percentage"]),
            "etaSeconds": published.get("estimatedRemainingSeconds"),
        }
    iteration = status.get("iteration")
    epochs = (_spec(job).get("config") or {}).get("epochs")
    if not isinstance(iteration, int) or not isinstance(epochs, int) or epochs <= 0:
        if status.get("phase") == "Succeeded":
            return {"percent": 100.0, "etaSeconds": 0}
        return None
    return {"percent": round(min(100.0, 100.0 * iteration / epochs), 1), "etaSeconds": None}


def _condition_reason(status: JSON) -> str | None:
    """The message of the first True condition that explains trouble, in the order a person
    would want to know about it."""
    conditions = {c.get("type"): c for c in status.get("conditions") or [] if isinstance(c, dict)}
    for kind in ("Failed", "StorageUnavailable", "Stalled", "SpecChangeRefused", "Suspended", "Restarting"):
        condition = conditions.get(kind)
        if condition and condition.get("status") == "True":
            text = condition.get("message") or condition.get("reason")
            if text:
                return (
                    f"{condition.get('reason')}: {text}"
                    if condition.get("reason") and text != condition.get("reason")
                    else str(text)
                )
    # A False condition about pods readiness (the operator names the blocking pod there).
    pods_ready = conditions.get("PodsReady")
    if pods_ready and pods_ready.get("status") == "False" and pods_ready.get("message"):
        return f"{pods_ready.get('reason')}: {pods_ready['message']}"
    return None


def pod_problem(pod: JSON) -> str | None:
    """Why a pod is not running, as the kubelet or the scheduler said it: `Unschedulable: 0/3
    nodes are available: ...`, `ImagePullBackOff: ...`; None for a pod that is fine or merely
    starting."""
    status = _status(pod)
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            return f"{condition.get('reason') or 'Unschedulable'}: {condition.get('message') or ''}".rstrip(
                ": "
            )
    for container in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        waiting = (container.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason")
        if reason and reason not in _ORDINARY_WAITING:
            message = waiting.get("message")
            return f"{reason}: container {container.get('name')}" + (f": {message}" if message else "")
    return None


def job_reason(job: JSON, pods: list[JSON]) -> str | None:
    """Why a job is Pending, Restarting, Failed or Suspended, in one line; None when it is not
    in such a phase. The job's own word (conditions, then `status.message`) comes first; a pod's
    scheduler or kubelet reason is the fallback for a job whose operator has not said more."""
    status = _status(job)
    phase = status.get("phase") or "Pending"
    if phase not in _EXPLAINED_PHASES:
        return None
    said = _condition_reason(status) or status.get("message")
    if said:
        return str(said)
    for pod in sorted(pods, key=lambda p: str(p["metadata"]["name"])):
        problem = pod_problem(pod)
        if problem:
            return f"pod {pod['metadata']['name']}: {problem}"
    return None


def job_row(job: JSON, pods: list[JSON]) -> JSON:
    """One line of the job list."""
    metadata = job["metadata"]
    status = _status(job)
    spec = _spec(job)
    workers = status.get("workers") or {}
    return {
        "key": job_key(job),
        "namespace": metadata.get("namespace", ""),
        "name": metadata["name"],
        "phase": status.get("phase") or "Pending",
        "attempt": status.get("attempt", 0),
        "restarts": status.get("restarts", 0),
        "disruptions": status.get("disruptions", 0),
        "iteration": status.get("iteration"),
        "metrics": status.get("metrics") or {},
        # An elastic gang wants its current size (status.workers.current), at most spec.workers.
        "workers": {
            "wanted": workers.get("current") or spec.get("workers", 1),
            "ready": workers.get("ready", 0),
        },
        "progress": progress(job),
        "created": metadata.get("creationTimestamp"),
        "reason": job_reason(job, pods),
    }


def pod_row(pod: JSON) -> JSON:
    """A pod of the job: where it runs and what state its trainer is in."""
    metadata = pod["metadata"]
    labels = metadata.get("labels") or {}
    status = _status(pod)
    trainer: JSON = next(
        (c for c in status.get("containerStatuses") or [] if c.get("name") == constants.TRAINER_CONTAINER), {}
    )
    state_name, state = next(iter((trainer.get("state") or {"waiting": {}}).items()))
    detail = state.get("reason") or ""
    if state_name == "terminated":
        detail = f"{detail} (exit {state.get('exitCode')})".strip()
    return {
        "name": metadata["name"],
        "rank": labels.get(constants.LABEL_RANK),
        "attempt": labels.get(constants.LABEL_ATTEMPT),
        "node": _spec(pod).get("nodeName") or "",
        "phase": "Terminating" if metadata.get("deletionTimestamp") else status.get("phase") or "Pending",
        "trainer": f"{state_name} {detail}".strip(),
        "restarts": trainer.get("restartCount", 0),
        "problem": pod_problem(pod),
    }


def event_row(event: JSON) -> JSON:
    """An Event, as the timeline shows it."""
    involved = event.get("involvedObject") or {}
    return {
        "time": event.get("lastTimestamp")
        or event.get("eventTime")
        or (event.get("metadata") or {}).get("creationTimestamp"),
        "type": event.get("type") or "Normal",
        "reason": event.get("reason") or "",
        "message": event.get("message") or "",
        "object": f"{involved.get('kind', '')}/{involved.get('name', '')}",
        "count": event.get("count") or 1,
    }


def condition_rows(job: JSON) -> list[JSON]:
    """The job's conditions as timeline entries."""
    return [
        {
            "time": c.get("lastTransitionTime"),
            "type": c.get("type"),
            "status": c.get("status"),
            "reason": c.get("reason") or "",
            "message": c.get("message") or "",
        }
        for c in _status(job).get("conditions") or []
        if isinstance(c, dict)
    ]


def checkpoint_rows(job: JSON, stored: list[JSON] | None) -> list[JSON]:
    """Committed checkpoints with a download command each: from storage when it could be read
    (every committed one, with size and time), else the retained ones the status lists."""
    status = _status(job)
    name = job["metadata"]["name"]
    namespace = job["metadata"].get("namespace", "")
    latest = (status.get("latestCheckpoint") or {}).get("uri")
    best = (status.get("bestCheckpoint") or {}).get("uri")
    rows = stored if stored is not None else list(status.get("checkpoints") or [])
    out = []
    for row in rows:
        iteration = row.get("iteration")
        out.append(
            {
                **row,
                "latest": row.get("uri") == latest,
                "best": row.get("uri") == best,
                "download": f"trainjob checkpoints download {name} ./{name}-{iteration} "
                f"--iteration {iteration} -n {namespace}",
            }
        )
    return sorted(out, key=lambda r: (r.get("iteration") is None, r.get("iteration") or 0))
