"""The controller's in-memory bookkeeping: pods the operator created count as observed (Pending)
until the watch shows them, until the operator deletes them, or until the expectation expires; the
jobs-by-phase gauge follows each job's phase; a Node's event wakes exactly the jobs with a pod
bound to it."""

from __future__ import annotations

from typing import Any

from prometheus_client import REGISTRY

from trainjob_operator.controller.expecting import PodExpectations
from trainjob_operator.controller.metrics import PhaseGauge
from trainjob_operator.controller.waking import JobsOnNodes


def pod(name: str, phase: str = "Running") -> dict[str, Any]:
    return {"metadata": {"name": name}, "status": {"phase": phase}}


def names(pods: list[dict[str, Any]]) -> dict[str, str]:
    return {p["metadata"]["name"]: p["status"]["phase"] for p in pods}


def test_a_created_pod_is_pending_until_the_watch_shows_it() -> None:
    expectations = PodExpectations()
    expectations.expect("uid", pod("job-0-0"))
    expectations.expect("uid", pod("job-0-1"))

    assert names(expectations.observed("uid", [])) == {"job-0-0": "Pending", "job-0-1": "Pending"}
    # The watch shows one: that one is as the watch says, the other still expected.
    seen_one = expectations.observed("uid", [pod("job-0-0")])
    assert names(seen_one) == {"job-0-0": "Running", "job-0-1": "Pending"}
    # Once seen, a pod gone from the watch is gone: it is not expected any more.
    assert names(expectations.observed("uid", [pod("job-0-1", "Succeeded")])) == {"job-0-1": "Succeeded"}
    assert names(expectations.observed("uid", [])) == {}


def test_a_deleted_pod_is_not_expected_even_if_never_seen() -> None:
    expectations = PodExpectations()
    expectations.expect("uid", pod("job-0-0"))
    expectations.expect("other", pod("job-0-0"))

    expectations.forget("uid", "job-0-0")

    assert expectations.observed("uid", []) == []
    assert names(expectations.observed("other", [])) == {"job-0-0": "Pending"}  # per job
    expectations.drop("other")
    assert expectations.observed("other", []) == []


def test_an_expectation_expires() -> None:
    expectations = PodExpectations(ttl_seconds=0.0)
    expectations.expect("uid", pod("job-0-0"))

    assert expectations.observed("uid", []) == []


# ---- phase gauge -------------------------------------------------------------------------------
# The jobs-by-phase gauge follows each job's phase changes without recounting every job.


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


def gated(name: str, rv: int, *gates: str) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": []}
    if gates:
        spec["schedulingGates"] = [{"name": g} for g in gates]
    return {
        "metadata": {"name": name, "resourceVersion": str(rv)},
        "spec": spec,
        "status": {"phase": "Pending"},
    }


def test_a_removed_gate_stays_removed_until_the_watch_shows_the_patch() -> None:
    expectations = PodExpectations()
    expectations.ungated("uid", "job-0-0", "trainjob.dev/gang", "20")

    # The watch still shows the pod as it was before the patch (rv 10): the gate is taken off the
    # view, other gates kept, so the next pass does not patch again (a 422 each time).
    (stale,) = expectations.observed("uid", [gated("job-0-0", 10, "trainjob.dev/gang", "other")])
    assert stale["spec"]["schedulingGates"] == [{"name": "other"}]
    (alone,) = expectations.observed("uid", [gated("job-0-0", 10, "trainjob.dev/gang")])
    assert "schedulingGates" not in alone["spec"]
    # The watch caught up (the patched version): the expectation is gone, the pod is as watched.
    (fresh,) = expectations.observed("uid", [gated("job-0-0", 20)])
    assert "schedulingGates" not in fresh["spec"]
    (watched,) = expectations.observed("uid", [gated("job-0-0", 10, "trainjob.dev/gang")])
    assert watched["spec"]["schedulingGates"] == [{"name": "trainjob.dev/gang"}]


def annotated(name: str, value: str | None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if value is not None:
        metadata["annotations"] = {"other": "kept", "trainjob.dev/last-commit-time": value}
    return {"metadata": metadata, "status": {"phase": "Running"}}


def commit_time(pod: dict[str, Any]) -> str | None:
    return (pod["metadata"].get("annotations") or {}).get("trainjob.dev/last-commit-time")


def test_a_written_annotation_shows_until_the_watch_shows_it() -> None:
    expectations = PodExpectations()
    key, new = "trainjob.dev/last-commit-time", "2026-01-01T12:00:05.000Z"
    expectations.annotated("uid", "job-0-0", key, new)

    # The watch still shows the old value (or none): the view has the written one, others kept,
    # so a pass woken by another event does not patch the same value again.
    (stale,) = expectations.observed("uid", [annotated("job-0-0", "2026-01-01T12:00:00.000Z")])
    assert commit_time(stale) == new and stale["metadata"]["annotations"]["other"] == "kept"
    (bare,) = expectations.observed("uid", [annotated("job-0-0", None)])
    assert commit_time(bare) == new
    # The watch caught up: the expectation is gone, and the pod is as watched from then on.
    (fresh,) = expectations.observed("uid", [annotated("job-0-0", new)])
    assert commit_time(fresh) == new
    (watched,) = expectations.observed("uid", [annotated("job-0-0", None)])
    assert commit_time(watched) is None


def test_a_written_annotation_expires() -> None:
    expectations = PodExpectations(ttl_seconds=0.0)
    expectations.annotated("uid", "job-0-0", "trainjob.dev/last-commit-time", "2026-01-01T12:00:05.000Z")
    (watched,) = expectations.observed("uid", [annotated("job-0-0", None)])
    assert commit_time(watched) is None


def test_jobs_on_a_node_follow_their_pods_binding_moves_and_deletions() -> None:
    """What a scan of every job's pods for `spec.nodeName == node` would answer, after each
    kind of pod event (the map replaced that scan; a wrong answer misses a lost node's jobs)."""
    jobs = JobsOnNodes()
    a, b = ("ns-a", "job-a"), ("ns-b", "job-b")
    jobs.pod_event("ns-a", "job-a-0", a, None, gone=False)  # created, not bound yet
    assert jobs.jobs_on("n1") == []
    jobs.pod_event("ns-a", "job-a-0", a, "n1", gone=False)
    jobs.pod_event("ns-a", "job-a-1", a, "n1", gone=False)
    jobs.pod_event("ns-b", "job-b-0", b, "n1", gone=False)
    jobs.pod_event("ns-b", "job-b-1", b, "n2", gone=False)
    jobs.pod_event("ns-b", "job-b-1", b, "n2", gone=False)  # the same state again counts once
    assert jobs.jobs_on("n1") == [a, b] and jobs.jobs_on("n2") == [b]
    # One of job a's two pods on n1 goes: a still has one there.
    jobs.pod_event("ns-a", "job-a-0", a, "n1", gone=True)
    assert jobs.jobs_on("n1") == [a, b]
    jobs.pod_event("ns-a", "job-a-1", a, "n1", gone=True)
    assert jobs.jobs_on("n1") == [b]
    # A pod of the same name in another namespace is another pod.
    jobs.pod_event("ns-a", "job-b-0", a, "n2", gone=False)
    assert jobs.jobs_on("n2") == [a, b] and jobs.jobs_on("n1") == [b]
    # A recreated pod bound elsewhere moves its job.
    jobs.pod_event("ns-b", "job-b-0", b, "n2", gone=False)
    assert jobs.jobs_on("n1") == [] and jobs.jobs_on("n2") == [a, b]
    for ns, name, job in (("ns-a", "job-b-0", a), ("ns-b", "job-b-0", b), ("ns-b", "job-b-1", b)):
        jobs.pod_event(ns, name, job, "n2", gone=True)
    assert jobs.jobs_on("n2") == [] and jobs.jobs_on("unknown") == []
