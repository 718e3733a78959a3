"""A cluster's bad days, end to end on three local nodes with kubectl as the client and the digits
example as the trainer (README "Bad days"): an image nobody can pull, a GPU nobody has, a missing
Secret key, a node that crashes and a node that is partitioned away.

One multi-node stack per module (per xdist worker); every test has a namespace of its own. Each
test prints the seconds from its fault to the job's status saying so (the scenario table).
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.kube import Cluster
from tests.support.manifests import digits_job, python, trainjob
from tests.support.nodes import (
    CPU_NODES,
    GPU_NODE,
    StatusWatch,
    committed_checksums,
    container_pid,
    group_states,
    multinode_stack,
    node_of,
    pod,
    start_node,
    trainer_log,
    trainjob_cli,
    wait_for_value,
)
from tests.support.processes import wait_until
from trainjob_operator.local.stack import LocalStack
from worker_sdk.storage import open_storage

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


def test_a_pod_the_api_server_refuses_is_named_on_the_job_until_it_is_allowed(
    cluster: Cluster, s3_credentials: None
) -> None:
    priority_class = f"high-{cluster.namespace}"  # cluster-scoped: one per test namespace
    manifest = digits_job("refused", epochs=1)
    manifest["spec"]["workers"] = 1
    manifest["spec"]["template"]["spec"]["priorityClassName"] = priority_class
    watch = StatusWatch(cluster, "refused")
    applied = time.monotonic()
    cluster.apply(manifest)

    said = watch.seconds_until(
        applied, "FailedCreate on the job", lambda s: s.get("reason") == "FailedCreate", 60
    )
    status = watch.poll()
    assert status["phase"] == "Pending"
    assert status["message"] == (
        "pod refused-0-0: the API server refused to create it (403 Forbidden): "
        f'pods "refused-0-0" is forbidden: no PriorityClass with name {priority_class} was found'
    )
    assert cluster.pods("refused") == []
    described = cluster.kubectl("describe", "trainjob", "refused")
    assert re.search(r"Warning\s+FailedCreate\s+.*no PriorityClass with name", described), described

    allowed = time.monotonic()
    cluster.kubectl("create", "priorityclass", priority_class, "--value=1000")
    try:
        # The next try (REFUSED_CREATE_RETRY_SECONDS) creates the pod; running is what matters here.
        started = watch.seconds_until(
            allowed, "the job to run once allowed", lambda s: s.get("phase") in ("Running", "Succeeded"), 60
        )
        assert node_of(cluster, "refused-0-0") is not None
        refusals = [e for e in cluster.events("refused") if e["reason"] == "FailedCreate"]
        assert len(refusals) == 1, "one event per refusal, not one per try"
    finally:
        cluster.kubectl("delete", "priorityclass", priority_class, "--ignore-not-found")
    report("pod refused by the API server (FailedCreate on the status)", said, watch)
    report("PriorityClass created (Running)", started, watch)


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
    cluster: Cluster, stack: LocalStack, name: str, *, keep_processes: bool, max_restarts: int | None = None
) -> tuple[StatusWatch, str, int, float]:
    """Run digits on two nodes, wait for a commit, stop rank 1's node; returns the watch, the lost
    node, the iteration committed before and the seconds until the status said NodeLost.
    `max_restarts` overrides the example's failurePolicy.maxRestarts."""
    manifest = digits_job(name, epochs=LOSS_EPOCHS, step_sleep=0.08, sharded=True)
    manifest["spec"]["failurePolicy"]["nodeLossSeconds"] = 3
    if max_restarts is not None:
        manifest["spec"]["failurePolicy"]["maxRestarts"] = max_restarts
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


@pytest.mark.parametrize(
    ("name", "max_restarts"),
    [
        ("crash", None),
        # No restart left: rank 0's failure (its collective broke with the crash) would end the
        # job unless the node is seen lost first: on a real cluster only node Leases say so in
        # time (reconcile's `_held_for_node_leases`). This stack's 2 s node monitor grace marks the
        # node Unknown about as soon, so here either path ends it as a disruption; the table tests
        # in tests/operator/test_reconcile_bad_days.py pin the wait itself.
        ("crash-no-restarts", 0),
    ],
)
def test_a_crashed_node_restarts_the_gang_on_the_others_as_a_disruption(
    cluster: Cluster, stack: LocalStack, s3_credentials: None, name: str, max_restarts: int | None
) -> None:
    watch, lost, committed, said = lose_rank_1_mid_run(
        cluster, stack, name, keep_processes=False, max_restarts=max_restarts
    )
    try:
        wait_for_value(
            lambda: node_of(cluster, f"{name}-1-1") != lost and node_of(cluster, f"{name}-1-0") != lost,
            60,
            "the new attempt on the remaining nodes",
            cluster,
        )
        check_resumed_and_succeeded(cluster, watch, name, committed)
    finally:
        start_node(stack, lost)
    report(
        f"node of rank 1 crashed (maxRestarts {max_restarts if max_restarts is not None else 3})", said, watch
    )


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


ZOMBIE_AT = 4  # the iteration rank 1 of attempt 0 freezes before uploading
ZOMBIE_STEPS = 24
# Each rank writes a file of its own to every checkpoint; rank 0 also the step it resumes from.
# Attempt 0's rank 1 freezes (SIGSTOP, its machine paused) just before it uploads ZOMBIE_AT.
FREEZES_BEFORE_UPLOADING = python(
    "import os, signal, sys, tempfile, time\n"
    "from pathlib import Path\n"
    "import worker_sdk\n"
    "attempt, rank = int(os.environ['TRAINJOB_ATTEMPT']), int(os.environ['RANK'])\n"
    "start = 1\n"
    "checkpoint = worker_sdk.get_checkpoint()\n"
    "if checkpoint is not None:\n"
    "    with checkpoint.as_directory() as d:\n"
    "        start = int((Path(d) / 'step.txt').read_text()) + 1\n"
    "    print(f'resumed from {checkpoint.uri} at step {start}', flush=True)\n"
    f"for step in range(start, {ZOMBIE_STEPS} + 1):\n"
    f"    if (attempt, rank, step) == (0, 1, {ZOMBIE_AT}):\n"
    "        print(f'freezing before uploading step {step}', flush=True)\n"
    "        os.kill(os.getpid(), signal.SIGSTOP)\n"
    "        print('thawed: uploading and reporting as attempt 0', flush=True)\n"
    "    with tempfile.TemporaryDirectory() as d:\n"
    "        Path(d, f'rank-{rank}.txt').write_text(f'attempt {attempt} rank {rank} step {step}\\n')\n"
    "        if rank == 0:\n"
    "            Path(d, 'step.txt').write_text(str(step))\n"
    "        worker_sdk.report({'step': step}, checkpoint=worker_sdk.Checkpoint.from_directory(d))\n"
    "    time.sleep(0.4)\n"
)


def test_a_frozen_rank_that_thaws_after_the_next_attempt_committed_changes_nothing(
    cluster: Cluster, stack: LocalStack, s3_credentials: None, tmp_path: Path
) -> None:
    """Scenario 6: rank 1 freezes (SIGSTOP) just before it uploads iteration k, its machine with
    it (the node stops, processes kept: nothing on it can kill the frozen process); the stall
    ends the attempt, the next one commits k, then the rank thaws (SIGCONT) and uploads k and
    reports as attempt 0: the committed k is unchanged and loads, and the report is not taken
    (the only coordinator that would hear attempt 0 is gone; a later one answers 409)."""
    name = "zombie"
    manifest = trainjob(
        name,
        FREEZES_BEFORE_UPLOADING,
        # The stall (20 s: room for a loaded machine to start the next attempt's processes and
        # fetch the checkpoint before their first report) ends the attempt before the paused node
        # counts as lost.
        failure_policy={"maxRestarts": 2, "nodeLossSeconds": 25},
        extra_spec={"stallTimeoutSeconds": 20, "checkpoints": {"numToKeep": 50}},
        storage_uri=f"s3://trainjob/e2e-{name}-{cluster.namespace}",
    )
    # A rank gives up on reports it cannot deliver this long after its program ended (the
    # default, 120 s, would only make the zombie's end slower to see).
    trainer(manifest)["env"] = [{"name": "TRAINJOB_FINAL_WAIT_SECONDS", "value": "10"}]
    watch = StatusWatch(cluster, name)
    cluster.apply(manifest)
    frozen_pod = f"{name}-0-1"
    watch.until(
        "rank 1 to freeze (or the job to end)",
        lambda s: (
            s.get("phase") in ("Succeeded", "Failed")
            or "freezing before uploading" in trainer_log(cluster, frozen_pod)
        ),
        120,
    )
    assert watch.poll().get("phase") not in ("Succeeded", "Failed"), (
        trainer_log(cluster, frozen_pod) + cluster.describe_job(name)()
    )
    running = pod(cluster, frozen_pod)
    assert running is not None
    lost = str(running["spec"]["nodeName"])
    pid, uid = container_pid(running, "trainer"), str(running["metadata"]["uid"])
    assert "T" in group_states(pid), f"rank 1 is not stopped: {group_states(pid)}"
    assert stack.cluster is not None
    frozen_at = time.monotonic()
    stack.cluster.stop_node(lost, keep_processes=True)  # the machine is paused with its process
    try:
        said = watch.seconds_until(
            frozen_at,
            "the stall on the status",
            lambda s: s.get("reason") in ("WorkerFailed", "NodeLost"),
            60,
        )
        stalled = [e for e in cluster.events(name) if e.get("reason") == "Stalled"]
        assert stalled and "no report from rank 1" in stalled[0]["message"], cluster.events(name)
        # The next attempt commits ZOMBIE_AT; the frozen rank is still there, stopped.
        committed = watch.until(
            f"attempt 1 to commit iteration {ZOMBIE_AT}",
            lambda s: (
                (s.get("latestCheckpoint") or {}).get("iteration", 0) >= ZOMBIE_AT and s.get("attempt") == 1
            ),
            120,
        )
        assert "T" in group_states(pid), "the frozen rank was killed: no zombie to test"
        before = committed_checksums(stack, committed)
        k_uri = next(e["uri"] for e in committed["checkpoints"] if e["iteration"] == ZOMBIE_AT)
        assert any(uri.startswith(k_uri) for uri in before), (k_uri, sorted(before))
        os.killpg(pid, signal.SIGCONT)
        # The zombie goes on as attempt 0: it uploads k under attempt-0/ and reports it.
        assert stack.seaweedfs is not None
        storage = open_storage(k_uri, endpoint_url=stack.seaweedfs.endpoint, retry_budget_seconds=10)
        zombie_log = stack.cluster.node_state_dir / "pods" / uid / "logs" / "trainer" / "0.log"
        # (Rank 0 of attempt 0 had stored its part of k before the stall, under attempt-0/ too.)
        landed = wait_until(
            "the zombie's upload of k",
            lambda: next(
                (o.key for o in storage.list_objects() if o.key.endswith("attempt-0/rank-1.txt")), None
            ),
            60,
            lambda: f"{group_states(pid)}\n{zombie_log.read_text()[-3000:]}",
        )
        # Its report cannot be taken: the coordinator it knows served attempt 0 and is gone with
        # it (the address is attempt-scoped), and no later coordinator takes an attempt 0 report.
        refused = wait_until(
            "the zombie's report of k refused",
            lambda: re.search(f"report of iteration {ZOMBIE_AT} not delivered.*", zombie_log.read_text()),
            60,
            lambda: zombie_log.read_text()[-3000:],
        ).group(0)
        assert storage.get_bytes(landed) == f"attempt 0 rank 1 step {ZOMBIE_AT}\n".encode()
        assert "thawed: uploading and reporting as attempt 0" in zombie_log.read_text()
        after_status = cluster.status(name)
        after = committed_checksums(stack, after_status)
        assert {uri: after.get(uri) for uri in before} == before, "a committed checkpoint file changed"
        # Nothing of attempt 0 was taken: k is attempt 1's, and the status never went back.
        assert all(
            (e.get("attempt"), e["iteration"]) != (0, ZOMBIE_AT)
            for e in after_status.get("checkpoints") or []
        )
        assert (after_status.get("attempt"), after_status.get("phase")) in ((1, "Running"), (1, "Succeeded"))
    finally:
        start_node(stack, lost)  # back: it kills the zombie, deleted while it was away
    wait_for_value(lambda: not group_states(pid) or None, 30, "the zombie killed", cluster)
    status = watch.until("the job to finish", lambda s: s.get("phase") in ("Succeeded", "Failed"), 180)
    assert status["phase"] == "Succeeded", status.get("message")
    # k loads: downloaded and verified against the manifest's SHA-256s by the CLI.
    target = tmp_path / "k"
    download = trainjob_cli(
        stack, cluster.namespace, "checkpoints", "download", name, str(target), "--iteration", str(ZOMBIE_AT)
    )
    assert download.returncode == 0, download.stderr
    assert (target / "rank-1.txt").read_text() == f"attempt 1 rank 1 step {ZOMBIE_AT}\n"
    print(f"zombie wrote {landed}; {refused}")
    report("rank frozen before uploading k, thawed after the next attempt committed k", said, watch)
