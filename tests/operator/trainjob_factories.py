"""Builders of TrainJob and pod dicts as the API server returns them, and a tiny simulated loop
that applies decisions, for the operator's unit tests."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

from trainjob_operator.api import constants
from trainjob_operator.reconciling import (
    AnnotatePod,
    ChildKind,
    CreateObject,
    CreateRefusal,
    Decision,
    DeleteJob,
    DeletePods,
    Observation,
    OperatorSettings,
    reconcile,
)

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
SETTINGS = OperatorSettings(coordinator_image="example/coordinator:test", token_factory=lambda: "test-token")
ALL_CHILDREN = frozenset(ChildKind)


def later(seconds: float) -> datetime:
    return NOW + timedelta(seconds=seconds)


def timestamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def spec(**overrides: Any) -> dict[str, Any]:
    """A valid spec (wire form); keyword overrides replace top-level fields."""
    base: dict[str, Any] = {
        "workers": 2,
        "template": {
            "metadata": {"labels": {"team": "ml"}},
            "spec": {
                "containers": [
                    {
                        "name": "trainer",
                        "image": "example/digits:1",
                        "command": ["python", "-m", "examples.digits.train"],
                    }
                ]
            },
        },
        "config": {"epochs": 2, "lr": 0.1},
        "storage": {
            "uri": "s3://trainjob/checkpoints",
            "endpoint": "http://s3.example:8333",
            "credentialsSecret": "s3-creds",
        },
        "checkpoints": {"numToKeep": 3, "scoreAttribute": "val_loss", "scoreOrder": "min"},
        "failurePolicy": {"maxRestarts": 2, "restartPolicy": "OnFailure", "backoffSeconds": 1},
        # Disruptions end the attempt at once unless a test asks for a notice (test_reconcile_notices does).
        "preemption": {"gracePeriodSeconds": 0},
    }
    base.update(overrides)
    return base


def job(
    *,
    name: str = "digits",
    namespace: str = "ml",
    generation: int = 1,
    status: dict[str, Any] | None = None,
    deleting: bool = False,
    **spec_overrides: Any,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "uid": f"uid-{name}",
        "generation": generation,
        "creationTimestamp": timestamp(NOW),
    }
    if deleting:
        metadata["deletionTimestamp"] = timestamp(NOW)
    obj: dict[str, Any] = {
        "apiVersion": constants.API_VERSION,
        "kind": constants.KIND,
        "metadata": metadata,
        "spec": spec(**spec_overrides),
    }
    if status is not None:
        obj["status"] = status
    return obj


def pod(
    attempt: int,
    rank: int,
    *,
    name: str = "digits",
    phase: str = "Running",
    exit_code: int | None = None,
    reason: str | None = None,
    ready: bool = True,
    deleting: bool = False,
    pod_reason: str | None = None,
    waiting: tuple[str, str] | None = None,
    unscheduled: tuple[str, str, datetime] | None = None,
    node: str | None = None,
    disruption: tuple[str, str] | None = None,
    image: str = "example/digits:1",
    message: str | None = None,
    finished_at: datetime | None = None,
) -> dict[str, Any]:
    """A worker pod; `exit_code` makes its trainer container terminated with it (and `message` its
    termination message); `waiting` is the trainer's (reason, message) as the kubelet sets it,
    `unscheduled` PodScheduled=False's (reason, message, since), `disruption` DisruptionTarget=True's
    (reason, message)."""
    if exit_code is not None:
        trainer_state: dict[str, Any] = {"terminated": {"exitCode": exit_code, "reason": reason or "Error"}}
        if message is not None:
            trainer_state["terminated"]["message"] = message
        if finished_at is not None:
            trainer_state["terminated"]["finishedAt"] = timestamp(finished_at)
        ready = False
    elif phase == "Running":
        trainer_state = {"running": {"startedAt": timestamp(NOW)}}
    elif waiting is not None:
        trainer_state = {"waiting": {"reason": waiting[0], "message": waiting[1]}}
    else:
        trainer_state = {"waiting": {"reason": "ContainerCreating"}}
    metadata: dict[str, Any] = {
        "name": f"{name}-{attempt}-{rank}",
        "namespace": "ml",
        "labels": {
            constants.LABEL_NAME: name,
            constants.LABEL_ATTEMPT: str(attempt),
            constants.LABEL_RANK: str(rank),
        },
    }
    if deleting:
        metadata["deletionTimestamp"] = timestamp(NOW)
    conditions: list[dict[str, Any]] = [{"type": "Ready", "status": "True" if ready else "False"}]
    if unscheduled is not None:
        conditions.append(
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": unscheduled[0],
                "message": unscheduled[1],
                "lastTransitionTime": timestamp(unscheduled[2]),
            }
        )
    if disruption is not None:
        conditions.append(
            {"type": "DisruptionTarget", "status": "True", "reason": disruption[0], "message": disruption[1]}
        )
    status: dict[str, Any] = {
        "phase": phase,
        "conditions": conditions,
        "containerStatuses": (
            [] if unscheduled else [{"name": "trainer", "ready": ready, "state": trainer_state}]
        ),
    }
    if pod_reason is not None:
        status["reason"] = pod_reason
    spec: dict[str, Any] = {"containers": [{"name": "trainer", "image": image}]}
    if node is not None:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec, "status": status}


def node(name: str, ready: str = "True", since: datetime = NOW) -> dict[str, Any]:
    """A Node with its Ready condition (True, False or Unknown) since `since`."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name},
        "status": {
            "conditions": [{"type": "Ready", "status": ready, "lastTransitionTime": timestamp(since)}]
        },
    }


def lease(name: str, renewed: datetime, duration_seconds: int = 40) -> dict[str, Any]:
    """A node's heartbeat Lease in kube-node-lease, last renewed at `renewed` (microseconds, as
    the kubelet writes renewTime)."""
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name, "namespace": "kube-node-lease"},
        "spec": {
            "holderIdentity": name,
            "leaseDurationSeconds": duration_seconds,
            "renewTime": renewed.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        },
    }


def observe(
    *pods: dict[str, Any],
    existing: frozenset[ChildKind] = ALL_CHILDREN,
    nodes: tuple[dict[str, Any], ...] = (),
    leases: dict[str, dict[str, Any]] | None = None,
    refused: tuple[CreateRefusal, ...] = (),
) -> Observation:
    return Observation.from_objects(pods, existing, nodes, leases, refused)


def apply_status(obj: dict[str, Any], decision: Decision) -> dict[str, Any]:
    """The job after the decision's status merge patch (the API server's behaviour)."""
    updated = copy.deepcopy(obj)
    status = updated.setdefault("status", {})
    for key, value in decision.status_patch.items():
        if value is None:
            status.pop(key, None)
        else:
            status[key] = value
    return updated


class Cluster:
    """A minimal simulated cluster for multi-step scenarios: applies decisions to the job and to
    a set of pods (creation makes a Pending pod; deletion marks it terminating), and lets the test
    move pods along."""

    def __init__(self, obj: dict[str, Any]) -> None:
        self.job: dict[str, Any] | None = obj
        self.pods: dict[str, dict[str, Any]] = {}
        self.existing: set[ChildKind] = set()
        self.created: list[dict[str, Any]] = []
        self.nodes: dict[str, dict[str, Any]] = {}
        # Node Leases by node name (where the operator watches them: a cluster-wide install).
        self.leases: dict[str, dict[str, Any]] = {}
        self.decisions: list[Decision] = []
        # (code, reason, message) the API server answers to every pod creation, while set; the
        # refusals the operator recorded, by pod name, as its handler keeps them.
        self.refusing: tuple[int, str, str] | None = None
        self.refused: dict[str, CreateRefusal] = {}

    def reconcile(self, now: datetime = NOW) -> Decision:
        assert self.job is not None
        observed = observe(
            *self.pods.values(),
            existing=frozenset(self.existing),
            nodes=tuple(self.nodes.values()),
            leases=self.leases,
            refused=tuple(self.refused.values()),
        )
        decision = reconcile(self.job, observed, now, SETTINGS)
        self.decisions.append(decision)
        self.job = apply_status(self.job, decision)
        for action in decision.actions:
            if isinstance(action, CreateObject):
                self.created.append(action.manifest)
                if action.kind == "Pod" and self.refusing is not None:
                    self.refused[action.name] = CreateRefusal(action.name, *self.refusing)
                elif action.kind == "Pod":
                    self.refused.pop(action.name, None)
                    labels = action.manifest["metadata"]["labels"]
                    attempt, rank = int(labels[constants.LABEL_ATTEMPT]), int(labels[constants.LABEL_RANK])
                    assert action.name not in self.pods, f"{action.name} created twice"
                    self.pods[action.name] = pod(attempt, rank, phase="Pending", ready=False)
                    if action.manifest["metadata"].get("annotations"):
                        self.pods[action.name]["metadata"]["annotations"] = dict(
                            action.manifest["metadata"]["annotations"]
                        )
                else:
                    kind = ChildKind(action.kind)
                    assert kind not in self.existing, f"{kind} created twice"
                    self.existing.add(kind)
            elif isinstance(action, DeletePods):
                for pod_name in action.names:
                    if action.grace_period_seconds == 0:
                        self.pods.pop(pod_name, None)  # a force deletion removes it at once
                    else:
                        self.pods[pod_name]["metadata"]["deletionTimestamp"] = timestamp(now)
            elif isinstance(action, AnnotatePod):
                self.pods[action.pod]["metadata"].setdefault("annotations", {})[action.key] = action.value
            elif isinstance(action, DeleteJob):
                self.job = None
        return decision

    @property
    def status(self) -> dict[str, Any]:
        assert self.job is not None
        return dict(self.job.get("status") or {})

    def set_pod(self, attempt: int, rank: int, **state: Any) -> None:
        name = f"digits-{attempt}-{rank}"
        deleting = "deletionTimestamp" in self.pods[name]["metadata"]
        annotations = self.pods[name]["metadata"].get("annotations")
        self.pods[name] = pod(attempt, rank, deleting=deleting, **state)
        if annotations:
            self.pods[name]["metadata"]["annotations"] = annotations

    def run_all(self, attempt: int) -> None:
        for obj in list(self.pods.values()):
            if obj["metadata"]["labels"][constants.LABEL_ATTEMPT] == str(attempt):
                self.set_pod(attempt, int(obj["metadata"]["labels"][constants.LABEL_RANK]))

    def finish_terminating(self) -> None:
        """The kubelet and API server finish deleting every terminating pod."""
        self.pods = {n: p for n, p in self.pods.items() if "deletionTimestamp" not in p["metadata"]}

    def update_spec(self, **changes: Any) -> None:
        assert self.job is not None
        self.job["spec"].update(changes)
        self.job["metadata"]["generation"] += 1
