"""What kopf calls. Thin on purpose: gather the observation, call `reconcile`, apply the decision.

Each TrainJob gets one daemon (so one job's passes never overlap and a restarted operator resumes
them); a pod index keeps every job's pods in memory, fed by the same watch that wakes the job's
daemon when one of its pods changes. Children other than pods are not watched (watching Secrets
would need cluster-wide read access to them): the operator remembers which it has created or
found to exist (409), so after a restart it re-asks at most once per job.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import kopf

from trainjob_operator.api import constants
from trainjob_operator.controller import metrics
from trainjob_operator.controller.acting import CHILD_KINDS, KubernetesActions
from trainjob_operator.controller.expecting import PodExpectations, StatusExpectation
from trainjob_operator.controller.waking import JobKey, JobsOnNodes, Wakers
from trainjob_operator.controller.writing import Lane
from trainjob_operator.reconciling import (
    AnnotatePod,
    ChildKind,
    CreateObject,
    CreateRefusal,
    Decision,
    DeleteJob,
    DeletePods,
    EmitEvent,
    Observation,
    OperatorSettings,
    PodObservation,
    RemoveSchedulingGate,
    reconcile,
)

logger = logging.getLogger(__name__)

registry = kopf.OperatorRegistry()

# Without a pending deadline, a job's daemon still looks again this often: a safety net for a
# missed watch event, not the way progress is made.
RESYNC_SECONDS = 60.0
# After an API error, the daemon retries after this many seconds.
ERROR_BACKOFF_SECONDS = 2.0

_JOB_RESOURCE = (constants.GROUP, constants.VERSION, constants.PLURAL)
# Where kubelets keep their heartbeat Leases, one per node, named after it.
_NODE_LEASE_NAMESPACE = "kube-node-lease"
_WORKER_PODS = {constants.LABEL_NAME: kopf.PRESENT}


@dataclass
class Controller:
    """What the handlers share; kept in kopf's memo as `memo.controller`."""

    actions: KubernetesActions
    settings: OperatorSettings = field(default_factory=OperatorSettings)
    wakers: Wakers = field(default_factory=Wakers)
    jobs_on_nodes: JobsOnNodes = field(default_factory=JobsOnNodes)
    # Job uid -> the children known to exist.
    known_children: dict[str, set[ChildKind]] = field(default_factory=dict)
    phases: metrics.PhaseGauge[JobKey] = field(default_factory=metrics.PhaseGauge)
    pods_expected: PodExpectations = field(default_factory=PodExpectations)
    # Job uid -> pod name -> the API server's refusal of its creation, until one succeeds.
    refused_pods: dict[str, dict[str, CreateRefusal]] = field(default_factory=dict)


# The index and event handlers are coroutines, though they never await: kopf runs a plain
# function in a worker thread, and at thousands of pod events a thread hop per event cost more
# than the handler itself.
@kopf.index("pods", labels=_WORKER_PODS, registry=registry)
async def pods_by_job(
    namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any
) -> dict[JobKey, dict[str, Any]]:
    """Each job's pods, as much of each as a pass reads (`PodObservation.fields_read`)."""
    return {(namespace or "", labels[constants.LABEL_NAME]): PodObservation.fields_read(body)}


async def nodes_by_name(name: str, body: kopf.Body, **_: Any) -> dict[str, dict[str, Any]]:
    """Nodes by name, so a job's pass sees whether its pods' nodes are Ready (lost nodes).
    Registered by `watch_nodes` only where the operator may read Nodes (a cluster-wide install)."""
    return {name: dict(body)}


async def wake_jobs_on_node_event(name: str, memo: Any, **_: Any) -> None:
    """A node changed (Ready, Unknown...): wake the jobs with a pod on it."""
    controller: Controller = memo.controller
    for key in controller.jobs_on_nodes.jobs_on(name):
        controller.wakers.wake(key)


async def node_leases_by_name(name: str, body: kopf.Body, **_: Any) -> dict[str, dict[str, Any]]:
    """The nodes' heartbeat Leases by node name, so a failure that would end a job waits until
    its nodes prove alive (see `reconcile._held_for_node_leases`). Only the spec is kept."""
    return {name: {"spec": dict(body.get("spec") or {})}}


def _is_node_lease(namespace: str | None, **_: Any) -> bool:
    return namespace == _NODE_LEASE_NAMESPACE


def watch_nodes() -> None:
    """Register the node and node-Lease indices and the node wake-ups (before the operator
    starts). Lease renewals wake nothing: a job waiting on them polls (they come every 10 s)."""
    kopf.index("nodes", registry=registry, id="nodes_by_name")(nodes_by_name)
    kopf.on.event("nodes", registry=registry, id="wake_jobs_on_node_event")(wake_jobs_on_node_event)
    kopf.index(
        "coordination.k8s.io",
        "v1",
        "leases",
        registry=registry,
        id="node_leases_by_name",
        when=_is_node_lease,
    )(node_leases_by_name)


@kopf.on.event("pods", labels=_WORKER_PODS, registry=registry)
async def wake_on_pod_event(
    namespace: str | None,
    name: str | None,
    labels: kopf.Labels,
    spec: kopf.Spec,
    memo: Any,
    **kwargs: Any,
) -> None:
    """A pod changed: wake its job, and note the node it is bound to (`wake_jobs_on_node_event`)."""
    controller: Controller = memo.controller
    key = (namespace or "", labels[constants.LABEL_NAME])
    node = spec.get("nodeName")
    gone = kwargs.get("type") == "DELETED"  # kopf's event type (None while listing)
    controller.jobs_on_nodes.pod_event(key[0], name or "", key, str(node) if node else None, gone)
    controller.wakers.wake(key)


@kopf.on.event(*_JOB_RESOURCE, registry=registry)
async def wake_on_job_event(namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    memo.controller.wakers.wake((namespace or "", name))


@kopf.daemon(*_JOB_RESOURCE, registry=registry, cancellation_timeout=1.0)
async def run_trainjob(
    namespace: str | None,
    name: str,
    uid: str,
    body: kopf.Body,
    stopped: kopf.DaemonStopped,
    memo: Any,
    **kwargs: Any,
) -> None:
    controller: Controller = memo.controller
    pods_by_job: kopf.Index[JobKey, dict[str, Any]] = kwargs["pods_by_job"]
    namespace = namespace or ""
    key = (namespace, name)
    # Our own status patches reach `body` only with their watch event (see StatusExpectation).
    expectation = StatusExpectation()
    try:
        while not stopped:
            live = dict(body)
            freshest = expectation.view(live)
            if freshest is None:
                current = await controller.actions.get_job(namespace, name)
                if current is None:
                    return  # deleted: kopf stops this daemon
                expectation.read(live, current)
                freshest = current
            pods = controller.pods_expected.observed(uid, pods_by_job.get(key, []))
            every_node = bool((freshest.get("spec") or {}).get("elastic"))
            nodes = _nodes_of(pods, kwargs, every_node)
            observed = Observation.from_objects(
                pods,
                controller.known_children.get(uid, set()),
                nodes,
                _node_leases(nodes, kwargs),
                controller.refused_pods.get(uid, {}).values(),
            )
            decision = reconcile(freshest, observed, datetime.now(UTC), controller.settings)
            try:
                with metrics.RECONCILE_SECONDS.time():
                    patched = await _apply(controller, namespace, name, uid, body, decision)
            except Exception:
                metrics.RECONCILES.labels("error").inc()
                logger.exception("reconcile of %s/%s failed; retrying", namespace, name)
                await controller.wakers.wait(key, ERROR_BACKOFF_SECONDS)
                continue
            metrics.RECONCILES.labels("ok").inc()
            if patched is not None:
                expectation.patched(live, patched)
                freshest = patched
            controller.phases.record(key, (freshest.get("status") or {}).get("phase"))
            if decision.of_type(DeleteJob):
                return
            wait = decision.requeue_after if decision.requeue_after is not None else RESYNC_SECONDS
            await controller.wakers.wait(key, wait)
    finally:
        controller.wakers.forget(key)
        controller.phases.record(key, None)
        controller.pods_expected.drop(uid)
        controller.known_children.pop(uid, None)
        controller.refused_pods.pop(uid, None)


def _nodes_of(
    pods: list[dict[str, Any]], indices: dict[str, Any], every_node: bool = False
) -> list[dict[str, Any]]:
    """The Nodes the pods are bound to, where nodes are watched; every Node for an elastic gang,
    whose size is judged by what the cluster has room for (`reconciling.elastic`)."""
    nodes: kopf.Index[str, dict[str, Any]] | None = indices.get("nodes_by_name")
    if nodes is None:
        return []
    if every_node:
        return [node for name in sorted(nodes) for node in nodes.get(name, [])]
    names = {str(name) for pod in pods if (name := (pod.get("spec") or {}).get("nodeName"))}
    return [node for name in sorted(names) for node in nodes.get(name, [])]


def _node_leases(nodes: list[dict[str, Any]], indices: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The Leases of these nodes by node name, where Leases are watched (empty otherwise)."""
    leases: kopf.Index[str, dict[str, Any]] | None = indices.get("node_leases_by_name")
    if leases is None:
        return {}
    names = {str((node.get("metadata") or {}).get("name")) for node in nodes}
    return {name: lease for name in sorted(names) for lease in leases.get(name, [])}


async def _apply(
    controller: Controller, namespace: str, name: str, uid: str, body: kopf.Body, decision: Decision
) -> dict[str, Any] | None:
    """Apply the decision: status first (it records what the actions are about to do), then the
    actions in order. Returns the job as patched, or None if nothing was patched."""
    patched = None
    if decision.status_patch:
        # A pass that creates records first what it creates: that patch goes out with creations.
        lane = Lane.CREATE if decision.of_type(CreateObject) else Lane.PROGRESS
        patched = await controller.actions.patch_status(namespace, name, decision.status_patch, lane)
    for action in decision.actions:
        if isinstance(action, CreateObject):
            if action.kind == "Pod":
                refusal = await controller.actions.create_pod(namespace, action.manifest)
                if refusal is not None:
                    controller.refused_pods.setdefault(uid, {})[action.name] = refusal
                    continue
                controller.refused_pods.get(uid, {}).pop(action.name, None)
            else:
                await controller.actions.create(namespace, action.manifest)
            child = CHILD_KINDS.get(action.kind)
            if child is not None:
                controller.known_children.setdefault(uid, set()).add(child)
            elif action.kind == "Pod":
                controller.pods_expected.expect(uid, action.manifest)
        elif isinstance(action, DeletePods):
            for pod in action.names:
                await controller.actions.delete_pod(namespace, pod, action.grace_period_seconds)
                controller.pods_expected.forget(uid, pod)
        elif isinstance(action, RemoveSchedulingGate):
            rv = await controller.actions.remove_scheduling_gate(namespace, action.pod, action.gates)
            if rv is not None:
                controller.pods_expected.ungated(uid, action.pod, constants.GANG_SCHEDULING_GATE, rv)
        elif isinstance(action, AnnotatePod):
            if await controller.actions.annotate_pod(namespace, action.pod, action.key, action.value):
                controller.pods_expected.annotated(uid, action.pod, action.key, action.value)
        elif isinstance(action, DeleteJob):
            logger.info("deleting %s/%s: %s", namespace, name, action.reason)
            await controller.actions.delete_job(namespace, name)
        elif isinstance(action, EmitEvent):
            kopf.event(body, type=action.type.value, reason=action.reason, message=action.message)
    return patched
