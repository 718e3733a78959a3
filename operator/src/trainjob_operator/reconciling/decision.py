"""The output of the reconcile function: a status patch, typed actions for the handler to apply,
and when to look again."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, TypeVar

ActionT = TypeVar("ActionT")


class EventType(enum.StrEnum):
    NORMAL = "Normal"
    WARNING = "Warning"


@dataclass(frozen=True)
class CreateObject:
    """Create this manifest (it carries its ownerReference). Asked for only when the object was not
    observed; a 409 AlreadyExists from a stale observation means it is done."""

    manifest: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.manifest["kind"])

    @property
    def name(self) -> str:
        return str(self.manifest["metadata"]["name"])


@dataclass(frozen=True)
class DeletePods:
    """Delete these pods of one attempt: SIGTERM lets the SDK flush, then after the grace period
    (None: the pod's own) SIGKILL. A 404 means it is done."""

    attempt: int
    names: tuple[str, ...]
    grace_period_seconds: int | None = None


@dataclass(frozen=True)
class RemoveSchedulingGate:
    """Remove the gang's scheduling gate from a pod whose gates were `gates` when observed (the
    patch is conditional on them, so a gate someone else added meanwhile is never lost)."""

    pod: str
    gates: tuple[str, ...]


@dataclass(frozen=True)
class AnnotatePod:
    """Set one annotation on a pod (a JSON merge patch of its metadata.annotations); a 404 means
    the pod is gone and there is nothing to annotate."""

    pod: str
    key: str
    value: str


@dataclass(frozen=True)
class DeleteJob:
    """Delete the TrainJob itself (ttlSecondsAfterFinished); owner references delete its children."""

    reason: str


@dataclass(frozen=True)
class EmitEvent:
    """An Event on the TrainJob."""

    reason: str
    message: str
    type: EventType = EventType.NORMAL


Action = CreateObject | DeletePods | RemoveSchedulingGate | AnnotatePod | DeleteJob | EmitEvent


@dataclass(frozen=True)
class Decision:
    """What to do after one observation.

    `status_patch` is a JSON merge patch of `.status` (camelCase keys, None deletes a field) holding
    only operator-owned fields, and only those that change. Apply `actions` in order (events may go
    in any order). `requeue_after`: reconcile again after this many seconds even without an event;
    None when only a change of the job or its pods can move it on.
    """

    status_patch: dict[str, Any] = field(default_factory=dict)
    actions: tuple[Action, ...] = ()
    requeue_after: float | None = None

    def of_type(self, kind: type[ActionT]) -> list[ActionT]:
        """The actions of one type, in order (handy in handlers and tests)."""
        return [action for action in self.actions if isinstance(action, kind)]
