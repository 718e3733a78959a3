"""A job whose ranks reported different numbers of times still succeeds when every worker exits 0,
but the operator keeps the coordinator's message and emits a Warning event (not a silent success)."""

from __future__ import annotations

from trainjob_factories import Cluster, job

from trainjob_operator.reconciling import EmitEvent, EventType

MISMATCH = "rank 1 finalized after 3 reports but rank 0 after 4: iteration 4 was not reported by every rank"


def test_success_keeps_the_report_count_mismatch_and_warns() -> None:
    cluster = Cluster(job())
    cluster.reconcile()
    cluster.run_all(0)
    cluster.reconcile()
    assert cluster.job is not None
    cluster.job["status"]["message"] = MISMATCH  # what the coordinator published
    cluster.set_pod(0, 0, exit_code=0)
    cluster.set_pod(0, 1, exit_code=0)
    decision = cluster.reconcile()
    assert cluster.status["phase"] == "Succeeded"
    assert cluster.status["message"] == f"all 2 workers exited 0 (attempt 0), but {MISMATCH}"
    warnings = [e for e in decision.of_type(EmitEvent) if e.reason == "ReportCountMismatch"]
    assert [(e.message, e.type) for e in warnings] == [(MISMATCH, EventType.WARNING)]
