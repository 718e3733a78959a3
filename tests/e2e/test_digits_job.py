"""The digits DDP example as a user runs it: `kubectl apply` the example, watch `kubectl get tj`,
find committed checkpoints in SeaweedFS that load with torch; kill a worker and see the gang
resume from the latest committed checkpoint."""

from __future__ import annotations

import itertools
import os
import signal
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from tests.support.kube import Cluster
from tests.support.manifests import digits_job
from tests.support.processes import REPO_ROOT, wait_for
from trainjob_operator.local.stack import LocalStack
from worker_sdk.checkpoint import committed_checkpoint
from worker_sdk.torch import load_state


def storage_env(stack: LocalStack) -> dict[str, str]:
    assert stack.seaweedfs is not None
    return stack.seaweedfs.credentials_env


@pytest.fixture
def s3_credentials(stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in storage_env(stack).items():
        monkeypatch.setenv(key, value)


def progress_columns(cluster: Cluster, name: str) -> tuple[str, str, str]:
    """The Iteration, Progress and ETA columns of `kubectl get tj NAME`, from one listing, as a
    user sees them ("" for a blank cell: kubectl leaves a column without a value empty)."""
    header, row = cluster.kubectl("get", "tj", name).splitlines()[:2]
    starts = [header.index(column) for column in ("ITERATION", "PROGRESS", "ETA", "RESTARTS")]
    iteration, progress, eta = (row[start:end].strip() for start, end in itertools.pairwise(starts))
    return iteration, progress, eta


@pytest.mark.slow
def test_digits_runs_to_success_with_climbing_progress_and_loadable_checkpoints(
    cluster: Cluster, s3_credentials: None
) -> None:
    cluster.apply(digits_job("digits", epochs=5, step_sleep=0.05))

    seen: set[tuple[str, str, str]] = set()

    def finished() -> bool:
        seen.add(progress_columns(cluster, "digits"))
        return cluster.status("digits").get("phase") in ("Succeeded", "Failed")

    wait_for(finished, 240, "digits to finish", cluster.describe_job("digits"))
    status = cluster.status("digits")

    assert status["phase"] == "Succeeded", status.get("message")
    iterations = {iteration for iteration, _, _ in seen}
    assert len(iterations - {"", "<none>"}) >= 2, f"iteration seen climbing: {sorted(seen)}"
    # The example tells its total (its epochs): the Progress column is iteration over it throughout
    # (blank before the first report, which tells the total).
    for iteration, progress, _ in seen:
        assert progress in ("", "<none>") or progress == str(int(iteration) * 100 // 5), sorted(seen)
    assert progress_columns(cluster, "digits") == ("5", "100", "0s")
    assert status["progress"]["totalIterations"] == 5
    assert status["iteration"] == 5
    assert set(status["metrics"]) >= {"loss", "val_loss", "accuracy", "epoch"}
    assert status["metrics"]["epoch"] == 4
    latest, best = status["latestCheckpoint"], status["bestCheckpoint"]
    assert latest["iteration"] == 5 and latest["uri"].endswith("checkpoint_000005")
    assert best["metrics"]["val_loss"] == min(c["score"] for c in status["checkpoints"])
    assert len(status["checkpoints"]) == 3  # numToKeep

    checkpoint = committed_checkpoint(latest["uri"], retry_budget_seconds=10)
    assert checkpoint is not None, "the latest checkpoint has no manifest in storage"
    with checkpoint.as_directory() as directory:
        model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
        extra = load_state(directory, model=model)
    assert extra["epoch"] == 4


@pytest.mark.slow
def test_a_killed_worker_restarts_the_gang_from_the_latest_committed_checkpoint(
    cluster: Cluster, s3_credentials: None, tmp_path: Path
) -> None:
    resumed_weights = tmp_path / "resumed.pt"
    manifest = digits_job("resume", epochs=8, step_sleep=0.15)
    trainer = manifest["spec"]["template"]["spec"]["containers"][0]
    trainer["env"] = [{"name": "TRAINJOB_TEST_RESUMED_WEIGHTS", "value": str(resumed_weights)}]
    # The example with the test's hook (tests/integration/digits_hooks.py); pods run in the repository.
    trainer["command"] = [
        "python",
        "-c",
        "import runpy; runpy.run_path('tests/integration/digits_hooks.py', run_name='__main__')",
    ]
    # Keep every checkpoint, so the one the new attempt resumed from is still there to compare.
    manifest["spec"]["checkpoints"]["numToKeep"] = 10
    cluster.apply(manifest)

    def checkpointed() -> dict[str, Any] | None:
        status = cluster.status("resume")
        latest = status.get("latestCheckpoint") or {}
        return status if latest.get("iteration", 0) >= 2 else None

    wait_for(checkpointed, 180, "a committed checkpoint at iteration >= 2", cluster.describe_job("resume"))
    victim = next(p for p in cluster.pods("resume") if p["metadata"]["name"] == "resume-0-1")
    trainer_status = next(c for c in victim["status"]["containerStatuses"] if c["name"] == "trainer")
    pid = int(trainer_status["containerID"].removeprefix("local://"))
    killed_at = time.monotonic()
    killed_wall_clock = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    os.kill(pid, signal.SIGKILL)
    committed_before = cluster.status("resume")["latestCheckpoint"]["iteration"]

    wait_for(
        lambda: (
            cluster.status("resume").get("attempt") == 1
            and cluster.status("resume").get("phase") == "Running"
        ),
        120,
        "attempt 1 running",
        cluster.describe_job("resume"),
    )
    running_at = time.monotonic()

    def reported_after_resume() -> bool:
        status = cluster.status("resume")
        return bool(status.get("lastReportTime")) and status["lastReportTime"] > killed_wall_clock

    wait_for(reported_after_resume, 120, "a report from attempt 1", cluster.describe_job("resume"))
    reported_at = time.monotonic()
    status = cluster.wait_for_phase("resume", "Succeeded", "Failed", timeout=300)

    assert status["phase"] == "Succeeded", status.get("message")
    assert status["restarts"] == 1 and status["attempt"] == 1
    assert status["iteration"] == 8
    log = cluster.kubectl("logs", "resume-1-0", "-c", "trainer")
    resumed_line = next(line for line in log.splitlines() if "resumed from" in line)
    resumed_epoch = int(resumed_line.rsplit("at epoch", 1)[1])
    assert resumed_epoch >= committed_before, (resumed_line, committed_before)
    # The weights the new attempt started from are the ones in the checkpoint it named.
    resumed_uri = resumed_line.split("resumed from ", 1)[1].split(" at epoch", 1)[0]
    checkpoint = committed_checkpoint(resumed_uri, retry_budget_seconds=10)
    assert checkpoint is not None
    with checkpoint.as_directory() as directory:
        saved = torch.load(Path(directory) / "state.pt", map_location="cpu", weights_only=True)["model"]
    loaded = torch.load(resumed_weights, map_location="cpu", weights_only=True)
    assert saved.keys() == loaded.keys()
    assert all(torch.equal(saved[key], loaded[key]) for key in saved)
    print(
        f"timeline: kill -> attempt 1 running {running_at - killed_at:.1f}s -> first report after resume "
        f"{reported_at - killed_at:.1f}s; resumed at epoch {resumed_epoch}"
    )


@pytest.mark.slow
def test_suspend_flushes_the_last_checkpoint_and_resume_continues_from_it(
    cluster: Cluster, s3_credentials: None
) -> None:
    cluster.apply(digits_job("pause", epochs=6, step_sleep=0.15))

    def checkpointed() -> dict[str, Any] | None:
        latest = cluster.status("pause").get("latestCheckpoint") or {}
        return latest if latest.get("iteration", 0) >= 2 else None

    wait_for(checkpointed, 180, "a committed checkpoint at iteration >= 2", cluster.describe_job("pause"))
    cluster.kubectl("patch", "trainjob", "pause", "--type=merge", "-p", '{"spec": {"suspend": true}}')
    cluster.wait_for_phase("pause", "Suspended", timeout=120)
    wait_for(lambda: cluster.pods("pause") == [], 120, "the suspended job's pods to be gone")

    suspended = cluster.status("pause")
    # SIGTERM let every rank flush: the last iteration all ranks reported is committed.
    assert suspended["latestCheckpoint"]["iteration"] == suspended["iteration"], suspended
    assert committed_checkpoint(suspended["latestCheckpoint"]["uri"], retry_budget_seconds=10) is not None

    cluster.kubectl("patch", "trainjob", "pause", "--type=merge", "-p", '{"spec": {"suspend": false}}')
    status = cluster.wait_for_phase("pause", "Succeeded", "Failed", timeout=300)

    assert status["phase"] == "Succeeded", status.get("message")
    assert status["restarts"] == 0 and status["attempt"] == 1
    assert status["iteration"] == 6
    log = cluster.kubectl("logs", "pause-1-0", "-c", "trainer")
    assert f"at epoch {suspended['latestCheckpoint']['iteration']}" in log, log[-2000:]


EXAMPLES = REPO_ROOT / "deploy" / "examples"


@pytest.mark.slow
def test_the_sharded_example_then_the_finetune_example_from_its_checkpoint(
    cluster: Cluster, s3_credentials: None
) -> None:
    sharded = yaml.safe_load((EXAMPLES / "sharded.yaml").read_text())
    sharded["spec"]["config"]["epochs"] = 2
    sharded["spec"]["storage"]["uri"] = "s3://trainjob/e2e-examples"
    cluster.apply(sharded)
    status = cluster.wait_for_phase("sharded", "Succeeded", "Failed", timeout=300)
    assert status["phase"] == "Succeeded", status.get("message")
    latest = committed_checkpoint(status["latestCheckpoint"]["uri"], retry_budget_seconds=10)
    assert latest is not None
    # 2 pods x 2 torchrun processes: four shards merged into one committed directory.
    shards = [f for f in latest.get_metadata()["files"] if f["path"].startswith("model-shard-")]
    assert len(shards) == 4, latest.get_metadata()

    finetune = yaml.safe_load((EXAMPLES / "finetune.yaml").read_text())
    finetune["spec"]["config"]["epochs"] = 2
    finetune["spec"]["storage"]["uri"] = "s3://trainjob/e2e-examples"
    finetune["spec"]["resumeFrom"] = status["latestCheckpoint"]["uri"]
    cluster.apply(finetune)
    tuned = cluster.wait_for_phase("digits-finetune", "Succeeded", "Failed", timeout=300)
    assert tuned["phase"] == "Succeeded", tuned.get("message")
    log = cluster.kubectl("logs", "digits-finetune-0-0", "-c", "trainer")
    assert f"resumed from {status['latestCheckpoint']['uri']} at epoch 0" in log, log[-2000:]
    assert tuned["latestCheckpoint"]["uri"].startswith(
        f"s3://trainjob/e2e-examples/{cluster.namespace}/digits-finetune/"
    )
