"""Checkpoint-aware victims, decided by the pure reconcile: the operator (which owns the pods)
copies status.lastCommitTime (the coordinator's) onto the attempt's live pods as the
trainjob.dev/last-commit-time annotation, one patch per pod per commit, and a new attempt's pods
carry it from their creation."""

from __future__ import annotations

from typing import Any

import pytest

from tests.operator.trainjob_factories import Cluster, job, later
from trainjob_operator.api import constants
from trainjob_operator.reconciling import AnnotatePod, CreateObject, Decision

KEY = constants.ANNOTATION_LAST_COMMIT_TIME


def running() -> Cluster:
    cluster = Cluster(job())
    cluster.reconcile()
    cluster.run_all(0)
    cluster.reconcile(later(1))
    assert cluster.status["phase"] == "Running"
    return cluster


def commit(cluster: Cluster, at: str, iteration: int = 5) -> None:
    """What the coordinator patches into the status when a checkpoint commits."""
    assert cluster.job is not None
    status = cluster.job["status"]
    status["lastCommitTime"] = at
    status["latestCheckpoint"] = {
        "uri": f"s3://trainjob/checkpoints/ml/digits/checkpoint_{iteration:06d}",
        "iteration": iteration,
        "attempt": status.get("attempt", 0),
        "committedAt": at,
    }


def annotations_of(decision: Decision) -> list[tuple[str, str, str]]:
    return [(a.pod, a.key, a.value) for a in decision.of_type(AnnotatePod)]


def pod_annotation(cluster: Cluster, name: str) -> str | None:
    value: str | None = (cluster.pods[name]["metadata"].get("annotations") or {}).get(KEY)
    return value


def test_no_commit_no_annotation() -> None:
    cluster = running()
    assert annotations_of(cluster.reconcile(later(2))) == []


def test_each_commit_is_one_patch_per_live_pod_and_no_more() -> None:
    cluster = running()
    commit(cluster, "2026-01-01T12:00:03.250Z")
    assert annotations_of(cluster.reconcile(later(4))) == [
        ("digits-0-0", KEY, "2026-01-01T12:00:03.250Z"),
        ("digits-0-1", KEY, "2026-01-01T12:00:03.250Z"),
    ]
    # Applied: the next passes (any event) write nothing until the next commit.
    assert annotations_of(cluster.reconcile(later(5))) == []
    assert annotations_of(cluster.reconcile(later(6))) == []
    commit(cluster, "2026-01-01T12:00:07.000Z", iteration=10)
    assert [a[2] for a in annotations_of(cluster.reconcile(later(8)))] == ["2026-01-01T12:00:07.000Z"] * 2
    assert pod_annotation(cluster, "digits-0-1") == "2026-01-01T12:00:07.000Z"


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        # The coordinator's own format is kept as it is.
        ("2026-01-01T12:00:03.250Z", "2026-01-01T12:00:03.250Z"),
        # Another offset or precision (a hand edit, an older coordinator): UTC, milliseconds.
        ("2026-01-01T13:00:03+01:00", "2026-01-01T12:00:03.000Z"),
        ("2026-01-01T12:00:03.123456Z", "2026-01-01T12:00:03.123Z"),
    ],
)
def test_the_value_is_rfc3339_utc_with_milliseconds(written: str, expected: str) -> None:
    cluster = running()
    commit(cluster, written)
    assert {a[2] for a in annotations_of(cluster.reconcile(later(4)))} == {expected}


@pytest.mark.parametrize(
    ("state", "annotated"),
    [
        ({"exit_code": 0}, False),  # finished: its annotation no longer matters
        ({"phase": "Pending", "ready": False}, True),  # not running yet: still a victim candidate
    ],
)
def test_only_pods_that_still_hold_resources_are_annotated(state: dict[str, Any], annotated: bool) -> None:
    cluster = running()
    cluster.set_pod(0, 1, **state)
    commit(cluster, "2026-01-01T12:00:03.000Z")
    pods = [a[0] for a in annotations_of(cluster.reconcile(later(4)))]
    assert pods == (["digits-0-0", "digits-0-1"] if annotated else ["digits-0-0"])


def test_a_terminating_pod_is_not_annotated() -> None:
    cluster = running()
    cluster.pods["digits-0-1"]["metadata"]["deletionTimestamp"] = "2026-01-01T12:00:02Z"
    commit(cluster, "2026-01-01T12:00:03.000Z")
    # (A pod deleted by someone else is a disruption; the annotation goes to the others only.)
    assert [a[0] for a in annotations_of(cluster.reconcile(later(4)))] == ["digits-0-0"]


def test_the_next_attempt_s_pods_are_created_with_the_annotation() -> None:
    cluster = running()
    commit(cluster, "2026-01-01T12:00:03.000Z")
    cluster.reconcile(later(4))
    cluster.set_pod(0, 1, exit_code=1)
    cluster.reconcile(later(5))
    assert cluster.status["phase"] == "Restarting"
    cluster.finish_terminating()
    for second in range(6, 12):
        decision = cluster.reconcile(later(second))
        if decision.of_type(CreateObject):
            break
    pods = [a.manifest for a in decision.of_type(CreateObject) if a.kind == "Pod"]
    assert [p["metadata"]["name"] for p in pods] == ["digits-1-0", "digits-1-1"]
    assert {p["metadata"]["annotations"][KEY] for p in pods} == {"2026-01-01T12:00:03.000Z"}
    # Created with it: no patch needed once they run.
    cluster.run_all(1)
    assert annotations_of(cluster.reconcile(later(13))) == []
