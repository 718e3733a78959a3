"""The scheduler (`default-scheduler`), in the API server's process: it binds every pending pod
to a node, as kube-scheduler's default profile does with its filter plugins.

Filters, in kube-scheduler's order and with its reasons (one per node, as the framework stops at
a node's first failing filter): NodeUnschedulable (`node(s) were unschedulable`),
TaintToleration (`node(s) had untolerated taint {key: value}`), NodeAffinity (nodeSelector and
required node affinity: `node(s) didn't match Pod's node affinity/selector`), NodeResourcesFit
(`Insufficient cpu`, `Insufficient memory`, `Insufficient <extended resource>`, `Too many pods`)
against the requests of the non-terminal pods already bound to the node. Among the nodes that
pass, the least allocated (cpu and memory) wins.

A pod that fits nowhere gets `PodScheduled=False`, reason `Unschedulable`, the FitError message
(`0/3 nodes are available: 3 Insufficient nvidia.com/gpu. preemption: ...`) and a
`FailedScheduling` event, and is tried again when a node or a bound pod changes. A pod with
`schedulingGates` is not tried (`SchedulingGated`). Pods are taken by priority, then age.

Preemption (DefaultPreemption's PostFilter): a pod that fits nowhere may delete lower-priority
pods of one node where only resources were missing; the victims get the `DisruptionTarget`
condition (reason `PreemptionByScheduler`) and a graceful deletion, the preemptor
`status.nominatedNodeName`, and it binds once they are gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from ..node.quantity import parse_quantity
from .deletion import DeleteOptions, delete
from .errors import APIError
from .objects import NODE_STORAGE, POD_STORAGE, ObjectAPI, now_rfc3339
from .recorder import Recorder, condition, set_condition
from .store import WatchEvent

log = logging.getLogger(__name__)
Obj = dict[str, Any]

SCHEDULER_NAME = "default-scheduler"
UNSCHEDULABLE_TAINT = "node.kubernetes.io/unschedulable"
TERMINAL = ("Succeeded", "Failed")
GATED_MESSAGE = "Scheduling is blocked due to non-empty scheduling gates"
NOT_HELPFUL = "Preemption is not helpful for scheduling"
NO_VICTIMS = "No preemption victims found for incoming pod"


# ---- pod and node helpers (shared with the node lifecycle controller) -------------------------


_REQUESTS: dict[str, dict[str, int]] = {}  # by pod uid: a pod's requests never change


def _milli(q: Fraction) -> int:
    return math.ceil(q * 1000)


def cached_requests(pod: Obj) -> dict[str, int]:
    """pod_requests in milli-units (integers: a pass over hundreds of bound pods stays cheap),
    parsed once per pod."""
    uid = pod["metadata"].get("uid")
    found = _REQUESTS.get(uid) if uid else None
    if found is None:
        found = {k: _milli(v) for k, v in pod_requests(pod).items()}
        if uid:
            _REQUESTS[uid] = found
    return found


def forget_requests(uid: str) -> None:
    _REQUESTS.pop(uid, None)


def pod_requests(pod: Obj) -> dict[str, Fraction]:
    """What the pod asks of a node: max(sum of containers, each init container) plus overhead,
    per resource; a container's limit stands in for a request it does not give (API defaulting)."""

    def of(c: Obj) -> dict[str, Fraction]:
        res = c.get("resources") or {}
        merged = {**(res.get("limits") or {}), **(res.get("requests") or {})}
        out: dict[str, Fraction] = {}
        for k, v in merged.items():
            with contextlib.suppress(ValueError, TypeError):
                out[k] = parse_quantity(v)
        return out

    spec = pod.get("spec") or {}
    total: dict[str, Fraction] = {}
    for c in spec.get("containers") or []:
        for k, v in of(c).items():
            total[k] = total.get(k, Fraction(0)) + v
    sidecars: dict[str, Fraction] = {}
    for c in spec.get("initContainers") or []:
        req = of(c)
        if c.get("restartPolicy") == "Always":
            for k, v in req.items():
                sidecars[k] = sidecars.get(k, Fraction(0)) + v
            continue
        for k, v in req.items():
            total[k] = max(total.get(k, Fraction(0)), v + sidecars.get(k, Fraction(0)))
    for k, v in sidecars.items():
        total[k] = total.get(k, Fraction(0)) + v
    for k, v in (spec.get("overhead") or {}).items():
        with contextlib.suppress(ValueError, TypeError):
            total[k] = total.get(k, Fraction(0)) + parse_quantity(v)
    return total


def tolerates(tolerations: Iterable[Obj], taint: Obj) -> bool:
    return any(toleration_matches(t, taint) for t in tolerations)


def toleration_matches(t: Obj, taint: Obj) -> bool:
    if t.get("effect") and t.get("effect") != taint.get("effect"):
        return False
    op = t.get("operator") or "Equal"
    if not t.get("key"):
        return op == "Exists"
    if t.get("key") != taint.get("key"):
        return False
    return op == "Exists" or (t.get("value") or "") == (taint.get("value") or "")


def _expression_matches(expr: Obj, value: str | None) -> bool:
    op = expr.get("operator")
    values = [str(v) for v in expr.get("values") or []]
    if op == "In":
        return value is not None and value in values
    if op == "NotIn":
        return value is None or value not in values
    if op == "Exists":
        return value is not None
    if op == "DoesNotExist":
        return value is None
    if op in ("Gt", "Lt") and value is not None and values:
        try:
            a, b = int(value), int(values[0])
        except ValueError:
            return False
        return a > b if op == "Gt" else a < b
    return False


def node_affinity_matches(pod: Obj, node: Obj) -> bool:
    spec = pod.get("spec") or {}
    labels = node["metadata"].get("labels") or {}
    for k, v in (spec.get("nodeSelector") or {}).items():
        if labels.get(k) != v:
            return False
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    )
    if not required:
        return True
    fields = {"metadata.name": node["metadata"]["name"]}
    for term in required.get("nodeSelectorTerms") or []:
        exprs = term.get("matchExpressions") or []
        field_exprs = term.get("matchFields") or []
        if not exprs and not field_exprs:
            continue  # an empty term matches nothing
        if all(_expression_matches(e, labels.get(e.get("key"))) for e in exprs) and all(
            _expression_matches(e, fields.get(e.get("key"))) for e in field_exprs
        ):
            return True
    return False


def is_terminal(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in TERMINAL


def priority(pod: Obj) -> int:
    return int((pod.get("spec") or {}).get("priority") or 0)


@dataclass
class _NodeState:
    node: Obj
    allocatable: dict[str, int]  # milli-units, as every quantity here
    requested: dict[str, int] = field(default_factory=dict)
    pods: list[Obj] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.node["metadata"]["name"])

    def add(self, pod: Obj, sign: int = 1) -> None:
        for k, v in cached_requests(pod).items():
            self.requested[k] = self.requested.get(k, 0) + sign * v
        self.requested["pods"] = self.requested.get("pods", 0) + sign * 1000
        if sign > 0:
            self.pods.append(pod)
        else:
            self.pods = [p for p in self.pods if p["metadata"]["uid"] != pod["metadata"]["uid"]]

    def insufficient(self, pod: Obj) -> list[str]:
        """NodeResourcesFit's reasons: one per resource the node lacks."""
        reasons = []
        pods_cap = self.allocatable.get("pods")
        if pods_cap is not None and self.requested.get("pods", 0) + 1000 > pods_cap:
            reasons.append("Too many pods")
        for k, v in sorted(cached_requests(pod).items(), key=lambda kv: _resource_order(kv[0])):
            if v <= 0 or k == "pods":
                continue
            free = self.allocatable.get(k, 0) - self.requested.get(k, 0)
            if v > free:
                reasons.append(f"Insufficient {k}")
        return reasons

    def score(self, pod: Obj) -> float:
        req = cached_requests(pod)
        total = 0.0
        for k in ("cpu", "memory"):
            cap = self.allocatable.get(k, 0)
            if cap > 0:
                total += (cap - self.requested.get(k, 0) - req.get(k, 0)) / cap
        return total


def _terminating_by_preemption(pod: Obj) -> bool:
    target = condition(pod, "DisruptionTarget") or {}
    return bool(pod["metadata"].get("deletionTimestamp")) and target.get("reason") == "PreemptionByScheduler"


def _resource_order(name: str) -> tuple[int, str]:
    return ({"cpu": 0, "memory": 1, "ephemeral-storage": 2}.get(name, 3), name)


def _filter(pod: Obj, state: _NodeState) -> tuple[list[str], bool]:
    """The reasons the node is rejected (empty: it fits) and whether preemption could help."""
    spec = pod.get("spec") or {}
    node = state.node
    tolerations = spec.get("tolerations") or []
    nspec = node.get("spec") or {}
    if nspec.get("unschedulable") and not tolerates(
        tolerations, {"key": UNSCHEDULABLE_TAINT, "effect": "NoSchedule"}
    ):
        return ["node(s) were unschedulable"], False
    for taint in nspec.get("taints") or []:
        if taint.get("effect") not in ("NoSchedule", "NoExecute"):
            continue
        if not tolerates(tolerations, taint):
            return [
                f"node(s) had untolerated taint {{{taint.get('key')}: {taint.get('value') or ''}}}"
            ], False
    if not node_affinity_matches(pod, node):
        return ["node(s) didn't match Pod's node affinity/selector"], False
    reasons = state.insufficient(pod)
    return reasons, True


def _histogram(reasons: Iterable[str]) -> str:
    counts: dict[str, int] = {}
    for r in reasons:
        counts[r] = counts.get(r, 0) + 1
    return ", ".join(sorted(f"{n} {r}" for r, n in counts.items()))


def _allocatable(node: Obj) -> dict[str, int]:
    status = node.get("status") or {}
    out: dict[str, int] = {}
    for k, v in (status.get("allocatable") or status.get("capacity") or {}).items():
        with contextlib.suppress(ValueError, TypeError):
            out[k] = _milli(parse_quantity(v))
    return out


class Scheduler:
    """Runs in the API server's event loop; every write goes through the ObjectAPI (so watches,
    resourceVersions and the state file see it as any client's write)."""

    def __init__(self, api: ObjectAPI) -> None:
        self.api = api
        self.store = api.store
        self.recorder = Recorder(api, SCHEDULER_NAME)
        self._wake = asyncio.Event()
        self._waiting = False  # some pod could not be placed: retry when something frees up
        self._task: asyncio.Task[None] | None = None
        # Kept up to date from every pod change (`_on_event`), so that a pass looks only at the
        # pods it may place, not at every pod (at 8000 pods a pass over all of them after each
        # change was most of the API server's time):
        self._pending: dict[tuple[str, str], Obj] = {}  # unbound, ungated pods to place
        self._gated: dict[tuple[str, str], Obj] = {}  # gated pods changed since the last pass
        self._bound: dict[str, dict[str, Obj]] = {}  # node -> uid -> its non-terminal pods
        self._requested: dict[str, dict[str, int]] = {}  # node -> their summed requests
        for pod in self.store.objects.get(POD_STORAGE, {}).values():  # a restart with state
            self._account(None, pod)
        self.store.listeners.append(self._on_event)

    def start(self) -> None:
        self._wake.set()
        self._task = asyncio.create_task(self._run(), name="scheduler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._on_event in self.store.listeners:
            self.store.listeners.remove(self._on_event)

    def _account(self, old: Obj | None, new: Obj | None) -> None:
        """Move one pod's change into the pending set and the per-node totals."""
        if old is not None:
            node = (old.get("spec") or {}).get("nodeName")
            uid = old["metadata"].get("uid", "")
            if node and uid in self._bound.get(node, {}):
                del self._bound[node][uid]
                self._add_requests(node, old, -1)
            key = (old["metadata"].get("namespace", ""), old["metadata"]["name"])
            self._pending.pop(key, None)
            self._gated.pop(key, None)
        if new is None:
            return
        spec = new.get("spec") or {}
        meta = new["metadata"]
        node = spec.get("nodeName")
        if node:
            if not is_terminal(new):
                bound = self._bound.setdefault(node, {})
                if meta.get("uid", "") not in bound:
                    self._add_requests(node, new, 1)
                bound[meta.get("uid", "")] = new
        elif (
            not meta.get("deletionTimestamp")
            and not is_terminal(new)
            and (spec.get("schedulerName") or SCHEDULER_NAME) == SCHEDULER_NAME
        ):
            key = (meta.get("namespace", ""), meta["name"])
            if spec.get("schedulingGates"):
                self._gated[key] = new
            else:
                self._pending[key] = new

    def _add_requests(self, node: str, pod: Obj, sign: int) -> None:
        requested = self._requested.setdefault(node, {})
        for k, v in cached_requests(pod).items():
            requested[k] = requested.get(k, 0) + sign * v
        requested["pods"] = requested.get("pods", 0) + sign * 1000

    def _on_event(self, ev: WatchEvent) -> None:
        if ev.storage == POD_STORAGE:
            self._account(ev.old, None if ev.type == "DELETED" else ev.obj)
            if ev.type == "DELETED":
                forget_requests(ev.obj["metadata"].get("uid", ""))
            spec = ev.obj.get("spec") or {}
            if not spec.get("nodeName"):
                if ev.type != "DELETED":
                    self._wake.set()
            elif self._waiting and (
                ev.type == "DELETED" or (is_terminal(ev.obj) and not is_terminal(ev.old or {}))
            ):
                self._wake.set()
        elif ev.storage == NODE_STORAGE:
            old = ev.old or {}
            if ev.type != "MODIFIED" or (
                old.get("spec") != ev.obj.get("spec")
                or old["metadata"].get("labels") != ev.obj["metadata"].get("labels")
                or (old.get("status") or {}).get("allocatable")
                != (ev.obj.get("status") or {}).get("allocatable")
            ):
                self._wake.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(0)  # let the burst that woke us land first
            try:
                self.run_once()
            except Exception:
                log.exception("scheduling pass failed")

    # ---- one pass -------------------------------------------------------------------------------

    def run_once(self) -> None:
        gated, self._gated = self._gated, {}
        for pod in gated.values():
            self._mark_gated(pod)
        self._waiting = False
        if not self._pending:
            # Nothing to place: the nodes' states are not needed. A burst of gated pods (a gang
            # being created) wakes a pass per pod, and building every node's state each time
            # was a tenth of the API server's CPU in 8000 gated POSTs on 81 nodes.
            return
        states = {}
        for name, node in sorted(self.store.objects.get(NODE_STORAGE, {}).items()):
            states[name[1]] = _NodeState(
                node,
                _allocatable(node),
                dict(self._requested.get(name[1], {})),
                list(self._bound.get(name[1], {}).values()),
            )
        pending = sorted(
            self._pending.values(),
            key=lambda p: (-priority(p), p["metadata"].get("creationTimestamp") or "", p["metadata"]["name"]),
        )
        for pod in pending:
            self._schedule(pod, states)

    def _mark_gated(self, pod: Obj) -> None:
        cond = condition(pod, "PodScheduled")
        if cond and cond.get("reason") == "SchedulingGated":
            return
        self._set_scheduled_condition(pod, "False", "SchedulingGated", GATED_MESSAGE)

    def _schedule(self, pod: Obj, states: dict[str, _NodeState]) -> None:
        results: dict[str, tuple[list[str], bool]] = {}
        feasible: list[_NodeState] = []
        for name, state in sorted(states.items()):
            reasons, resolvable = _filter(pod, state)
            results[name] = (reasons, resolvable)
            if not reasons:
                feasible.append(state)
        if feasible:
            best = max(feasible, key=lambda s: (s.score(pod), -len(s.pods), [-ord(c) for c in s.name]))
            if self._bind(pod, best.name):
                best.add(pod)
            return
        self._waiting = True
        if not states:
            message = "no nodes available to schedule pods"
        else:
            message = (
                f"0/{len(states)} nodes are available: "
                + _histogram(r for reasons, _ in results.values() for r in reasons)
                + "."
            )
            post = self._preempt(pod, states, results)
            if post:
                message += f" {post}."
        self._unschedulable(pod, message)

    def _bind(self, pod: Obj, node: str) -> bool:
        meta = pod["metadata"]
        try:
            bound = bind_pod(self.api, meta["namespace"], meta["name"], node, uid=meta.get("uid"))
        except APIError as e:
            log.info("binding %s/%s to %s failed: %s", meta["namespace"], meta["name"], node, e)
            return False
        # The event once the bound pod has gone out to the watches (the node agent's first).
        asyncio.get_running_loop().call_soon(
            self.recorder.event,
            bound,
            "Normal",
            "Scheduled",
            f"Successfully assigned {meta['namespace']}/{meta['name']} to {node}",
        )
        return True

    def _unschedulable(self, pod: Obj, message: str) -> None:
        cond = condition(pod, "PodScheduled")
        if not (cond and cond.get("reason") == "Unschedulable" and cond.get("message") == message):
            self._set_scheduled_condition(pod, "False", "Unschedulable", message)
        self.recorder.event(pod, "Warning", "FailedScheduling", message)

    def _set_scheduled_condition(self, pod: Obj, status: str, reason: str, message: str) -> None:
        def change(p: Obj) -> None:
            set_condition(
                p,
                {
                    "type": "PodScheduled",
                    "status": status,
                    "lastProbeTime": None,
                    "lastTransitionTime": now_rfc3339(),
                    "reason": reason,
                    "message": message,
                },
            )
            p["status"].setdefault("phase", "Pending")

        self.recorder.update(POD_STORAGE, pod, change, "status")

    # ---- preemption -----------------------------------------------------------------------------

    def _preempt(
        self, pod: Obj, states: dict[str, _NodeState], results: dict[str, tuple[list[str], bool]]
    ) -> str:
        """DefaultPreemption: returns the PostFilter message ("" when victims were chosen)."""
        spec = pod.get("spec") or {}
        if spec.get("preemptionPolicy") == "Never":
            return "preemption: not eligible due to preemptionPolicy=Never."
        nominated = (pod.get("status") or {}).get("nominatedNodeName")
        if nominated in states and any(
            priority(p) < priority(pod) and _terminating_by_preemption(p) for p in states[nominated].pods
        ):
            return "preemption: not eligible due to a terminating pod on the nominated node."
        candidates: list[tuple[tuple[int, int, int, str], str, list[Obj]]] = []
        outcome: list[str] = []
        for name, (_, resolvable) in sorted(results.items()):
            if not resolvable:
                outcome.append(NOT_HELPFUL)
                continue
            victims = self._victims(pod, states[name])
            if victims is None:
                outcome.append(NO_VICTIMS)
                continue
            top = max(priority(v) for v in victims)
            candidates.append(((top, sum(priority(v) for v in victims), len(victims), name), name, victims))
        if not candidates:
            return f"preemption: 0/{len(states)} nodes are available: {_histogram(outcome)}."
        _, node, victims = min(candidates, key=lambda c: c[0])
        for victim in victims:
            self._evict_victim(victim, pod, node)

        def nominate(p: Obj) -> None:
            p.setdefault("status", {})["nominatedNodeName"] = node

        self.recorder.update(POD_STORAGE, pod, nominate, "status")
        return ""

    @staticmethod
    def _victims(pod: Obj, state: _NodeState) -> list[Obj] | None:
        lower = [
            p
            for p in state.pods
            if priority(p) < priority(pod) and not p["metadata"].get("deletionTimestamp")
        ]
        if not lower:
            return None
        trial = _NodeState(state.node, state.allocatable, dict(state.requested), list(state.pods))
        for p in lower:
            trial.add(p, -1)
        if trial.insufficient(pod):
            return None
        # Reprieve as many as possible, the most important first.
        victims = []
        for p in sorted(lower, key=lambda p: -priority(p)):
            trial.add(p)
            if trial.insufficient(pod):
                trial.add(p, -1)
                victims.append(p)
        return victims or None

    def _evict_victim(self, victim: Obj, preemptor: Obj, node: str) -> None:
        def disrupted(p: Obj) -> None:
            set_condition(
                p,
                {
                    "type": "DisruptionTarget",
                    "status": "True",
                    "lastProbeTime": None,
                    "lastTransitionTime": now_rfc3339(),
                    "reason": "PreemptionByScheduler",
                    "message": f"{SCHEDULER_NAME}: preempting to accommodate a higher priority pod",
                },
            )

        self.recorder.update(POD_STORAGE, victim, disrupted, "status")
        info = self.api.registry.for_storage(POD_STORAGE)
        meta = victim["metadata"]
        if info is not None:
            with contextlib.suppress(APIError):
                delete(
                    self.api,
                    info,
                    meta["namespace"],
                    meta["name"],
                    DeleteOptions(precondition_uid=meta["uid"]),
                )
        self.recorder.event(
            victim,
            "Normal",
            "Preempted",
            f"Preempted by pod {preemptor['metadata'].get('uid')} on node {node}",
        )


def bind_pod(api: ObjectAPI, namespace: str, name: str, node: str, *, uid: str | None = None) -> Obj:
    """What the `pods/binding` subresource does: set spec.nodeName and PodScheduled=True in one
    write (the only way nodeName may change; a pod's spec is otherwise immutable)."""
    stored = api.store.peek(POD_STORAGE, namespace, name)
    if stored is None or (uid and stored["metadata"].get("uid") != uid):
        raise APIError(404, "NotFound", f'pods "{name}" not found', {"name": name, "kind": "pods"})
    if (stored.get("spec") or {}).get("nodeName"):
        raise APIError(
            409,
            "Conflict",
            f'Operation cannot be fulfilled on pods/binding "{name}": pod {name} is already assigned '
            f'to node "{stored["spec"]["nodeName"]}"',
            {"name": name, "kind": "pods/binding"},
        )
    if stored["metadata"].get("deletionTimestamp"):
        raise APIError(
            409,
            "Conflict",
            f'Operation cannot be fulfilled on pods/binding "{name}": pod {name} is being deleted, '
            "cannot be assigned to a host",
            {"name": name, "kind": "pods/binding"},
        )
    # New dicts where the binding changes the pod, its metadata included (`put` sets the
    # resourceVersion there): the stored pod is never changed in place, and `put` stores a copy,
    # so a deep copy of the whole pod before it was a second one per binding.
    status = dict(stored.get("status") or {})
    status["conditions"] = [dict(c) for c in status.get("conditions") or []]
    current = {
        **stored,
        "metadata": dict(stored["metadata"]),
        "spec": {**(stored.get("spec") or {}), "nodeName": node},
        "status": status,
    }
    set_condition(
        current,
        {
            "type": "PodScheduled",
            "status": "True",
            "lastProbeTime": None,
            "lastTransitionTime": now_rfc3339(),
        },
    )
    for c in current["status"]["conditions"]:
        if c["type"] == "PodScheduled":
            c.pop("reason", None)
            c.pop("message", None)
    current["status"].pop("nominatedNodeName", None)
    stored = api.put(POD_STORAGE, current)
    info = api.registry.for_storage(POD_STORAGE)
    return api.view(info, stored) if info is not None else stored
