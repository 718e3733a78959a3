"""PodDisruptionBudgets and the `pods/eviction` subresource, as Kubernetes' disruption controller
(pkg/controller/disruption) and eviction REST handler (pkg/registry/core/pod/storage/eviction.go)
do them.

Status of each budget (`policy/v1`): `expectedPods` (the matching pods for an integer
`minAvailable`; otherwise the replicas their controllers ask for), `desiredHealthy`,
`currentHealthy` (matching pods that are Ready and not being deleted, not counting those evicted
but not yet seen going), `disruptionsAllowed` = currentHealthy - desiredHealthy (never below 0),
`observedGeneration`, `disruptedPods` and the `DisruptionAllowed` condition (`SufficientPods`,
`InsufficientPods`, or `SyncFailed` when a pod has no controller to count replicas from).

Eviction: the pod's budget is recomputed first (so no eviction ever sees a stale one), then an
eviction that would take it below `desiredHealthy` is refused with 429 and Kubernetes' message;
otherwise the budget records the pod in `disruptedPods`, the pod gets the `DisruptionTarget`
condition (reason `EvictionByEvictionAPI`) and is deleted gracefully with the eviction's
deleteOptions. Pods that are Pending, finished or already being deleted are evicted without
consulting any budget, as the real handler does.
"""

from __future__ import annotations

import contextlib
import copy
import math
from datetime import UTC, datetime, timedelta
from typing import Any

from . import deletion
from .deletion import DeleteOptions
from .errors import APIError, bad_request
from .objects import POD_STORAGE, ObjectAPI, WriteOptions, now_rfc3339
from .resources import ResourceInfo
from .selectors import labels_match, selector_from_label_selector
from .store import Obj

PDB_STORAGE = ("policy", "poddisruptionbudgets")
MANAGER = "disruption-controller"
# An eviction the controller has not seen go through stops counting after this (DeletionTimeout).
DISRUPTION_TIMEOUT = timedelta(minutes=2)
CANNOT_EVICT = "Cannot evict pod as it would violate the pod's disruption budget."
# kinds whose replicas a budget counts (the controller's finders), by (apiVersion group, kind)
_SCALED_KINDS = {
    ("apps", "ReplicaSet"),
    ("apps", "StatefulSet"),
    ("apps", "Deployment"),
    ("", "ReplicationController"),
}


def _ready(pod: Obj) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


def _matching_pods(api: ObjectAPI, pdb: Obj) -> list[Obj]:
    reqs = selector_from_label_selector((pdb.get("spec") or {}).get("selector"))
    if reqs is None:
        return []
    ns = pdb["metadata"].get("namespace", "")
    return [p for p in api.store.select(POD_STORAGE, ns) if labels_match(reqs, p["metadata"].get("labels"))]


def _scaled(value: Any, total: int) -> int:
    """An IntOrString against `total`, a percentage rounded up (GetScaledValueFromIntOrPercent)."""
    if isinstance(value, str) and value.endswith("%"):
        return math.ceil(int(value[:-1]) * total / 100)
    return int(value)


def _controller_scale(api: ObjectAPI, pods: list[Obj]) -> int:
    """The replicas the pods' controllers ask for, each controller once (a ReplicaSet of a
    Deployment counts as the Deployment); raises ValueError for a pod without one."""
    scales: dict[str, int] = {}
    for pod in pods:
        obj = _controller(api, pod)
        if obj is not None and obj.get("kind") == "ReplicaSet":
            obj = _controller(api, obj) if _is_deployment(_controller(api, obj)) else obj
        replicas = _replicas(api, obj) if obj is not None else None
        if obj is None or replicas is None:
            raise ValueError(f'found no controllers for pod "{pod["metadata"]["name"]}"')
        scales[obj["metadata"]["uid"]] = replicas
    return sum(scales.values())


def _controller(api: ObjectAPI, obj: Obj) -> Obj | None:
    ref = next((r for r in obj["metadata"].get("ownerReferences") or [] if r.get("controller")), None)
    found = api.store.by_uid(ref.get("uid", "")) if ref else None
    return found[1] if found is not None else None


def _is_deployment(obj: Obj | None) -> bool:
    return obj is not None and obj.get("kind") == "Deployment"


def _replicas(api: ObjectAPI, obj: Obj) -> int | None:
    """spec.replicas of a workload kind, or of a custom resource with a scale subresource (the
    controller's scale finder); None for anything else."""
    group = obj.get("apiVersion", "").rpartition("/")[0]
    path = ".spec.replicas"
    if (group, obj.get("kind")) not in _SCALED_KINDS:
        info = api.registry.by_kind(obj.get("apiVersion", ""), obj.get("kind", ""))
        if info is None or info.builtin or not info.scale:
            return None
        path = info.scale.get("specReplicasPath", path)
    cur: Any = obj
    for part in path.strip(".").split("."):
        cur = cur.get(part) if isinstance(cur, dict) else None
    return int(cur if cur is not None else 1)


def _condition(old: list[Obj], status: str, reason: str, message: str) -> list[Obj]:
    previous = next((c for c in old if c.get("type") == "DisruptionAllowed"), None)
    same = previous is not None and (previous.get("status"), previous.get("reason")) == (status, reason)
    return [
        {
            "type": "DisruptionAllowed",
            "status": status,
            "observedGeneration": 0,
            "lastTransitionTime": previous["lastTransitionTime"] if same and previous else now_rfc3339(),
            "reason": reason,
            "message": message,
        }
    ]


def compute_status(api: ObjectAPI, pdb: Obj, now: datetime | None = None) -> Obj:
    """The budget's status as the disruption controller would write it now."""
    now = now or datetime.now(UTC)
    spec = pdb.get("spec") or {}
    old = copy.deepcopy(pdb.get("status") or {})
    generation = int(pdb["metadata"].get("generation") or 1)
    pods = _matching_pods(api, pdb)
    alive = {p["metadata"]["name"]: p for p in pods}
    disrupted: dict[str, str] = {}
    for name, when in (old.get("disruptedPods") or {}).items():
        pod = alive.get(name)
        if pod is None or pod["metadata"].get("deletionTimestamp"):
            continue  # the eviction went through
        with contextlib.suppress(ValueError):
            if datetime.fromisoformat(when.replace("Z", "+00:00")) + DISRUPTION_TIMEOUT < now:
                continue
        disrupted[name] = when
    healthy = sum(
        1
        for p in pods
        if not p["metadata"].get("deletionTimestamp") and p["metadata"]["name"] not in disrupted and _ready(p)
    )
    min_available, max_unavailable = spec.get("minAvailable"), spec.get("maxUnavailable")
    failure = ""
    expected = len(pods)
    desired = 0
    try:
        if max_unavailable is not None:
            expected = _controller_scale(api, pods)
            desired = max(0, expected - _scaled(max_unavailable, expected))
        elif min_available is not None:
            if isinstance(min_available, str) and min_available.endswith("%"):
                expected = _controller_scale(api, pods)
            desired = _scaled(min_available, expected)
    except ValueError as exc:
        failure = str(exc)
    allowed = max(0, healthy - desired)
    status: Obj = {
        "observedGeneration": generation,
        "currentHealthy": healthy,
        "desiredHealthy": desired,
        "disruptionsAllowed": allowed,
        "expectedPods": expected,
    }
    if disrupted:
        status["disruptedPods"] = disrupted
    if failure:
        # the controller's fail-safe: no disruption while it cannot count
        status["disruptionsAllowed"] = 0
        status["conditions"] = _condition(old.get("conditions") or [], "False", "SyncFailed", failure)
    elif allowed > 0:
        status["conditions"] = _condition(old.get("conditions") or [], "True", "SufficientPods", "")
    else:
        status["conditions"] = _condition(old.get("conditions") or [], "False", "InsufficientPods", "")
    for c in status["conditions"]:
        c["observedGeneration"] = generation
    return status


class DisruptionController:
    """Keeps every budget's status current (run on each change, as the controller's informers do)."""

    def __init__(self, api: ObjectAPI) -> None:
        self.api = api

    def run_once(self) -> None:
        info = self.api.registry.for_storage(PDB_STORAGE)
        if info is None:
            return
        for pdb in self.api.store.select(PDB_STORAGE):
            with contextlib.suppress(APIError):
                write_status(self.api, info, pdb, compute_status(self.api, pdb))


def write_status(api: ObjectAPI, info: ResourceInfo, pdb: Obj, status: Obj) -> Obj:
    if pdb.get("status") == status:
        return pdb
    new = copy.deepcopy(pdb)
    new["status"] = status
    return api.commit(info, pdb, new, WriteOptions(field_manager=MANAGER), MANAGER, "status")


def evict(api: ObjectAPI, pods: ResourceInfo, namespace: str, name: str, body: Obj) -> None:
    """POST pods/{name}/eviction: delete the pod unless that breaks its disruption budget."""
    body_name = (body.get("metadata") or {}).get("name")
    if body_name and body_name != name:
        raise bad_request("name in URL does not match name in Eviction object")
    pod = api.get(pods, namespace, name)
    opts = body.get("deleteOptions") or {}
    pre = opts.get("preconditions") or {}
    dry_run = bool(opts.get("dryRun"))
    phase = (pod.get("status") or {}).get("phase")
    if phase not in ("Succeeded", "Failed", "Pending") and not pod["metadata"].get("deletionTimestamp"):
        _check_budget(api, pod, dry_run)
    if not dry_run:
        _mark_disruption_target(api, pods, pod)
    deletion.delete(
        api,
        pods,
        namespace,
        name,
        DeleteOptions(
            grace_period=opts.get("gracePeriodSeconds"),
            propagation=opts.get("propagationPolicy"),
            precondition_uid=pre.get("uid"),
            precondition_rv=pre.get("resourceVersion"),
            dry_run=dry_run,
        ),
    )


def _check_budget(api: ObjectAPI, pod: Obj, dry_run: bool) -> None:
    info = api.registry.for_storage(PDB_STORAGE)
    if info is None:
        return
    ns = pod["metadata"].get("namespace", "")
    budgets = [
        p
        for p in api.store.select(PDB_STORAGE, ns)
        if (reqs := selector_from_label_selector((p.get("spec") or {}).get("selector"))) is not None
        and labels_match(reqs, pod["metadata"].get("labels"))
    ]
    if not budgets:
        return
    if len(budgets) > 1:
        why = (
            "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."
        )
        raise APIError(
            500, "InternalError", f"Internal error occurred: {why}", {"causes": [{"message": why}]}
        )
    pdb = budgets[0]
    status = compute_status(api, pdb)
    pdb = write_status(api, info, pdb, status)
    policy = (pdb.get("spec") or {}).get("unhealthyPodEvictionPolicy")
    if not _ready(pod):
        if policy == "AlwaysAllow":
            return
        if status["currentHealthy"] >= status["desiredHealthy"] > 0:
            return  # not counted as healthy: evicting it costs the budget nothing
    if status["disruptionsAllowed"] == 0:
        raise APIError(
            429,
            "TooManyRequests",
            CANNOT_EVICT,
            {
                "causes": [
                    {
                        "reason": "DisruptionBudget",
                        "message": f"The disruption budget {pdb['metadata']['name']} needs "
                        f"{status['desiredHealthy']} healthy pods and has "
                        f"{status['currentHealthy']} currently",
                    }
                ]
            },
        )
    taken = copy.deepcopy(status)
    taken["disruptionsAllowed"] -= 1
    taken.setdefault("disruptedPods", {})[pod["metadata"]["name"]] = now_rfc3339()
    if taken["disruptionsAllowed"] == 0:
        taken["conditions"] = _condition(status.get("conditions") or [], "False", "InsufficientPods", "")
        for c in taken["conditions"]:
            c["observedGeneration"] = status["observedGeneration"]
    if not dry_run:
        write_status(api, info, pdb, taken)


def _mark_disruption_target(api: ObjectAPI, pods: ResourceInfo, pod: Obj) -> None:
    """The `DisruptionTarget` condition, set before the delete as the eviction handler does."""
    if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return
    new = copy.deepcopy(pod)
    conditions = [
        c
        for c in (new.setdefault("status", {}).get("conditions") or [])
        if c.get("type") != "DisruptionTarget"
    ]
    conditions.append(
        {
            "type": "DisruptionTarget",
            "status": "True",
            "lastProbeTime": None,
            "lastTransitionTime": now_rfc3339(),
            "reason": "EvictionByEvictionAPI",
            "message": "Eviction API: evicting",
        }
    )
    new["status"]["conditions"] = conditions
    api.commit(pods, pod, new, WriteOptions(field_manager="kube-apiserver"), "kube-apiserver", "status")
