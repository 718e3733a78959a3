"""The jobs-by-phase gauge follows each job's phase changes without recounting every job."""

from __future__ import annotations

from prometheus_client import REGISTRY

from trainjob_operator.controller.metrics import PhaseGauge


def gauge(phase: str) -> float:
    return REGISTRY.get_sample_value("trainjob_operator_jobs", {"phase": phase}) or 0.0


def test_a_job_moves_between_phases_and_leaves_when_gone() -> None:
    phases: PhaseGauge[tuple[str, str]] = PhaseGauge()
    before = {phase: gauge(phase) for phase in ("Pending", "Running", "Succeeded")}

    phases.record(("ns", "a"), "Pending")
    phases.record(("ns", "b"), "Pending")
    phases.record(("ns", "a"), "Running")
    phases.record(("ns", "a"), "Running")  # no change: counted once
    assert gauge("Pending") - before["Pending"] == 1
    assert gauge("Running") - before["Running"] == 1

    phases.record(("ns", "a"), "Succeeded")
    phases.record(("ns", "b"), None)
    phases.record(("ns", "c"), None)  # never seen: nothing to remove
    assert gauge("Pending") - before["Pending"] == 0
    assert gauge("Running") - before["Running"] == 0
    assert gauge("Succeeded") - before["Succeeded"] == 1
