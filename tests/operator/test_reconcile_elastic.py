"""Elastic gangs, decided by the pure reconcile (README.md, "Elastic gangs"): an attempt starts
with the largest gang the Ready nodes hold (at least minWorkers), a gang the scheduler cannot place
shrinks to the pods it did place, a lost node restarts the gang smaller, and a gang below
spec.workers scales up through a notice once resizeIntervalSeconds have passed and more fit.
No server: the `Cluster` simulator of trainjob_factories, with Nodes that have capacity."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from tests.operator.trainjob_factories import Cluster, job, later, spec, timestamp
from trainjob_operator.reconciling import CreateObject, DeletePods, EmitEvent
from trainjob_operator.reconciling.elastic import pod_requests

# A worker asks for 700m cpu: a 1-cpu node holds one.
WORKER_CPU = "700m"
NO_ROOM = "0/3 nodes are available: 3 Insufficient cpu."


def template(**pod_spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = spec()["template"]
    base["spec"]["containers"][0]["resources"] = {"requests": {"cpu": WORKER_CPU, "memory": "256Mi"}}
    base["spec"].update(pod_spec)
    return base


def capacity_node(
    name: str,
    *,
    cpu: str = "1",
    ready: str = "True",
    unschedulable: bool = False,
    taints: list[dict[str, str]] | None = None,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A Node as the API server returns it: Ready condition, allocatable, cordon, taints, labels."""
    node_spec: dict[str, Any] = {}
    if unschedulable:
        node_spec["unschedulable"] = True
    if taints:
        node_spec["taints"] = taints
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
        "spec": node_spec,
        "status": {
            "allocatable": {"cpu": cpu, "memory": "4Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": ready, "lastTransitionTime": timestamp(later(0))}],
        },
    }


NODES = ("n1", "n2", "n3")


def elastic_cluster(
    nodes: list[dict[str, Any]] | None = None, *, grace: int = 30, **overrides: Any
) -> Cluster:
    fields: dict[str, Any] = {
        "workers": 3,
        "elastic": {"minWorkers": 2, "resizeIntervalSeconds": 60},
        "template": template(),
        "preemption": {"gracePeriodSeconds": grace},
        "failurePolicy": {
            "maxRestarts": 2,
            "restartPolicy": "OnFailure",
            "backoffSeconds": 1,
            "nodeLossSeconds": 10,
        },
        **overrides,
    }
    cluster = Cluster(job(**fields))
    for node in nodes if nodes is not None else [capacity_node(name) for name in NODES]:
        cluster.nodes[node["metadata"]["name"]] = node
    return cluster


def created_pods(cluster: Cluster) -> list[dict[str, Any]]:
    return [a.manifest for a in cluster.decisions[-1].of_type(CreateObject) if a.kind == "Pod"]


def world_size(pod: dict[str, Any]) -> str:
    trainer = next(c for c in pod["spec"]["containers"] if c["name"] == "trainer")
    size: str = next(e["value"] for e in trainer["env"] if e["name"] == "WORLD_SIZE")
    return size


def events(cluster: Cluster) -> list[tuple[str, str]]:
    return [(e.reason, e.message) for e in cluster.decisions[-1].of_type(EmitEvent)]


def run_on_nodes(cluster: Cluster, attempt: int, size: int) -> None:
    """Every pod of the attempt runs, rank r on node n<r+1>."""
    for rank in range(size):
        cluster.set_pod(attempt, rank, node=NODES[rank])


# ---- the first attempt: the largest gang that fits --------------------------------------------


@pytest.mark.parametrize(
    ("nodes", "extra", "size"),
    [
        pytest.param([capacity_node(n) for n in NODES], {}, 3, id="three-nodes-hold-three"),
        pytest.param(
            [capacity_node("n1"), capacity_node("n2"), capacity_node("n3", ready="Unknown")],
            {},
            2,
            id="a-node-not-ready-holds-none",
        ),
        pytest.param(
            [capacity_node("n1"), capacity_node("n2"), capacity_node("n3", unschedulable=True)],
            {},
            2,
            id="a-cordoned-node-holds-none",
        ),
        pytest.param(
            [
                capacity_node("n1"),
                capacity_node("n2"),
                capacity_node("n3", taints=[{"key": "gpu", "value": "yes", "effect": "NoSchedule"}]),
            ],
            {},
            2,
            id="an-untolerated-taint-holds-none",
        ),
        pytest.param(
            [
                capacity_node("n1"),
                capacity_node("n2"),
                capacity_node("n3", taints=[{"key": "gpu", "value": "yes", "effect": "NoSchedule"}]),
            ],
            {"template": template(tolerations=[{"key": "gpu", "operator": "Exists"}])},
            3,
            id="a-tolerated-taint-holds-one",
        ),
        pytest.param(
            [
                capacity_node("n1", labels={"pool": "a"}),
                capacity_node("n2", labels={"pool": "a"}),
                capacity_node("n3"),
            ],
            {"template": template(nodeSelector={"pool": "a"})},
            2,
            id="the-node-selector-picks-two",
        ),
        pytest.param(
            [capacity_node("n1", cpu="2"), capacity_node("n2", cpu="2")],
            {},
            3,
            id="two-big-nodes-hold-four-at-most-workers",
        ),
        pytest.param([capacity_node("n1")], {}, 2, id="one-fits-but-minWorkers-is-two"),
        pytest.param([], {}, 3, id="no-nodes-seen-asks-for-workers"),
    ],
)
def test_an_elastic_attempt_starts_with_the_largest_gang_that_fits(
    nodes: list[dict[str, Any]], extra: dict[str, Any], size: int
) -> None:
    cluster = elastic_cluster(nodes, **extra)
    cluster.reconcile()
    status = cluster.status
    assert status["phase"] == "Pending"
    assert status["message"] == f"starting attempt 0 with {size} workers"
    assert status["workers"]["desired"] == 3 and status["workers"]["current"] == size
    pods = created_pods(cluster)
    assert sorted(p["metadata"]["name"] for p in pods) == [f"digits-0-{rank}" for rank in range(size)]
    assert {world_size(p) for p in pods} == {str(size)}
    resized = [message for reason, message in events(cluster) if reason == "Resized"]
    assert resized == ([] if size == 3 else [resized[0]])
    if size < 3:
        assert resized[0].startswith(f"attempt 0 runs {size} of 3 workers")


def test_a_fixed_gang_shows_no_sizes_and_ignores_the_nodes() -> None:
    cluster = elastic_cluster([capacity_node("n1")], elastic=None)
    assert cluster.job is not None
    cluster.job["spec"].pop("elastic")
    cluster.reconcile()
    assert cluster.status["workers"] == {"active": 0, "ready": 0, "succeeded": 0, "failed": 0}
    assert len(created_pods(cluster)) == 3


def test_min_workers_above_workers_fails_the_job_naming_both() -> None:
    cluster = elastic_cluster(elastic={"minWorkers": 4})
    cluster.reconcile()
    status = cluster.status
    assert (status["phase"], status["reason"]) == ("Failed", "InvalidSpec")
    assert status["message"] == (
        "spec.elastic.minWorkers: 4 is more than spec.workers (3), the most the gang runs with"
    )
    assert created_pods(cluster) == []


# ---- a lost node: the next attempt is smaller ------------------------------------------------


def running_at(cluster: Cluster, size: int, attempt: int = 0, at: float = 1) -> None:
    cluster.reconcile(later(at))
    run_on_nodes(cluster, attempt, size)
    cluster.reconcile(later(at + 1))
    assert cluster.status["phase"] == "Running", cluster.status.get("message")
    assert cluster.status["workers"]["current"] == size


def test_a_lost_node_restarts_the_gang_with_the_workers_that_still_fit() -> None:
    cluster = elastic_cluster()
    running_at(cluster, 3)
    cluster.nodes["n3"] = capacity_node("n3", ready="Unknown")
    cluster.nodes["n3"]["status"]["conditions"][0]["lastTransitionTime"] = timestamp(later(5))
    cluster.reconcile(later(16))
    status = cluster.status
    assert (status["phase"], status["reason"]) == ("Restarting", "NodeLost")
    assert (status["disruptions"], status["restarts"]) == (1, 0)
    # The lost node's pod is force-deleted, the others go gracefully; then the smaller attempt.
    cluster.finish_terminating()
    cluster.pods.pop("digits-0-2", None)
    cluster.reconcile(later(17))
    status = cluster.status
    assert (status["phase"], status["attempt"]) == ("Pending", 1)
    assert status["workers"]["current"] == 2 and status["workers"]["desired"] == 3
    assert sorted(p["metadata"]["name"] for p in created_pods(cluster)) == ["digits-1-0", "digits-1-1"]
    assert {world_size(p) for p in created_pods(cluster)} == {"2"}
    # The coordinator waits for the reports of two ranks, not three.
    rank0 = next(p for p in created_pods(cluster) if p["metadata"]["name"] == "digits-1-0")
    command = next(c for c in rank0["spec"]["initContainers"] if c["name"] == "coordinator")["command"]
    assert command[command.index("--world-size") + 1] == "2"
    assert [m for r, m in events(cluster) if r == "Resized"] == [
        "attempt 1 runs 2 of 3 workers (was 3): the nodes have no room for more"
    ]
    # The smaller gang finishing is a success.
    for rank in range(2):
        cluster.set_pod(1, rank, node=NODES[rank], phase="Succeeded", exit_code=0)
    cluster.reconcile(later(30))
    assert cluster.status["phase"] == "Succeeded"
    assert cluster.status["message"] == "all 2 workers exited 0 (attempt 1)"


# ---- below spec.workers: scale up through the notice -----------------------------------------


def running_at_two() -> Cluster:
    cluster = elastic_cluster([capacity_node("n1"), capacity_node("n2"), capacity_node("n3", ready="False")])
    running_at(cluster, 2)
    return cluster


@pytest.mark.parametrize(
    ("at", "room", "notice"),
    [
        pytest.param(30, True, False, id="before-the-interval-no-check"),
        pytest.param(61, False, False, id="after-the-interval-no-room"),
        pytest.param(61, True, True, id="after-the-interval-room-for-one-more"),
    ],
)
def test_a_gang_below_workers_scales_up_only_after_the_interval_and_with_room(
    at: float, room: bool, notice: bool
) -> None:
    cluster = running_at_two()
    if room:
        cluster.nodes["n3"] = capacity_node("n3")
    decision = cluster.reconcile(later(at))
    status = cluster.status
    assert status["phase"] == "Running"
    assert ("notice" in status) is notice
    assert decision.of_type(DeletePods) == []
    if notice:
        assert status["notice"]["reason"] == "ScaleUp"
        assert status["notice"]["ranks"] == [0, 1]
        assert status["notice"]["message"] == (
            "3 of 3 workers fit and the gang runs 2: scaling up (elastic.resizeIntervalSeconds)"
        )
        assert [r for r, _ in events(cluster)] == ["PreemptionNotice"]
    else:
        assert events(cluster) == []
        # It looks again when the interval is due (from the attempt's start), or an interval later.
        assert decision.requeue_after is not None
        assert decision.requeue_after <= (60 - (at - 1) if at < 61 else 60)


def test_a_scale_up_commits_then_restarts_bigger_counted_as_a_disruption() -> None:
    cluster = running_at_two()
    cluster.nodes["n3"] = capacity_node("n3")
    cluster.reconcile(later(61))
    assert cluster.job is not None
    # The coordinator picks iteration 9, the gang commits it.
    cluster.job["status"].update(
        iteration=9,
        stopAt={"attempt": 0, "iteration": 9},
        latestCheckpoint={
            "uri": "s3://trainjob/checkpoints/ml/digits/checkpoint_000009",
            "iteration": 9,
            "attempt": 0,
            "committedAt": timestamp(later(62)),
        },
    )
    for rank in range(2):
        cluster.set_pod(0, rank, node=NODES[rank], phase="Succeeded", exit_code=0)
    cluster.reconcile(later(63))
    status = cluster.status
    assert (status["phase"], status["reason"]) == ("Restarting", "ScaleUp")
    assert (status["disruptions"], status["restarts"]) == (1, 0)
    disrupted = [m for r, m in events(cluster) if r == "Disrupted"]
    assert len(disrupted) == 1 and "ScaleUp: 3 of 3 workers fit" in disrupted[0]
    cluster.finish_terminating()
    cluster.pods.clear()  # the succeeded pods of attempt 0 are deleted too
    cluster.reconcile(later(64))
    status = cluster.status
    assert (status["phase"], status["attempt"], status["workers"]["current"]) == ("Pending", 1, 3)
    pods = created_pods(cluster)
    assert len(pods) == 3 and {world_size(p) for p in pods} == {"3"}
    assert all(
        {
            "name": "TRAINJOB_RESUME_CHECKPOINT",
            "value": "s3://trainjob/checkpoints/ml/digits/checkpoint_000009",
        }
        in next(c for c in p["spec"]["containers"] if c["name"] == "trainer")["env"]
        for p in pods
    )
    assert [m for r, m in events(cluster) if r == "Resized"] == [
        "attempt 1 runs 3 of 3 workers (was 2): the nodes have room for it"
    ]
    # At spec.workers it no longer looks for room.
    running_at(cluster, 3, attempt=1, at=65)
    cluster.reconcile(later(200))
    assert "notice" not in cluster.status and cluster.status["phase"] == "Running"


def test_without_a_grace_a_scale_up_restarts_at_once() -> None:
    cluster = elastic_cluster(
        [capacity_node("n1"), capacity_node("n2"), capacity_node("n3", ready="False")], grace=0
    )
    running_at(cluster, 2)
    cluster.nodes["n3"] = capacity_node("n3")
    cluster.reconcile(later(61))
    status = cluster.status
    assert (status["phase"], status["reason"], status["disruptions"]) == ("Restarting", "ScaleUp", 1)
    assert "notice" not in status


# ---- unschedulable: shrink to what the scheduler placed --------------------------------------


def test_an_unschedulable_pod_past_the_interval_shrinks_the_gang_to_the_scheduled_pods() -> None:
    # The nodes look roomy (other workloads' pods are not seen), but the scheduler finds no room.
    cluster = elastic_cluster()
    cluster.reconcile()
    cluster.set_pod(0, 0, node="n1")
    cluster.set_pod(0, 1, node="n2")
    cluster.set_pod(0, 2, phase="Pending", ready=False, unscheduled=("Unschedulable", NO_ROOM, later(1)))
    cluster.reconcile(later(30))
    assert (cluster.status["phase"], cluster.status["reason"]) == ("Pending", "Unschedulable")
    cluster.reconcile(later(61))
    status = cluster.status
    assert (status["phase"], status["reason"]) == ("Restarting", "ScaleDown")
    assert (status["disruptions"], status["restarts"]) == (1, 0)
    assert status["workers"]["current"] == 2
    assert (
        "unschedulable for 60s with 2 of 3 pods scheduled: the next attempt runs 2 workers"
        in status["message"]
    )
    assert [m for r, m in events(cluster) if r == "Resized"] == [
        "attempt 1 runs 2 of 3 workers (was 3): only 2 could be scheduled"
    ]
    cluster.finish_terminating()
    cluster.reconcile(later(62))
    # The nodes still look roomy: the scheduler's verdict wins for this attempt.
    assert (cluster.status["phase"], cluster.status["workers"]["current"]) == ("Pending", 2)
    assert len(created_pods(cluster)) == 2
    assert [r for r, _ in events(cluster) if r == "Resized"] == [], "one event per resize"


@pytest.mark.parametrize(
    ("startup", "phase"),
    [
        pytest.param({}, "Pending", id="waits-as-a-fixed-gang"),
        pytest.param({"unschedulableTimeoutSeconds": 60, "onTimeout": "Fail"}, "Failed", id="or-its-timeout"),
    ],
)
def test_fewer_scheduled_than_min_workers_does_not_shrink(startup: dict[str, Any], phase: str) -> None:
    cluster = elastic_cluster(startupPolicy=startup)
    cluster.reconcile()
    cluster.set_pod(0, 0, node="n1")
    for rank in (1, 2):
        cluster.set_pod(
            0, rank, phase="Pending", ready=False, unscheduled=("Unschedulable", NO_ROOM, later(1))
        )
    cluster.reconcile(later(120))
    assert cluster.status["phase"] == phase
    assert cluster.status.get("disruptions", 0) == 0


# ---- what a worker pod asks for, as the scheduler adds it up ---------------------------------


@pytest.mark.parametrize(
    ("pod_spec", "requests"),
    [
        pytest.param(
            {"containers": [{"name": "trainer", "resources": {"requests": {"cpu": "500m"}}}]},
            {"cpu": Decimal("0.5")},
            id="requests",
        ),
        pytest.param(
            {
                "containers": [
                    {
                        "name": "trainer",
                        "resources": {
                            "limits": {"nvidia.com/gpu": "1", "cpu": "2"},
                            "requests": {"cpu": "1"},
                        },
                    }
                ]
            },
            {"cpu": Decimal(1), "nvidia.com/gpu": Decimal(1)},
            id="a-limit-without-a-request-requests-the-limit",
        ),
        pytest.param(
            {
                "containers": [
                    {"name": "trainer", "resources": {"requests": {"cpu": "500m"}}},
                    {"name": "log", "resources": {"requests": {"cpu": "100m", "memory": "1Gi"}}},
                ],
                "initContainers": [{"name": "fetch", "resources": {"requests": {"cpu": "2"}}}],
            },
            {"cpu": Decimal(2), "memory": Decimal(2**30)},
            id="containers-summed-an-init-container-if-larger",
        ),
        pytest.param({"containers": [{"name": "trainer"}]}, {}, id="nothing"),
    ],
)
def test_a_worker_pods_requests(pod_spec: dict[str, Any], requests: dict[str, Decimal]) -> None:
    assert pod_requests({"spec": pod_spec}) == requests
