"""A cluster's bad days, end to end on three local nodes with kubectl as the client and the digits
example as the trainer (README "Bad days"): an image nobody can pull, a GPU nobody has, a missing
Secret key, a node that crashes and a node that is partitioned away.

One multi-node stack per module (per xdist worker); every test has a namespace of its own. Each
test prints the seconds from its fault to the job's status saying so (the scenario table).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.kube import Cluster
from tests.support.manifests import digits_job
from tests.support.nodes import (
    CPU_NODES,
    GPU_NODE,
    StatusWatch,
    committed_checksums,
    multinode_stack,
    node_of,
    pod,
    start_node,
    trainer_log,
    wait_for_value,
)
from trainjob_operator.local.stack import LocalStack

pytestmark = pytest.mark.slow

LOSS_EPOCHS = 5  # the lost-node runs: a commit, the fault, then enough epochs to resume into


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """Overrides the session's one-node stack for this module: three nodes, the GPU one lost."""
    with multinode_stack(tmp_path_factory.mktemp("bad-days")) as running:
        yield running


@pytest.fixture
def s3_credentials(stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> None:
    assert stack.seaweedfs is not None
    for key, value in stack.seaweedfs.credentials_env.items():
        monkeypatch.setenv(key, value)


def trainer(manifest: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = manifest["spec"]["template"]["spec"]["containers"][0]
    return container


def report(scenario: str, seconds: float, watch: StatusWatch) -> None:
    print(f"\n[scenario] {scenario}: {seconds:.1f} s from the fault to the status; {watch.timeline}")


def test_an_unpullable_image_fails_the_job_naming_it_without_a_restart_loop(cluster: Cluster) -> None:
    manifest = digits_job("pull", epochs=1)
    trainer(manifest)["image"] = "registry.invalid/trainer:1"
    manifest["spec"]["startupPolicy"] = {"failFastGraceSeconds": 3}
    watch = StatusWatch(cluster, "pull")
    applied = time.monotonic()
    cluster.apply(manifest)

    said = watch.seconds_until(
        applied,
        "the image named on the status",
        lambda s: "registry.invalid/trainer:1" in (s.get("message") or ""),
        60,
    )
    status = watch.until("the job to fail", lambda s: s.get("phase") == "Failed", 60)

    assert status["reason"] in ("ErrImagePull", "ImagePullBackOff"), status
    assert "registry.invalid/trainer:1" in status["message"]
    pods_ready = next(c for c in status["conditions"] if c["type"] == "PodsReady")
    assert pods_ready["status"] == "False" and "registry.invalid/trainer:1" in pods_ready["message"]
    assert (status.get("attempt", 0), status.get("restarts", 0)) == (0, 0), "no restart loop"
    # Nothing left running: no pod of the job still holds a node.
    wait_for_value(
        lambda: (
            all(p["status"].get("phase") not in ("Pending", "Running") for p in cluster.pods("pull")) or None
        ),
        30,
        "the job's pods to stop",
        cluster,
    )
    phases = [s.get("phase") for s in watch.seen]
    assert "Restarting" not in phases, phases
    report("unpullable image", said, watch)


def test_a_gpu_nobody_has_waits_with_the_schedulers_message_or_fails_at_its_timeout(
    cluster: Cluster, stack: LocalStack, s3_credentials: None
) -> None:
    def gpu_job(name: str, startup: dict[str, Any]) -> dict[str, Any]:
        manifest = digits_job(name, epochs=2)
        manifest["spec"]["workers"] = 1
        trainer(manifest)["resources"] = {"limits": {"nvidia.com/gpu": 1}}
        manifest["spec"]["startupPolicy"] = startup
        return manifest

    timed, waiting = StatusWatch(cluster, "gpu-timeout"), StatusWatch(cluster, "gpu-wait")
    applied = time.monotonic()
    cluster.apply(gpu_job("gpu-timeout", {"unschedulableTimeoutSeconds": 5, "onTimeout": "Fail"}))
    cluster.apply(gpu_job("gpu-wait", {}))

    said = waiting.seconds_until(
        applied, "the scheduler's message on the job", lambda s: s.get("reason") == "Unschedulable", 60
    )
    status = waiting.poll()
    assert status["phase"] == "Pending"
    assert "Insufficient nvidia.com/gpu" in status["message"], status["message"]
    assert "0/3 nodes are available" in status["message"], status["message"]

    failed = timed.until("the timed job to fail", lambda s: s.get("phase") == "Failed", 60)
    assert "nvidia.com/gpu" in failed["message"], failed["message"]
    assert failed.get("restarts", 0) == 0
    # Without a timeout it waits: still Pending after the other one gave up.
    assert waiting.poll()["phase"] == "Pending"

    joined = time.monotonic()
    start_node(stack, GPU_NODE)
    started = waiting.seconds_until(
        joined, "the job to run on the GPU node", lambda s: s.get("phase") == "Running", 60
    )
    assert node_of(cluster, "gpu-wait-0-0") == GPU_NODE
    done = waiting.until("the job to succeed", lambda s: s.get("phase") in ("Succeeded", "Failed"), 180)
    assert done["phase"] == "Succeeded", done.get("message")
    assert done["iteration"] == 2
    report("GPU nobody has (Unschedulable on the status)", said, waiting)
    report("GPU node joins (Running)", started, waiting)


def test_a_missing_secret_key_is_named_on_the_job(cluster: Cluster) -> None:
    manifest = digits_job("secret", epochs=1)
    trainer(manifest)["env"] = [
        {"name": "API_TOKEN", "valueFrom": {"secretKeyRef": {"name": "trainjob-s3", "key": "no-such-key"}}}
    ]
    manifest["spec"]["startupPolicy"] = {"failFastGraceSeconds": 3}
    watch = StatusWatch(cluster, "secret")
    applied = time.monotonic()
    cluster.apply(manifest)

    said = watch.seconds_until(
        applied,
        "CreateContainerConfigError on the job",
        lambda s: s.get("reason") == "CreateContainerConfigError",
        60,
    )
    assert "no-such-key" in watch.poll()["message"]
    status = watch.until("the job to fail", lambda s: s.get("phase") == "Failed", 60)
    assert status["reason"] == "CreateContainerConfigError", status
    assert "no-such-key" in status["message"] and "trainjob-s3" in status["message"], status["message"]
    assert status.get("restarts", 0) == 0
    report("missing Secret key", said, watch)


def lose_rank_1_mid_run(
    cluster: Cluster, stack: LocalStack, name: str, *, keep_processes: bool
) -> tuple[StatusWatch, str, int, float]:
    """Run digits on two nodes, wait for a commit, stop rank 1's node; returns the watch, the lost
    node, the iteration committed before and the seconds until the status said NodeLost."""
    manifest = digits_job(name, epochs=LOSS_EPOCHS, step_sleep=0.08, sharded=True)
    manifest["spec"]["failurePolicy"]["nodeLossSeconds"] = 3
    manifest["spec"]["checkpoints"]["numToKeep"] = 20  # keep every commit, to compare them all
    watch = StatusWatch(cluster, name)
    cluster.apply(manifest)
    watch.until(
        "a committed checkpoint", lambda s: (s.get("latestCheckpoint") or {}).get("iteration", 0) >= 1, 180
    )
    node0, node1 = node_of(cluster, f"{name}-0-0"), node_of(cluster, f"{name}-0-1")
    assert node1 in CPU_NODES and node0 != node1, f"ranks 0 and 1 share {node0}: the scenario needs two nodes"
    committed = int(watch.poll()["latestCheckpoint"]["iteration"])
    assert stack.cluster is not None
    lost_at = time.monotonic()
    stack.cluster.stop_node(node1, keep_processes=keep_processes)
    try:
        said = watch.seconds_until(
            lost_at,
            "the lost node on the status",
            lambda s: (s.get("disruptions") or 0) >= 1 or s.get("reason") == "NodeLost",
            60,
        )
    except BaseException:
        # The module's other scenarios share this stack and need the node back.
        start_node(stack, node1)
        raise
    return watch, node1, committed, said


def check_resumed_and_succeeded(
    cluster: Cluster, watch: StatusWatch, name: str, committed: int
) -> dict[str, Any]:
    status = watch.until("the job to finish", lambda s: s.get("phase") in ("Succeeded", "Failed"), 240)
    assert status["phase"] == "Succeeded", status.get("message")
    assert status["iteration"] == LOSS_EPOCHS
    assert (status.get("disruptions"), status.get("restarts", 0)) == (1, 0), status
    assert status["attempt"] == 1
    log = trainer_log(cluster, f"{name}-1-0")
    resumed = [line for line in log.splitlines() if "resumed from" in line]
    assert resumed, log[-2000:]
    resumed_epoch = int(resumed[0].rsplit("at epoch", 1)[1])
    assert resumed_epoch >= committed, f"resumed at epoch {resumed_epoch}, {committed} were committed"
    return status


def test_a_crashed_node_restarts_the_gang_on_the_others_as_a_disruption(
    cluster: Cluster, stack: LocalStack, s3_credentials: None
) -> None:
    watch, lost, committed, said = lose_rank_1_mid_run(cluster, stack, "crash", keep_processes=False)
    try:
        wait_for_value(
            lambda: node_of(cluster, "crash-1-1") != lost and node_of(cluster, "crash-1-0") != lost,
            60,
            "the new attempt on the remaining nodes",
            cluster,
        )
        check_resumed_and_succeeded(cluster, watch, "crash", committed)
    finally:
        start_node(stack, lost)
    report("node of rank 1 crashed", said, watch)


def test_a_partitioned_node_is_fenced_off_and_nothing_committed_changes(
    cluster: Cluster, stack: LocalStack, s3_credentials: None
) -> None:
    watch, lost, committed, said = lose_rank_1_mid_run(cluster, stack, "partition", keep_processes=True)
    try:
        # The old rank 1 is stuck Terminating on the unreachable node until the operator
        # force-deletes it; its process runs on, unseen.
        wait_for_value(
            lambda: pod(cluster, "partition-0-1") is None, 60, "the old rank 1 to be force-deleted", cluster
        )
        reasons = {e.get("reason") for e in cluster.events("partition")}
        status = check_resumed_and_succeeded(cluster, watch, "partition", committed)
        before = committed_checksums(stack, status)
        assert before, "no committed checkpoint to compare"
    finally:
        # Back from the partition: the node kills what was deleted meanwhile (the old rank 1).
        start_node(stack, lost)
    time.sleep(3)  # anything the old rank still had in flight lands (or not) now
    after = committed_checksums(stack, cluster.status("partition"))
    assert after == before, "a committed checkpoint file changed after the partition healed"
    assert "Disrupted" in reasons, reasons
    report("node of rank 1 partitioned", said, watch)
