"""Disruption notices, decided by the pure reconcile: a running gang that the cluster is taking a
pod of (an eviction, a preemption, a deletion by someone else, a suspend) is told first and kept
running until a checkpoint at or after the coordinator's stop iteration commits, or the grace
runs out; then it restarts as a disruption (status.disruptions, not restarts) or suspends."""

from __future__ import annotations

from typing import Any

import pytest

from tests.operator.trainjob_factories import Cluster, job, later, timestamp
from trainjob_operator.reconciling import DeletePods, EmitEvent

EVICTED = ("EvictionByEvictionAPI", "Eviction API: evicting")


def running(**spec: Any) -> Cluster:
    cluster = Cluster(job(**{"preemption": {"gracePeriodSeconds": 30}, **spec}))
    cluster.reconcile()
    cluster.run_all(0)
    cluster.reconcile(later(1))
    assert cluster.status["phase"] == "Running"
    return cluster


def coordinator_publishes(
    cluster: Cluster, *, iteration: int, stop_at: int | None, committed: int, at: float
) -> None:
    """What the coordinator would have patched into the status by now."""
    assert cluster.job is not None
    status = cluster.job["status"]
    status["iteration"] = iteration
    if stop_at is not None:
        status["stopAt"] = {"attempt": 0, "iteration": stop_at}
    status["latestCheckpoint"] = {
        "uri": f"s3://trainjob/checkpoints/ml/digits/checkpoint_{committed:06d}",
        "iteration": committed,
        "attempt": 0,
        "committedAt": timestamp(later(at)),
    }


def deleted(cluster: Cluster) -> set[str]:
    return {name for action in cluster.decisions[-1].of_type(DeletePods) for name in action.names}


def test_an_eviction_becomes_a_notice_and_the_gang_restarts_after_the_commit() -> None:
    cluster = running(preemption={"gracePeriodSeconds": 30})
    cluster.set_pod(0, 1, disruption=EVICTED)
    cluster.reconcile(later(10))
    status = cluster.status
    assert status["phase"] == "Running", "the gang keeps running to checkpoint"
    assert status["notice"]["reason"] == "EvictionByEvictionAPI" and status["notice"]["ranks"] == [1]
    assert status["notice"]["deadline"] == timestamp(later(40))
    assert [e.reason for e in cluster.decisions[-1].of_type(EmitEvent)] == ["PreemptionNotice"]
    assert deleted(cluster) == set()
    # The coordinator picked iteration 8; 7 is committed: not yet.
    coordinator_publishes(cluster, iteration=7, stop_at=8, committed=7, at=11)
    cluster.reconcile(later(12))
    assert cluster.status["phase"] == "Running" and deleted(cluster) == set()
    # 8 committed after the notice: the gang goes, as a disruption.
    coordinator_publishes(cluster, iteration=8, stop_at=8, committed=8, at=13)
    cluster.reconcile(later(14))
    status = cluster.status
    assert status["phase"] == "Restarting" and status["reason"] == "EvictionByEvictionAPI"
    assert (status["disruptions"], status["restarts"]) == (1, 0)
    assert "notice" not in status
    assert deleted(cluster) == {"digits-0-0", "digits-0-1"}


def test_without_a_commit_the_gang_goes_when_the_grace_runs_out() -> None:
    cluster = running(preemption={"gracePeriodSeconds": 30})
    cluster.set_pod(0, 1, disruption=EVICTED)
    cluster.reconcile(later(10))
    cluster.reconcile(later(39))
    assert cluster.status["phase"] == "Running"
    cluster.reconcile(later(40))
    assert cluster.status["phase"] == "Restarting" and cluster.status["disruptions"] == 1


def test_ranks_that_stopped_for_the_notice_are_not_a_success() -> None:
    cluster = running(preemption={"gracePeriodSeconds": 30})
    cluster.set_pod(0, 1, disruption=EVICTED)
    cluster.reconcile(later(10))
    coordinator_publishes(cluster, iteration=8, stop_at=8, committed=7, at=11)
    cluster.set_pod(0, 0, exit_code=0)
    cluster.set_pod(0, 1, exit_code=0)
    cluster.reconcile(later(12))
    assert cluster.status["phase"] == "Restarting" and cluster.status["disruptions"] == 1


def test_a_program_that_finished_before_the_stop_iteration_succeeds() -> None:
    cluster = running(preemption={"gracePeriodSeconds": 30})
    cluster.set_pod(0, 1, disruption=EVICTED)
    cluster.reconcile(later(10))
    coordinator_publishes(cluster, iteration=20, stop_at=None, committed=20, at=11)
    cluster.set_pod(0, 0, exit_code=0)
    cluster.set_pod(0, 1, exit_code=0)
    cluster.reconcile(later(12))
    assert cluster.status["phase"] == "Succeeded"


def test_a_pod_deleted_by_someone_else_is_a_disruption_with_notice() -> None:
    cluster = running()
    cluster.pods["digits-0-1"]["metadata"]["deletionTimestamp"] = timestamp(later(5))
    cluster.reconcile(later(5))
    assert cluster.status["notice"]["reason"] == "PodDeleted"
    cluster.reconcile(later(40))
    assert (cluster.status["disruptions"], cluster.status["restarts"]) == (1, 0)


@pytest.mark.parametrize("grace", [0])
def test_grace_zero_stops_at_once(grace: int) -> None:
    cluster = running(preemption={"gracePeriodSeconds": grace})
    cluster.set_pod(0, 1, disruption=EVICTED)
    cluster.reconcile(later(10))
    assert cluster.status["phase"] == "Restarting" and "notice" not in cluster.status


def test_suspend_goes_through_the_notice_and_keeps_the_commit() -> None:
    cluster = running(preemption={"gracePeriodSeconds": 30})
    cluster.update_spec(suspend=True)
    cluster.reconcile(later(10))
    status = cluster.status
    assert status["phase"] == "Running" and status["notice"]["reason"] == "Suspended"
    assert status["notice"]["ranks"] == [0, 1] and deleted(cluster) == set()
    coordinator_publishes(cluster, iteration=6, stop_at=6, committed=6, at=12)
    cluster.reconcile(later(13))
    assert cluster.status["phase"] == "Suspended" and "notice" not in cluster.status
    assert deleted(cluster) == {"digits-0-0", "digits-0-1"}
    assert cluster.status.get("disruptions") is None, "a suspend is not a disruption"


# status.noticeIgnored (the coordinator found that no rank acts on the notice) ends the wait at
# once; anything else keeps the gang running until a commit or the grace. Each row: how the
# notice came, what the coordinator published, and whether the pass at +2 s stops the gang.
IGNORED_ROWS: list[tuple[str, str, dict[str, Any], str]] = [
    (
        "an eviction, the program never asks",
        "evict",
        {"noticeIgnored": {"attempt": 0, "message": "m"}},
        "Restarting",
    ),
    (
        "a suspend, the program never asks",
        "suspend",
        {"noticeIgnored": {"attempt": 0, "message": "m"}},
        "Suspended",
    ),
    (
        "a finding left from an earlier attempt",
        "evict",
        {"noticeIgnored": {"attempt": 7, "message": "m"}},
        "Running",
    ),
    (
        "the program asks but has not checkpointed yet",
        "evict",
        {"stopAt": {"attempt": 0, "iteration": 9}},
        "Running",
    ),
    ("nothing published yet (an old coordinator, or no report since)", "evict", {}, "Running"),
]


@pytest.mark.parametrize(
    ("how", "published", "phase"), [row[1:] for row in IGNORED_ROWS], ids=[row[0] for row in IGNORED_ROWS]
)
def test_a_notice_the_program_ignores_stops_the_gang_at_once(
    how: str, published: dict[str, Any], phase: str
) -> None:
    cluster = running(preemption={"gracePeriodSeconds": 30})
    if how == "evict":
        cluster.set_pod(0, 1, disruption=EVICTED)
    else:
        cluster.update_spec(suspend=True)
    cluster.reconcile(later(10))
    assert cluster.status["phase"] == "Running" and cluster.status["notice"]["attempt"] == 0
    assert cluster.job is not None
    cluster.job["status"].update(published)
    cluster.reconcile(later(12))
    status = cluster.status
    assert status["phase"] == phase
    events = [(e.reason, e.message) for e in cluster.decisions[-1].of_type(EmitEvent)]
    if phase == "Running":
        assert deleted(cluster) == set() and events == []
        cluster.reconcile(later(40))
        assert cluster.status["phase"] in ("Restarting", "Suspended"), "the grace still bounds it"
        return
    assert ("NoticeIgnored", "m: stopping the gang now") in events
    assert deleted(cluster) == {"digits-0-0", "digits-0-1"} and "notice" not in status
    if phase == "Restarting":
        assert (status["disruptions"], status["restarts"]) == (1, 0)
