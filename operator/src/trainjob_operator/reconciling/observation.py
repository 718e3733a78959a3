"""What the reconcile function sees of a TrainJob's children: plain values, parsed from API objects.

The handler lists the job's pods (label `trainjob.dev/name=<job>`) and checks which of the other
children exist, then calls `Observation.from_objects`. Everything the lifecycle decides on a
pod (running, succeeded, how it failed) is derived here, in one place.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
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
class ContainerObservation:
    name: str
    state: ContainerState
    exit_code: int | None = None
    reason: str | None = None
    ready: bool = False

    @classmethod
    def from_status(cls, status: Mapping[str, Any]) -> ContainerObservation:
        state = status.get("state") or {}
        terminated = state.get("terminated")
        if terminated is not None:
            return cls(
                name=str(status.get("name", "")),
                state=ContainerState.TERMINATED,
                exit_code=terminated.get("exitCode"),
                reason=terminated.get("reason"),
                ready=False,
            )
        if state.get("running") is not None:
            return cls(
                name=str(status.get("name", "")),
                state=ContainerState.RUNNING,
                ready=bool(status.get("ready")),
            )
        waiting = state.get("waiting") or {}
        return cls(
            name=str(status.get("name", "")), state=ContainerState.WAITING, reason=waiting.get("reason")
        )


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
        conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
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
                ContainerObservation.from_status(s) for s in status.get("containerStatuses") or []
            ),
        )


@dataclass(frozen=True)
class Observation:
    """The job's children as last seen: every pod of any attempt, and which other children exist."""

    pods: tuple[PodObservation, ...] = ()
    existing: frozenset[ChildKind] = frozenset()

    @classmethod
    def from_objects(cls, pods: Iterable[Mapping[str, Any]], existing: Iterable[ChildKind]) -> Observation:
        parsed = (PodObservation.from_pod(pod) for pod in pods)
        return cls(
            pods=tuple(sorted((p for p in parsed if p is not None), key=lambda p: (p.attempt, p.rank))),
            existing=frozenset(existing),
        )

    def pods_of(self, attempt: int) -> dict[int, PodObservation]:
        """The pods of one attempt by rank."""
        return {pod.rank: pod for pod in self.pods if pod.attempt == attempt}

    def pods_not_of(self, attempt: int) -> tuple[PodObservation, ...]:
        return tuple(pod for pod in self.pods if pod.attempt != attempt)
