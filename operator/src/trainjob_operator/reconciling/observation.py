"""What the reconcile function sees of a TrainJob's children: plain values, parsed from API objects.

The handler lists the job's pods (label `trainjob.dev/name=<job>`) and checks which of the other
children exist, then calls `Observation.from_objects`. Everything the lifecycle decides on a
pod (running, succeeded, how it failed) is derived here, in one place.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from trainjob_operator.api import constants


class ChildKind(enum.StrEnum):
    """The children other than pods; each exists once per job."""

    TOKEN_SECRET = "Secret"  # noqa: S105 - a kind
    SERVICE_ACCOUNT = "ServiceAccount"
    ROLE = "Role"
    ROLE_BINDING = "RoleBinding"
    SERVICE = "Service"


class ContainerState(enum.StrEnum):
    WAITING = "waiting"
    RUNNING = "running"
    TERMINATED = "terminated"


@dataclass(frozen=True)
class CreateRefusal:
    """The API server refused to create a pod (a 4xx other than 409 Conflict and 429): what it
    answered. The handler records it when the POST fails and drops it when one succeeds; without
    it a gang whose pods a quota, an admission plugin or validation refuses would look merely
    Pending."""

    pod: str
    code: int  # the HTTP status
    reason: str  # the Status's reason: Forbidden, Invalid, ...
    message: str  # the Status's message, as kubectl prints it

    @property
    def permanent(self) -> bool:
        """422 Invalid: the API server refuses this pod template every time, and the template
        is fixed once the job has started. Anything else (a quota, a missing PriorityClass, a
        policy) may change without the job changing."""
        return self.code == 422


@dataclass(frozen=True)
class ContainerObservation:
    name: str
    state: ContainerState
    exit_code: int | None = None
    reason: str | None = None
    ready: bool = False
    # As the kubelet set it: a waiting container's (the image, the missing key...), a terminated
    # one's termination message (with FallbackToLogsOnError, the end of its log).
    message: str | None = None
    image: str | None = None
    # When a terminated container ended (the kubelet's clock, whole seconds).
    finished_at: datetime | None = None

    @classmethod
    def from_status(cls, status: Mapping[str, Any], image: str | None = None) -> ContainerObservation:
        state = status.get("state") or {}
        terminated = state.get("terminated")
        name = str(status.get("name", ""))
        image = image or status.get("image")
        if terminated is not None:
            return cls(
                name=name,
                state=ContainerState.TERMINATED,
                exit_code=terminated.get("exitCode"),
                reason=terminated.get("reason"),
                ready=False,
                message=terminated.get("message"),
                image=image,
                finished_at=parse_time(terminated.get("finishedAt")),
            )
        if state.get("running") is not None:
            return cls(name=name, state=ContainerState.RUNNING, ready=bool(status.get("ready")), image=image)
        waiting = state.get("waiting") or {}
        return cls(
            name=name,
            state=ContainerState.WAITING,
            reason=waiting.get("reason"),
            message=waiting.get("message"),
            image=image,
        )


@dataclass(frozen=True)
class PodCondition:
    """A pod condition the operator acts on (PodScheduled=False, DisruptionTarget=True)."""

    reason: str
    message: str
    since: datetime | None = None

    @classmethod
    def of(cls, pod_status: Mapping[str, Any], kind: str, status: str) -> PodCondition | None:
        for condition in pod_status.get("conditions") or []:
            if condition.get("type") == kind and condition.get("status") == status:
                return cls(
                    str(condition.get("reason") or kind),
                    str(condition.get("message") or ""),
                    parse_time(condition.get("lastTransitionTime")),
                )
        return None


@dataclass(frozen=True)
class NodeLease:
    """A node's heartbeat: the Lease the kubelet renews. A node alive after a moment renews it
    after that moment; one that has not within its duration is what the node lifecycle
    controller would mark Unknown (after its own grace)."""

    renewed: datetime
    duration_seconds: int

    @classmethod
    def from_lease(cls, lease: Mapping[str, Any]) -> NodeLease | None:
        """None for a Lease never renewed (or with no renewTime the operator can read)."""
        spec = lease.get("spec") or {}
        renewed = parse_time(spec.get("renewTime"))
        if renewed is None:
            return None
        duration = spec.get("leaseDurationSeconds")
        return cls(renewed, duration if isinstance(duration, int) and duration > 0 else DEFAULT_LEASE_SECONDS)


# The kubelet's default leaseDurationSeconds for its node Lease (nodeLeaseDurationSeconds).
DEFAULT_LEASE_SECONDS = 40


class NodeReadiness(enum.StrEnum):
    """A node's Ready condition, as the node lifecycle controller sets it."""

    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


@dataclass(frozen=True)
class NodeObservation:
    """What the operator needs of a Node: whether it is Ready and since when that holds."""

    name: str
    ready: NodeReadiness = NodeReadiness.TRUE
    since: datetime | None = None
    # The kubelet's last heartbeat on the Ready condition (kept when the node turns Unknown).
    last_heartbeat: datetime | None = None
    # What an elastic gang's size is judged by (`elastic.workers_that_fit`): the scheduler's inputs.
    allocatable: Mapping[str, str] = field(default_factory=dict)
    unschedulable: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)
    taints: tuple[Mapping[str, Any], ...] = ()
    # The node's heartbeat Lease in kube-node-lease (renewed every 10 s by a kubelet), where the
    # operator watches them: its last renewTime and leaseDurationSeconds. None where not seen.
    lease: NodeLease | None = None

    @classmethod
    def from_node(cls, node: Mapping[str, Any]) -> NodeObservation:
        metadata = node.get("metadata") or {}
        spec = node.get("spec") or {}
        status = node.get("status") or {}
        scheduling: dict[str, Any] = {
            "allocatable": {
                str(k): str(v) for k, v in (status.get("allocatable") or status.get("capacity") or {}).items()
            },
            "unschedulable": bool(spec.get("unschedulable")),
            "labels": {str(k): str(v) for k, v in (metadata.get("labels") or {}).items()},
            "taints": tuple(t for t in spec.get("taints") or [] if isinstance(t, dict)),
        }
        ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
        if ready is None:
            return cls(str(metadata.get("name", "")), NodeReadiness.UNKNOWN, **scheduling)
        try:
            readiness = NodeReadiness(str(ready.get("status")))
        except ValueError:
            readiness = NodeReadiness.UNKNOWN
        return cls(
            str(metadata.get("name", "")),
            readiness,
            parse_time(ready.get("lastTransitionTime")),
            parse_time(ready.get("lastHeartbeatTime")),
            **scheduling,
        )


def parse_time(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class PodOutcome(enum.StrEnum):
    """How far a worker pod has got, judged by its trainer container first, then the pod phase."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True)
class PodObservation:
    name: str
    attempt: int
    rank: int
    phase: str = "Pending"
    reason: str | None = None
    message: str | None = None
    ready: bool = False
    deleting: bool = False
    containers: tuple[ContainerObservation, ...] = ()
    # Init and sidecar containers, for the reasons a pod waits (a missing Secret key...).
    init_containers: tuple[ContainerObservation, ...] = ()
    node: str | None = None
    # PodScheduled=False: the scheduler's reason (Unschedulable, SchedulingGated) and message.
    unscheduled: PodCondition | None = None
    # DisruptionTarget=True: the pod is being evicted or preempted (not the program's failure).
    disruption: PodCondition | None = None
    scheduling_gates: tuple[str, ...] = ()
    # The pod's trainjob.dev/last-commit-time annotation, as written (None: not there).
    last_commit_time: str | None = None

    @property
    def waiting(self) -> tuple[ContainerObservation, ...]:
        """Containers waiting with a reason the kubelet gave, init containers first."""
        return tuple(
            c
            for c in (*self.init_containers, *self.containers)
            if c.state is ContainerState.WAITING and c.reason
        )

    @property
    def trainer(self) -> ContainerObservation | None:
        return next((c for c in self.containers if c.name == constants.TRAINER_CONTAINER), None)

    @property
    def outcome(self) -> PodOutcome:
        trainer = self.trainer
        if trainer is not None and trainer.state is ContainerState.TERMINATED:
            return PodOutcome.SUCCEEDED if trainer.exit_code == 0 else PodOutcome.FAILED
        if self.phase == "Succeeded":
            return PodOutcome.SUCCEEDED
        if self.phase == "Failed":
            return PodOutcome.FAILED
        if self.phase == "Running":
            return PodOutcome.RUNNING
        return PodOutcome.PENDING

    @property
    def exit_code(self) -> int | None:
        """The trainer's exit code once it terminated; None when the pod failed without one (evicted...)."""
        trainer = self.trainer
        return (
            trainer.exit_code if trainer is not None and trainer.state is ContainerState.TERMINATED else None
        )

    @property
    def failure_reason(self) -> str:
        trainer = self.trainer
        if trainer is not None and trainer.state is ContainerState.TERMINATED and trainer.reason:
            return trainer.reason
        return self.reason or "PodFailed"

    @property
    def failure_message(self) -> str | None:
        """The terminated trainer's termination message (the end of its log, see children.py)."""
        trainer = self.trainer
        return trainer.message if trainer is not None and trainer.state is ContainerState.TERMINATED else None

    @property
    def finished_at(self) -> datetime | None:
        """When the trainer terminated, as the kubelet recorded it; None while it has not."""
        trainer = self.trainer
        return (
            trainer.finished_at
            if trainer is not None and trainer.state is ContainerState.TERMINATED
            else None
        )

    @staticmethod
    def fields_read(pod: Mapping[str, Any]) -> dict[str, Any]:
        """The parts of a pod that `from_pod` reads, and the resourceVersion the operator's
        expectations compare: what the operator keeps of each watched pod. Without the rest (the
        managedFields, about half of a pod's JSON; env, volumes, mounts) each indexed pod holds a
        fraction of the objects: the operator's peak RSS at 300 jobs x 8 pods fell from 265 to
        186 MiB, and the garbage collector has that much less to walk.
        `from_pod(fields_read(p)) == from_pod(p)` for every pod (tests/operator)."""
        metadata = pod.get("metadata") or {}
        spec = pod.get("spec") or {}
        kept_metadata = {
            key: metadata[key]
            for key in (
                "name",
                "namespace",
                "uid",
                "resourceVersion",
                "labels",
                "annotations",
                "deletionTimestamp",
            )
            if key in metadata
        }
        kept_spec: dict[str, Any] = {key: spec[key] for key in ("nodeName", "schedulingGates") if key in spec}
        for key in ("initContainers", "containers"):
            if key in spec:
                kept_spec[key] = [{"name": c.get("name"), "image": c.get("image")} for c in spec[key] or []]
        kept: dict[str, Any] = {"metadata": kept_metadata, "spec": kept_spec}
        if "status" in pod:
            kept["status"] = pod["status"]
        return kept

    @classmethod
    def from_pod(cls, pod: Mapping[str, Any]) -> PodObservation | None:
        """Parse a pod as the API server returns it; None for a pod without our attempt/rank labels."""
        metadata = pod.get("metadata") or {}
        labels = metadata.get("labels") or {}
        try:
            attempt = int(labels[constants.LABEL_ATTEMPT])
            rank = int(labels[constants.LABEL_RANK])
        except (KeyError, TypeError, ValueError):
            return None
        status = pod.get("status") or {}
        spec = pod.get("spec") or {}
        conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
        images = {
            str(c.get("name")): str(c.get("image") or "")
            for c in (*(spec.get("initContainers") or []), *(spec.get("containers") or []))
        }
        return cls(
            name=str(metadata.get("name", "")),
            attempt=attempt,
            rank=rank,
            phase=str(status.get("phase") or "Pending"),
            reason=status.get("reason"),
            message=status.get("message"),
            ready=conditions.get("Ready") == "True",
            deleting=metadata.get("deletionTimestamp") is not None,
            containers=tuple(
                ContainerObservation.from_status(s, images.get(str(s.get("name"))))
                for s in status.get("containerStatuses") or []
            ),
            init_containers=tuple(
                ContainerObservation.from_status(s, images.get(str(s.get("name"))))
                for s in status.get("initContainerStatuses") or []
            ),
            node=spec.get("nodeName") or None,
            unscheduled=PodCondition.of(status, "PodScheduled", "False"),
            disruption=PodCondition.of(status, "DisruptionTarget", "True"),
            scheduling_gates=tuple(str(g.get("name")) for g in spec.get("schedulingGates") or []),
            last_commit_time=(metadata.get("annotations") or {}).get(constants.ANNOTATION_LAST_COMMIT_TIME),
        )


@dataclass(frozen=True)
class Observation:
    """The job's children as last seen: every pod of any attempt, and which other children exist."""

    pods: tuple[PodObservation, ...] = ()
    existing: frozenset[ChildKind] = frozenset()
    # The nodes the pods run on, where the operator watches nodes (a cluster-wide install); empty
    # otherwise, and then a lost node is noticed by its pods' DisruptionTarget only.
    nodes: Mapping[str, NodeObservation] = field(default_factory=dict)
    # Pods the API server refused to create, by pod name (until a creation succeeds).
    refused: Mapping[str, CreateRefusal] = field(default_factory=dict)

    @classmethod
    def from_objects(
        cls,
        pods: Iterable[Mapping[str, Any]],
        existing: Iterable[ChildKind],
        nodes: Iterable[Mapping[str, Any]] = (),
        leases: Mapping[str, Mapping[str, Any]] | None = None,
        refused: Iterable[CreateRefusal] = (),
    ) -> Observation:
        """`leases`: the nodes' Leases in kube-node-lease by node name, where watched."""
        parsed = (PodObservation.from_pod(pod) for pod in pods)
        observed_nodes = (NodeObservation.from_node(node) for node in nodes)
        if leases:
            observed_nodes = (
                replace(node, lease=NodeLease.from_lease(leases[node.name])) if node.name in leases else node
                for node in observed_nodes
            )
        return cls(
            pods=tuple(sorted((p for p in parsed if p is not None), key=lambda p: (p.attempt, p.rank))),
            existing=frozenset(existing),
            nodes={node.name: node for node in observed_nodes},
            refused={refusal.pod: refusal for refusal in refused},
        )

    def node_of(self, pod: PodObservation) -> NodeObservation | None:
        return self.nodes.get(pod.node) if pod.node else None

    def pods_of(self, attempt: int) -> dict[int, PodObservation]:
        """The pods of one attempt by rank."""
        return {pod.rank: pod for pod in self.pods if pod.attempt == attempt}

    def pods_not_of(self, attempt: int) -> tuple[PodObservation, ...]:
        return tuple(pod for pod in self.pods if pod.attempt != attempt)
