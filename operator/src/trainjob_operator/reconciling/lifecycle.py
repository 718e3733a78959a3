"""The TrainJob lifecycle as an explicit state machine (docs/architecture.md, "The lifecycle") and its
conditions.

    (new) ──> Pending ──> Running ──> Succeeded
                │  ▲         │
                │  │         ├──> Restarting ──> Pending (attempt + 1, after the backoff)
                │  │         │
                │  └─────────┴──> Suspended ──> Pending (attempt + 1, no restart counted)
                └──> Failed  (from any non-terminal phase: validation, exhausted restarts,
                              a failure that is not retried, the deadline)

Pending also goes straight to Succeeded or Restarting when the pods finish or fail before the
operator saw all of them running. Succeeded and Failed are terminal: only the TTL deletes the job.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from trainjob_operator.api.types import Condition, ConditionStatus, ConditionType, Phase

TERMINAL_PHASES = frozenset({Phase.SUCCEEDED, Phase.FAILED})
# Phases in which the current attempt's pods should exist (or be on their way).
ACTIVE_PHASES = frozenset({Phase.PENDING, Phase.RUNNING})

ALLOWED_TRANSITIONS: Mapping[Phase | None, frozenset[Phase]] = {
    None: frozenset({Phase.PENDING, Phase.SUSPENDED, Phase.FAILED}),
    Phase.PENDING: frozenset(
        {Phase.RUNNING, Phase.RESTARTING, Phase.SUSPENDED, Phase.SUCCEEDED, Phase.FAILED}
    ),
    Phase.RUNNING: frozenset({Phase.RESTARTING, Phase.SUSPENDED, Phase.SUCCEEDED, Phase.FAILED}),
    Phase.RESTARTING: frozenset({Phase.PENDING, Phase.SUSPENDED, Phase.FAILED}),
    Phase.SUSPENDED: frozenset({Phase.PENDING, Phase.FAILED}),
    Phase.SUCCEEDED: frozenset(),
    Phase.FAILED: frozenset(),
}

# The condition that is True exactly while the job is in the phase (Pending has none: Created
# says the children were made).
PHASE_CONDITIONS: Mapping[Phase, ConditionType] = {
    Phase.RUNNING: ConditionType.RUNNING,
    Phase.RESTARTING: ConditionType.RESTARTING,
    Phase.SUSPENDED: ConditionType.SUSPENDED,
    Phase.SUCCEEDED: ConditionType.SUCCEEDED,
    Phase.FAILED: ConditionType.FAILED,
}


class IllegalTransition(RuntimeError):
    """A bug in the reconcile logic: it decided a transition the state machine does not have."""


def check_transition(current: Phase | None, target: Phase) -> None:
    if target != current and target not in ALLOWED_TRANSITIONS[current]:
        raise IllegalTransition(f"{current} -> {target}")


def set_condition(
    conditions: list[Condition],
    kind: ConditionType,
    status: ConditionStatus,
    reason: str,
    message: str,
    now: datetime,
) -> list[Condition]:
    """Conditions with `kind` set; its lastTransitionTime moves only when its status changes."""
    previous = next((c for c in conditions if c.type == kind), None)
    if previous is not None and previous.status == status:
        changed_since = previous.last_transition_time
    else:
        changed_since = now
    if previous is None and status is ConditionStatus.FALSE:
        # A condition that never held is left out rather than listed as False.
        return conditions
    updated = Condition(
        type=kind, status=status, reason=reason, message=message, last_transition_time=changed_since
    )
    if previous is None:
        return [*conditions, updated]
    return [updated if c.type == kind else c for c in conditions]


def condition_is_true(conditions: list[Condition], kind: ConditionType) -> Condition | None:
    return next((c for c in conditions if c.type == kind and c.status is ConditionStatus.TRUE), None)


def enter_phase(
    conditions: list[Condition], phase: Phase, reason: str, message: str, now: datetime
) -> list[Condition]:
    """Conditions after entering `phase`: its condition True, the other phase conditions False."""
    for other_phase, kind in PHASE_CONDITIONS.items():
        if other_phase == phase:
            conditions = set_condition(conditions, kind, ConditionStatus.TRUE, reason, message, now)
        elif condition_is_true(conditions, kind) is not None:
            conditions = set_condition(conditions, kind, ConditionStatus.FALSE, reason, message, now)
    return conditions
