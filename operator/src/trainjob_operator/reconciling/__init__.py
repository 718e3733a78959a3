"""The operator's domain core, without any server: the pure reconcile decision and the builders of
every child object.

    decision = reconcile(job_dict, Observation.from_objects(pod_dicts, existing_kinds), now, settings)

then apply `decision.status_patch` (merge patch of `.status`), `decision.actions` in order, and
reconcile again after `decision.requeue_after` seconds.
"""

from .decision import (
    Action,
    AnnotatePod,
    CreateObject,
    Decision,
    DeleteJob,
    DeletePods,
    EmitEvent,
    EventType,
    RemoveSchedulingGate,
)
from .observation import (
    ChildKind,
    ContainerObservation,
    ContainerState,
    CreateRefusal,
    Observation,
    PodObservation,
    PodOutcome,
)
from .reconcile import POLL_SECONDS, reconcile
from .settings import OperatorSettings

__all__ = [
    "POLL_SECONDS",
    "Action",
    "AnnotatePod",
    "ChildKind",
    "ContainerObservation",
    "ContainerState",
    "CreateObject",
    "CreateRefusal",
    "Decision",
    "DeleteJob",
    "DeletePods",
    "EmitEvent",
    "EventType",
    "Observation",
    "OperatorSettings",
    "PodObservation",
    "PodOutcome",
    "RemoveSchedulingGate",
    "reconcile",
]
