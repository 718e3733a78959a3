"""A job whose ranks reported different numbers of times still succeeds when every worker exits 0,
but the operator turns the coordinator's typed status.reportCountMismatch into the condition
ReportCountMismatch, one Warning event and a note in its own message (not a silent success)."""

from __future__ import annotations

from trainjob_factories import Cluster, job

from trainjob_operator.reconciling import EmitEvent, EventType

MISMATCH = "rank 1 finalized after 3 reports but rank 0 after 4: iteration 4 was not reported by every rank"


def published(attempt: int) -> dict[str, object]:
    """What the coordinator of `attempt` publishes (coordinator/aggregation.py)."""
    return {
        "attempt": attempt,
        "shortRanks": [1],
        "reports": 3,
        "longestRank": 0,
        "mostReports": 4,
        "message": MISMATCH,
    }


def test_the_mismatch_becomes_a_condition_an_event_and_part_of_the_success_message() -> None:
    cluster = Cluster(job())
    cluster.reconcile()
    cluster.run_all(0)
    cluster.reconcile()
    assert cluster.job is not None
    cluster.job["status"]["reportCountMismatch"] = published(0)
    decision = cluster.reconcile()
    condition = next(c for c in cluster.status["conditions"] if c["type"] == "ReportCountMismatch")
    assert (condition["status"], condition["reason"], condition["message"]) == (
        "True",
        "RanksReportedUnequally",
        MISMATCH,
    )
    warnings = [e for e in decision.of_type(EmitEvent) if e.reason == "ReportCountMismatch"]
    assert [(e.message, e.type) for e in warnings] == [(MISMATCH, EventType.WARNING)]
    assert "message" not in decision.status_patch or MISMATCH not in str(decision.status_patch["message"])

    cluster.set_pod(0, 0, exit_code=0)
    cluster.set_pod(0, 1, exit_code=0)
    decision = cluster.reconcile()
    assert cluster.status["phase"] == "Succeeded"
    assert cluster.status["message"] == f"all 2 workers exited 0 (attempt 0), but {MISMATCH}"
    assert not [e for e in decision.of_type(EmitEvent) if e.reason == "ReportCountMismatch"]  # once only


def test_an_earlier_attempts_mismatch_is_ignored() -> None:
    cluster = Cluster(job())
    cluster.reconcile()
    cluster.run_all(0)
    cluster.reconcile()
    assert cluster.job is not None
    cluster.job["status"]["attempt"] = 1
    cluster.job["status"]["reportCountMismatch"] = published(0)
    decision = cluster.reconcile()
    assert not [c for c in cluster.status["conditions"] if c["type"] == "ReportCountMismatch"]
    assert not [e for e in decision.of_type(EmitEvent) if e.reason == "ReportCountMismatch"]
