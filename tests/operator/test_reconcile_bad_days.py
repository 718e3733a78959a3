"""A real cluster's bad days, decided by the pure reconcile: a Pending job says why (condition
PodsReady, status.reason and message, one event per change); startupPolicy fails what does not
fix itself and bounds how long a gang may take to start; a lost node or an eviction is a
disruption (status.disruptions, not restarts), and pods stuck Terminating on a lost node are
force-deleted. No server: the `Cluster` simulator of trainjob_factories."""

from __future__ import annotations

from typing import Any

import pytest

from tests.operator.trainjob_factories import NOW, Cluster, job, later, lease, node
from trainjob_operator.reconciling import CreateObject, DeletePods, EmitEvent
from trainjob_operator.reconciling.reconcile import REFUSED_CREATE_RETRY_SECONDS

PULL_MESSAGE = (
    'failed to pull image "registry.invalid/trainer:1": dial tcp: lookup registry.invalid: no such host'
)
BACKOFF_MESSAGE = 'Back-off pulling image "registry.invalid/trainer:1"'
NO_GPU = (
    "0/3 nodes are available: 3 Insufficient nvidia.com/gpu. preemption: 0/3 nodes are available: "
    "3 No preemption victims found for incoming pod.."
)


def pending(**spec: Any) -> Cluster:
    """A job whose attempt-0 pods exist and are Pending."""
    cluster = Cluster(job(**spec))
    cluster.reconcile()
    assert len(cluster.pods) == 2
    return cluster


def events(cluster: Cluster) -> list[tuple[str, str]]:
    return [(e.reason, e.type.value) for e in cluster.decisions[-1].of_type(EmitEvent)]


def pods_ready(cluster: Cluster) -> dict[str, Any]:
    return next(c for c in cluster.status["conditions"] if c["type"] == "PodsReady")


# ---- a Pending job says why ----------------------------------------------------------------


def test_an_image_that_cannot_be_pulled_is_named_and_fails_the_job_after_the_grace() -> None:
    cluster = pending(startupPolicy={"failFastGraceSeconds": 30})
    cluster.set_pod(
        0,
        0,
        phase="Pending",
        ready=False,
        waiting=("ErrImagePull", PULL_MESSAGE),
        image="registry.invalid/trainer:1",
    )
    cluster.reconcile(later(2))
    assert cluster.status["phase"] == "Pending" and cluster.status["reason"] == "ErrImagePull"
    condition = pods_ready(cluster)
    assert (condition["status"], condition["reason"]) == ("False", "ErrImagePull")
    assert condition["message"] == (
        f"pod digits-0-0: container trainer (image registry.invalid/trainer:1): ErrImagePull: {PULL_MESSAGE}"
    )
    assert cluster.status["message"] == condition["message"]
    assert events(cluster) == [("ErrImagePull", "Warning")]
    # The same reason again: no second event (one per change, not one per poll).
    cluster.reconcile(later(5))
    assert events(cluster) == []
    # The kubelet's back-off: a new reason, one event, and the grace keeps counting from the first.
    cluster.set_pod(
        0,
        0,
        phase="Pending",
        ready=False,
        waiting=("ImagePullBackOff", BACKOFF_MESSAGE),
        image="registry.invalid/trainer:1",
    )
    cluster.reconcile(later(12))
    assert events(cluster) == [("ImagePullBackOff", "Warning")]
    assert cluster.status["phase"] == "Pending"
    cluster.reconcile(later(32))
    status = cluster.status
    assert status["phase"] == "Failed" and status["reason"] == "ImagePullBackOff"
    assert "registry.invalid/trainer:1" in status["message"] and "does not fix itself" in status["message"]
    assert status["restarts"] == 0, "no restart is burnt on what does not fix itself"
    assert {name for action in cluster.decisions[-1].of_type(DeletePods) for name in action.names} == {
        "digits-0-0",
        "digits-0-1",
    }


def test_a_missing_secret_key_fails_the_job_naming_the_key() -> None:
    cluster = pending(startupPolicy={"failFastGraceSeconds": 0})
    message = "couldn't find key password in Secret ml/db"
    cluster.set_pod(0, 1, phase="Pending", ready=False, waiting=("CreateContainerConfigError", message))
    cluster.reconcile(later(1))
    status = cluster.status
    assert status["phase"] == "Failed" and status["reason"] == "CreateContainerConfigError"
    assert "pod digits-0-1: container trainer" in status["message"] and message in status["message"]


def test_a_reason_left_out_of_failFastReasons_only_waits() -> None:
    cluster = pending(startupPolicy={"failFastReasons": ["InvalidImageName"], "failFastGraceSeconds": 0})
    cluster.set_pod(0, 0, phase="Pending", ready=False, waiting=("ImagePullBackOff", BACKOFF_MESSAGE))
    cluster.reconcile(later(600))
    assert cluster.status["phase"] == "Pending" and cluster.status["reason"] == "ImagePullBackOff"


def test_an_unschedulable_gang_waits_and_says_why_without_a_timeout() -> None:
    cluster = pending()
    cluster.set_pod(0, 1, phase="Pending", ready=False, unscheduled=("Unschedulable", NO_GPU, later(1)))
    cluster.reconcile(later(2))
    assert cluster.status["reason"] == "Unschedulable"
    assert pods_ready(cluster)["message"] == f"pod digits-0-1: Unschedulable: {NO_GPU}"
    assert events(cluster) == [("Unschedulable", "Warning")]
    cluster.reconcile(later(3600))
    assert cluster.status["phase"] == "Pending" and events(cluster) == []
    # A node with a GPU joins: the pod is scheduled and runs; the job runs and says so.
    cluster.run_all(0)
    cluster.reconcile(later(3601))
    assert cluster.status["phase"] == "Running" and cluster.status["reason"] == "AllWorkersRunning"
    assert (pods_ready(cluster)["status"], pods_ready(cluster)["reason"]) == ("True", "AllPodsRunning")
    assert "startup" not in cluster.status


@pytest.mark.parametrize(
    ("on_timeout", "phase", "restarts"), [("Fail", "Failed", 0), ("Restart", "Restarting", 1)]
)
def test_unschedulable_past_its_timeout_fails_or_restarts_as_the_policy_says(
    on_timeout: str, phase: str, restarts: int
) -> None:
    cluster = pending(startupPolicy={"unschedulableTimeoutSeconds": 60, "onTimeout": on_timeout})
    cluster.set_pod(0, 1, phase="Pending", ready=False, unscheduled=("Unschedulable", NO_GPU, later(1)))
    cluster.reconcile(later(30))
    assert cluster.status["phase"] == "Pending"
    cluster.reconcile(later(61))
    assert cluster.status["phase"] == phase and cluster.status["restarts"] == restarts
    assert "unschedulable for 60s (startupPolicy.unschedulableTimeoutSeconds)" in cluster.status["message"]


def test_a_gang_not_running_by_podsReadyTimeoutSeconds_restarts() -> None:
    cluster = pending(startupPolicy={"podsReadyTimeoutSeconds": 120})
    cluster.reconcile(later(60))
    assert cluster.status["reason"] == "ContainerCreating"
    assert events(cluster) == [], "a gang merely starting says so in the condition, not in events"
    cluster.reconcile(later(121))
    assert cluster.status["phase"] == "Restarting" and cluster.status["restarts"] == 1
    assert "startupPolicy.podsReadyTimeoutSeconds" in cluster.status["message"]


NO_PRIORITY_CLASS = 'pods "digits-0-0" is forbidden: no PriorityClass with name high was found'


def test_a_pod_the_api_server_refuses_is_named_with_its_answer_and_tried_again() -> None:
    cluster = Cluster(job())
    cluster.refusing = (403, "Forbidden", NO_PRIORITY_CLASS)
    cluster.reconcile()
    assert cluster.pods == {} and set(cluster.refused) == {"digits-0-0", "digits-0-1"}
    cluster.reconcile(later(5))
    message = f"pod digits-0-0: the API server refused to create it (403 Forbidden): {NO_PRIORITY_CLASS}"
    assert cluster.status["phase"] == "Pending"
    assert (cluster.status["reason"], cluster.status["message"]) == ("FailedCreate", message)
    condition = pods_ready(cluster)
    assert (condition["status"], condition["reason"], condition["message"]) == (
        "False",
        "FailedCreate",
        message,
    )
    assert events(cluster) == [("FailedCreate", "Warning")]
    # Tried again, less often than a starting gang is looked at; no second event for the same refusal.
    decision = cluster.decisions[-1]
    assert [a.name for a in decision.of_type(CreateObject)] == ["digits-0-0", "digits-0-1"]
    assert decision.requeue_after == REFUSED_CREATE_RETRY_SECONDS
    cluster.reconcile(later(15))
    assert events(cluster) == []
    # Someone creates the PriorityClass: the pods are created and the job says so.
    cluster.refusing = None
    cluster.reconcile(later(25))
    assert sorted(cluster.pods) == ["digits-0-0", "digits-0-1"] and cluster.refused == {}
    cluster.reconcile(later(26))
    assert pods_ready(cluster)["reason"] == "ContainerCreating"
    cluster.run_all(0)
    cluster.reconcile(later(30))
    assert cluster.status["phase"] == "Running"


def test_a_pod_template_the_api_server_finds_invalid_fails_the_job_at_once() -> None:
    invalid = (
        'Pod "digits-0-0" is invalid: spec.containers[0].env[0].name: Invalid value: "1X": a valid '
        "environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', "
        "and must not start with a digit (e.g. 'my.env-name',  or 'MY_ENV.NAME',  or 'MyEnvName1', "
        "regex used for validation is '[-._a-zA-Z][-._a-zA-Z0-9]*')"
    )
    cluster = Cluster(job())
    cluster.refusing = (422, "Invalid", invalid)
    cluster.reconcile()
    cluster.reconcile(later(5))
    status = cluster.status
    assert (status["phase"], status["reason"]) == ("Failed", "FailedCreate")
    assert status["message"].startswith(
        f"pod digits-0-0: the API server refused to create it (422 Invalid): {invalid}; it refuses this "
        "pod template every time"
    )
    assert cluster.decisions[-1].of_type(CreateObject) == []
    assert ("FailedCreate", "Warning") in events(cluster)


def test_a_refusal_that_lasts_past_podsReadyTimeoutSeconds_ends_the_attempt() -> None:
    cluster = Cluster(job(startupPolicy={"podsReadyTimeoutSeconds": 30}))
    cluster.refusing = (403, "Forbidden", 'pods "digits-0-0" is forbidden: exceeded quota: gpus')
    cluster.reconcile()
    cluster.reconcile(later(5))
    assert cluster.decisions[-1].requeue_after == REFUSED_CREATE_RETRY_SECONDS
    cluster.reconcile(later(25))
    assert cluster.decisions[-1].requeue_after == 5  # the deadline comes before the next try
    cluster.reconcile(later(31))
    assert cluster.status["phase"] == "Restarting" and cluster.status["restarts"] == 1
    assert "exceeded quota: gpus" in cluster.status["message"]
    assert "startupPolicy.podsReadyTimeoutSeconds" in cluster.status["message"]


# ---- disruptions: lost nodes, evictions ----------------------------------------------------------


def running_on_nodes() -> Cluster:
    # No notice first (preemption.gracePeriodSeconds 0): the disruption itself is what is tested
    # here; test_reconcile_notices covers the notice in between.
    cluster = pending(
        failurePolicy={"maxRestarts": 0, "nodeLossSeconds": 60, "backoffSeconds": 30},
        preemption={"gracePeriodSeconds": 0},
    )
    cluster.nodes = {"node-a": node("node-a"), "node-b": node("node-b")}
    cluster.set_pod(0, 0, node="node-a")
    cluster.set_pod(0, 1, node="node-b")
    cluster.reconcile(later(1))
    assert cluster.status["phase"] == "Running"
    return cluster


def test_a_lost_node_restarts_the_gang_as_a_disruption_and_force_deletes_its_stuck_pod() -> None:
    cluster = running_on_nodes()
    cluster.nodes["node-b"] = node("node-b", "Unknown", later(100))
    cluster.reconcile(later(130))
    assert cluster.status["phase"] == "Running"
    assert cluster.decisions[-1].requeue_after == pytest.approx(30)
    cluster.reconcile(later(160))
    status = cluster.status
    assert status["phase"] == "Restarting" and status["reason"] == "NodeLost"
    assert (status["disruptions"], status["restarts"]) == (1, 0), "not the program's failure"
    assert (
        "rank 1 (pod digits-0-1) disrupted: NodeLost: node node-b not Ready (Unknown) for 60s"
        in status["message"]
    )
    assert events(cluster) == [("Disrupted", "Warning")]
    # digits-0-1 is asked to terminate and force-deleted in the same pass: its node is gone.
    deletions = cluster.decisions[-1].of_type(DeletePods)
    assert any(d.grace_period_seconds == 0 and d.names == ("digits-0-1",) for d in deletions)
    assert "digits-0-1" not in cluster.pods and "digits-0-0" in cluster.pods
    # The survivor goes; the next attempt starts at once (no backoff), on the nodes that are there.
    del cluster.pods["digits-0-0"]
    cluster.reconcile(later(161))
    assert cluster.status["phase"] == "Pending" and cluster.status["attempt"] == 1
    assert sorted(cluster.pods) == ["digits-1-0", "digits-1-1"]


def test_a_pod_stuck_terminating_on_a_lost_node_is_force_deleted_after_nodeLossSeconds() -> None:
    cluster = running_on_nodes()
    cluster.set_pod(0, 1, node="node-b", exit_code=137, reason="Error")
    cluster.reconcile(later(10))
    assert cluster.status["phase"] == "Failed"  # maxRestarts 0: the program's failure
    cluster.pods["digits-0-0"]["metadata"]["deletionTimestamp"] = "2026-01-01T12:00:10Z"
    cluster.nodes["node-a"] = node("node-a", "Unknown", later(20))
    cluster.reconcile(later(40))
    assert not any(d.grace_period_seconds == 0 for d in cluster.decisions[-1].of_type(DeletePods))
    cluster.reconcile(later(81))
    assert any(
        d.names == ("digits-0-0",) and d.grace_period_seconds == 0
        for d in cluster.decisions[-1].of_type(DeletePods)
    )


@pytest.mark.parametrize(
    ("reason", "message"),
    [
        ("EvictionByEvictionAPI", "Eviction API: evicting"),
        ("PreemptionByScheduler", "Kubernetes scheduler: preempting to accommodate a higher priority pod"),
        ("DeletionByTaintManager", "Taint manager: deleting due to NoExecute taint"),
    ],
)
def test_an_eviction_or_preemption_is_a_disruption_not_a_failure(reason: str, message: str) -> None:
    cluster = running_on_nodes()
    cluster.set_pod(0, 0, node="node-a", disruption=(reason, message))
    cluster.reconcile(later(5))
    status = cluster.status
    assert status["phase"] == "Restarting" and status["reason"] == reason
    assert (status["disruptions"], status["restarts"]) == (1, 0)


def test_maxDisruptions_bounds_them() -> None:
    cluster = pending(failurePolicy={"maxDisruptions": 0}, preemption={"gracePeriodSeconds": 0})
    cluster.run_all(0)
    cluster.reconcile(later(1))
    cluster.set_pod(0, 0, disruption=("EvictionByEvictionAPI", "Eviction API: evicting"))
    cluster.reconcile(later(2))
    status = cluster.status
    assert status["phase"] == "Failed" and status["reason"] == "TooManyDisruptions"
    assert "all 0 disruptions (failurePolicy.maxDisruptions) are spent" in status["message"]


# ---- the gang starts together ---------------------------------------------------------------


def test_pods_are_gated_until_the_whole_gang_exists() -> None:
    from tests.operator.trainjob_factories import SETTINGS, observe, pod
    from trainjob_operator.api.types import TrainJob
    from trainjob_operator.reconciling import RemoveSchedulingGate, reconcile
    from trainjob_operator.reconciling.children import worker_pod

    queued = {"name": "kueue.x-k8s.io/admission"}
    template = {"spec": {"schedulingGates": [queued], "containers": [{"name": "trainer", "image": "x"}]}}
    created = worker_pod(TrainJob.from_wire(job(template=template)), 0, 1, SETTINGS)
    assert created["spec"]["schedulingGates"] == [queued, {"name": "trainjob.dev/gang"}]

    def gated(rank: int) -> dict[str, Any]:
        obj = pod(0, rank, phase="Pending", ready=False)
        obj["spec"]["schedulingGates"] = [queued, {"name": "trainjob.dev/gang"}]
        return obj

    cluster = Cluster(job())
    cluster.reconcile()
    assert cluster.job is not None
    one = reconcile(cluster.job, observe(gated(0)), later(1), SETTINGS)
    assert one.of_type(RemoveSchedulingGate) == [], "half a gang never reaches the scheduler"
    both = reconcile(cluster.job, observe(gated(0), gated(1)), later(2), SETTINGS)
    assert both.of_type(RemoveSchedulingGate) == [
        RemoveSchedulingGate("digits-0-0", ("kueue.x-k8s.io/admission", "trainjob.dev/gang")),
        RemoveSchedulingGate("digits-0-1", ("kueue.x-k8s.io/admission", "trainjob.dev/gang")),
    ]


def test_a_failure_that_followed_a_node_crash_is_recounted_as_a_disruption() -> None:
    cluster = running_on_nodes()
    cluster.update_spec(failurePolicy={"maxRestarts": 2, "nodeLossSeconds": 60, "backoffSeconds": 30})
    # node-b crashed at 95 (its last heartbeat 90); rank 0's collective failed at 100.
    cluster.pods["digits-0-1"]["spec"]["nodeName"] = "node-b"
    cluster.set_pod(0, 0, node="node-a", exit_code=1, reason="Error")
    cluster.reconcile(later(100))
    assert (cluster.status["phase"], cluster.status["restarts"]) == ("Restarting", 1)
    # The node monitor's grace later, node-b is Unknown; its heartbeat predates the failure.
    lost = node("node-b", "Unknown", later(140))
    lost["status"]["conditions"][0]["lastHeartbeatTime"] = "2026-01-01T12:01:30Z"
    cluster.nodes["node-b"] = lost
    cluster.reconcile(later(141))
    status = cluster.status
    assert (status["restarts"], status["disruptions"], status["reason"]) == (0, 1, "NodeLost")
    assert "followed the loss of node node-b" in status["message"]
    assert "restartAfter" not in status, "a disruption restarts without the backoff"
    cluster.finish_terminating()
    cluster.reconcile(later(142))
    started = [e.message for e in cluster.decisions[-1].of_type(EmitEvent) if e.reason == "Restarted"]
    assert started == ["disruption 1 (NodeLost): starting attempt 1"], "not a restart: none is counted"
    # A node that heartbeated after the failure does not take the blame.
    healthy_later = running_on_nodes()
    healthy_later.update_spec(failurePolicy={"maxRestarts": 2, "nodeLossSeconds": 60, "backoffSeconds": 30})
    healthy_later.set_pod(0, 0, node="node-a", exit_code=1, reason="Error")
    healthy_later.reconcile(later(100))
    late = node("node-b", "Unknown", later(200))
    late["status"]["conditions"][0]["lastHeartbeatTime"] = "2026-01-01T12:02:30Z"
    healthy_later.nodes["node-b"] = late
    healthy_later.reconcile(later(201))
    assert (healthy_later.status["restarts"], healthy_later.status.get("disruptions")) == (1, None)
    healthy_later.finish_terminating()
    healthy_later.reconcile(later(231))
    started = [e.message for e in healthy_later.decisions[-1].of_type(EmitEvent) if e.reason == "Restarted"]
    assert started == ["restart 1: starting attempt 1"]


def test_a_failure_while_a_ranks_node_is_not_ready_is_a_disruption() -> None:
    cluster = running_on_nodes()
    cluster.update_spec(failurePolicy={"maxRestarts": 2, "nodeLossSeconds": 60, "backoffSeconds": 30})
    cluster.nodes["node-b"] = node("node-b", "Unknown", later(99))
    cluster.set_pod(0, 0, node="node-a", exit_code=1, reason="Error")
    cluster.reconcile(later(100))
    status = cluster.status
    assert (status["phase"], status["reason"]) == ("Restarting", "NodeLost")
    assert (status["disruptions"], status["restarts"]) == (1, 0)
    assert "node node-b not Ready (Unknown)" in status["message"]


# ---- a failure that would end the job waits until the gang's nodes prove alive -----------------


def failed_with_leases(max_restarts: int = 0) -> Cluster:
    """Rank 0 (node-a) failed at 100 with the job's restarts spent; both nodes' Leases were last
    renewed at 90 (a kubelet renews every 10 s, leaseDurationSeconds 40)."""
    cluster = running_on_nodes()
    cluster.update_spec(
        failurePolicy={"maxRestarts": max_restarts, "nodeLossSeconds": 60, "backoffSeconds": 30}
    )
    cluster.leases = {name: lease(name, later(90)) for name in ("node-a", "node-b")}
    cluster.set_pod(0, 0, node="node-a", exit_code=1, reason="Error", finished_at=later(100))
    return cluster


def test_a_failure_that_would_end_the_job_waits_for_the_nodes_leases_and_says_so() -> None:
    cluster = failed_with_leases()
    decision = cluster.reconcile(later(100))
    status = cluster.status
    assert status["phase"] == "Running", "held, not failed, while a node may be lost"
    assert status["message"] == (
        "rank 0 (pod digits-0-0) failed; waiting up to 40s (until 2026-01-01T12:02:21Z) for node "
        "node-a, node-b to renew its Lease, to rule out a lost node"
    )
    assert events(cluster) == [("CheckingNodes", "Normal")]
    assert not decision.of_type(DeletePods)
    assert decision.requeue_after is not None and decision.requeue_after <= 2
    # node-a renews after the failure: only node-b is still awaited; one event per change.
    cluster.leases["node-a"] = lease("node-a", later(102))
    cluster.reconcile(later(103))
    assert "for node node-b to renew" in cluster.status["message"]
    cluster.reconcile(later(105))
    assert events(cluster) == []


# (node-b's Lease, node-b's Ready, when) -> the verdict. node-a renewed at 102 in every row.
@pytest.mark.parametrize(
    ("node_b_lease", "node_b_ready", "at", "phase", "reason", "disruptions", "restarts"),
    [
        # Crashed at 95: the node controller marks it Unknown at 125 (its grace): a disruption.
        (90, "Unknown", 126, "Restarting", "NodeLost", 1, 0),
        # Not renewed within its leaseDurationSeconds after the failure (101 + 40): lost, without
        # waiting for the node controller.
        (90, "True", 141, "Restarting", "NodeLost", 1, 0),
        # Alive: renewed after the failure, so the program failed: Failed as without the wait.
        (110, "True", 111, "Failed", "WorkerFailed", None, 0),
        # A renewal in the failure's own second may precede it: not yet proof; 10 s later it is.
        (100.5, "True", 101, "Running", "AllWorkersRunning", None, 0),
    ],
)
def test_a_held_failure_ends_as_a_disruption_or_a_failure_by_the_nodes_leases(
    node_b_lease: float,
    node_b_ready: str,
    at: float,
    phase: str,
    reason: str,
    disruptions: int | None,
    restarts: int | None,
) -> None:
    cluster = failed_with_leases()
    cluster.reconcile(later(100))
    cluster.leases = {"node-a": lease("node-a", later(102)), "node-b": lease("node-b", later(node_b_lease))}
    cluster.nodes["node-b"] = node("node-b", node_b_ready, later(125) if node_b_ready != "True" else NOW)
    cluster.reconcile(later(at))
    status = cluster.status
    assert (status["phase"], status["reason"]) == (phase, reason)
    assert (status.get("disruptions"), status.get("restarts")) == (disruptions, restarts)
    if reason == "NodeLost":
        assert "digits-0-1" in status["message"]
        assert {p for p, obj in cluster.pods.items() if "deletionTimestamp" in obj["metadata"]} == {
            "digits-0-0",
            "digits-0-1",
        }
    if phase == "Failed":
        assert "all 0 restarts (failurePolicy.maxRestarts) are spent" in status["message"]


def test_a_lease_not_renewed_in_time_names_the_node_and_its_last_renewal() -> None:
    cluster = failed_with_leases()
    cluster.reconcile(later(100))
    cluster.leases["node-a"] = lease("node-a", later(102))
    cluster.reconcile(later(141))
    assert cluster.status["message"] == (
        "rank 1 (pod digits-0-1) disrupted: NodeLost: node node-b did not renew its Lease in the 40s "
        "after the failure (last renewed 2026-01-01T12:01:30Z); the other ranks failed with it"
    )


def test_without_leases_a_failure_that_ends_the_job_fails_it_at_once() -> None:
    # A namespaced install sees neither Nodes nor Leases; a cluster-wide one may see nodes whose
    # kubelets keep no Lease: neither waits, as before Leases were watched.
    for watches_nodes in (False, True):
        cluster = failed_with_leases()
        cluster.leases = {}
        if not watches_nodes:
            cluster.nodes = {}
        cluster.reconcile(later(100))
        assert (cluster.status["phase"], cluster.status["reason"]) == ("Failed", "WorkerFailed")
        assert events(cluster)[0] == ("WorkerFailed", "Warning")


def test_a_failure_with_restarts_left_restarts_at_once_without_waiting_for_leases() -> None:
    cluster = failed_with_leases(max_restarts=2)
    cluster.reconcile(later(100))
    assert (cluster.status["phase"], cluster.status["restarts"]) == ("Restarting", 1)
