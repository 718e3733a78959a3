"""The coordinator's `status.storage` becomes the StorageUnavailable condition, with one event per
change: unreachable (Warning), unreachable past the workers' retry budget (Warning), reachable
again (Normal). Pure reconcile, no server."""

from __future__ import annotations

from typing import Any

import pytest

from tests.operator.trainjob_factories import SETTINGS, Cluster, job, later, timestamp
from trainjob_operator.api.types import TrainJob
from trainjob_operator.reconciling import EmitEvent
from trainjob_operator.reconciling.children import worker_pod

DOWN_AT = 100  # seconds after NOW when the coordinator saw storage go


def running(**spec: Any) -> Cluster:
    cluster = Cluster(job(**spec))
    cluster.reconcile()
    cluster.run_all(0)
    cluster.reconcile(later(1))
    assert cluster.status["phase"] == "Running"
    return cluster


def storage(available: bool, since: float) -> dict[str, Any]:
    message = "reachable" if available else "cannot reach s3://trainjob/checkpoints: connection refused"
    return {"available": available, "since": timestamp(later(since)), "message": message}


def storage_condition(cluster: Cluster) -> tuple[str, str] | None:
    found = [c for c in cluster.status.get("conditions", []) if c["type"] == "StorageUnavailable"]
    return (found[0]["status"], found[0]["reason"]) if found else None


UP = storage(True, 50)
DOWN = storage(False, DOWN_AT)
BACK = storage(True, DOWN_AT + 40)

# (status.storage the coordinator published, seconds after NOW of the reconcile,
#  the condition (status, reason) after it, the events it emitted)
Step = tuple[dict[str, Any], float, tuple[str, str] | None, list[tuple[str, str]]]
DEFAULT_BUDGET: list[Step] = [
    (UP, 60, None, []),  # never unavailable: no condition at all
    (DOWN, DOWN_AT + 1, ("True", "StorageUnreachable"), [("StorageUnavailable", "Warning")]),
    (DOWN, DOWN_AT + 30, ("True", "StorageUnreachable"), []),  # still down: no new event
    (BACK, DOWN_AT + 41, ("False", "StorageReachable"), [("StorageAvailable", "Normal")]),
    (BACK, DOWN_AT + 50, ("False", "StorageReachable"), []),
]
PAST_BUDGET: list[Step] = [
    (DOWN, DOWN_AT + 2, ("True", "StorageUnreachable"), [("StorageUnavailable", "Warning")]),
    (DOWN, DOWN_AT + 5, ("True", "RetryBudgetExceeded"), [("StorageRetryBudgetExceeded", "Warning")]),
    (DOWN, DOWN_AT + 9, ("True", "RetryBudgetExceeded"), []),
    (BACK, DOWN_AT + 41, ("False", "StorageReachable"), [("StorageAvailable", "Normal")]),
]
DEFAULT_PAST_BUDGET: list[Step] = [
    (DOWN, DOWN_AT + 119, ("True", "StorageUnreachable"), [("StorageUnavailable", "Warning")]),
    (DOWN, DOWN_AT + 120, ("True", "RetryBudgetExceeded"), [("StorageRetryBudgetExceeded", "Warning")]),
]


@pytest.mark.parametrize(
    ("budget", "steps"),
    [(None, DEFAULT_BUDGET), (5, PAST_BUDGET), (None, DEFAULT_PAST_BUDGET)],
    ids=["outage-within-the-default-budget", "outage-past-a-5s-budget", "outage-past-the-default-120s"],
)
def test_storage_outage_timeline(budget: int | None, steps: list[Step]) -> None:
    storage_spec: dict[str, Any] = {"uri": "s3://trainjob/checkpoints"}
    if budget is not None:
        storage_spec["retryBudgetSeconds"] = budget
    cluster = running(storage=storage_spec)
    for published, at, expected, expected_events in steps:
        assert cluster.job is not None
        cluster.job["status"]["storage"] = published
        decision = cluster.reconcile(later(at))
        assert storage_condition(cluster) == expected, (published, at)
        assert [(e.reason, e.type.value) for e in decision.of_type(EmitEvent)] == expected_events, (
            published,
            at,
        )
        assert cluster.status["phase"] == "Running"  # the condition alone never ends the attempt


def test_the_condition_says_when_and_why_and_the_budget_is_requeued_for() -> None:
    cluster = running(storage={"uri": "s3://trainjob/checkpoints", "retryBudgetSeconds": 30})
    assert cluster.job is not None
    cluster.job["status"]["storage"] = DOWN
    decision = cluster.reconcile(later(DOWN_AT + 10))
    # Look again exactly when the budget runs out, to say so without waiting for another event.
    assert decision.requeue_after == 20
    (found,) = [c for c in cluster.status["conditions"] if c["type"] == "StorageUnavailable"]
    assert found["lastTransitionTime"] == timestamp(later(DOWN_AT + 10))
    assert timestamp(later(DOWN_AT)) in found["message"]
    assert "connection refused" in found["message"] and "30s" in found["message"]
    (event,) = decision.of_type(EmitEvent)
    assert event.message == found["message"]
    decision = cluster.reconcile(later(DOWN_AT + 30))
    (found,) = [c for c in cluster.status["conditions"] if c["type"] == "StorageUnavailable"]
    assert "longer than storage.retryBudgetSeconds (30s)" in found["message"]
    # Still True: the transition time is the start of the outage as the operator saw it.
    assert found["lastTransitionTime"] == timestamp(later(DOWN_AT + 10))


def test_a_restarting_job_keeps_the_condition_the_last_coordinator_left() -> None:
    """While no coordinator runs, status.storage is stale: the condition is not re-judged."""
    cluster = running(storage={"uri": "s3://trainjob/checkpoints", "retryBudgetSeconds": 5})
    assert cluster.job is not None
    cluster.job["status"]["storage"] = DOWN
    cluster.reconcile(later(DOWN_AT + 1))
    cluster.set_pod(0, 0, exit_code=1)  # the upload gave up: the trainer failed
    cluster.reconcile(later(DOWN_AT + 2))
    assert cluster.status["phase"] == "Restarting"
    decision = cluster.reconcile(later(DOWN_AT + 60))
    assert storage_condition(cluster) == ("True", "StorageUnreachable")
    assert not [e for e in decision.of_type(EmitEvent) if "Storage" in e.reason]


@pytest.mark.parametrize(("budget", "expected"), [(None, None), (45, "45")])
def test_the_retry_budget_reaches_the_workers(budget: int | None, expected: str | None) -> None:
    storage_spec: dict[str, Any] = {"uri": "s3://trainjob/checkpoints"}
    if budget is not None:
        storage_spec["retryBudgetSeconds"] = budget
    pod = worker_pod(TrainJob.from_wire(job(storage=storage_spec)), 0, 1, SETTINGS)
    (trainer,) = pod["spec"]["containers"]
    env = {item["name"]: item.get("value") for item in trainer["env"]}
    assert env.get("TRAINJOB_STORAGE_RETRY_SECONDS") == expected


def test_a_budget_below_one_second_is_refused_by_the_schema() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=r"retry_budget_seconds|retryBudgetSeconds"):
        TrainJob.from_wire(job(storage={"uri": "s3://trainjob/checkpoints", "retryBudgetSeconds": 0}))
