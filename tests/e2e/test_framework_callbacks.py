"""The Transformers and Lightning examples (worker_sdk.integrations) as 2-worker TrainJobs from
their manifests in deploy/examples/: each is killed once after its first committed checkpoint,
and the new attempt resumes the framework's own trainer from the latest committed checkpoint."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.kube import Cluster
from tests.support.processes import REPO_ROOT, wait_for
from trainjob_operator.local.stack import LocalStack
from worker_sdk.checkpoint import committed_checkpoint

# Tiny runs, slowed so the kill lands mid-training: at least 8 s of training remain after the
# first commit, for the status to show it and the test to kill. (config, reports, checkpoint file)
CASES: dict[str, tuple[dict[str, Any], int, str]] = {
    "transformers": ({"max_steps": 10, "save_steps": 2, "step_sleep": 1}, 5, "checkpoint/model.safetensors"),
    "lightning": ({"max_epochs": 4, "step_sleep": 0.35}, 4, "checkpoint.ckpt"),
}


def example_job(framework: str, name: str) -> dict[str, Any]:
    manifest: dict[str, Any] = yaml.safe_load(
        (REPO_ROOT / "deploy" / "examples" / f"{framework}.yaml").read_text()
    )
    manifest["metadata"]["name"] = name
    manifest["spec"]["config"] = CASES[framework][0]
    manifest["spec"]["storage"]["uri"] = f"s3://trainjob/e2e-{name}"
    manifest["spec"]["checkpoints"]["numToKeep"] = 10
    manifest["spec"]["failurePolicy"]["backoffSeconds"] = 1
    return manifest


def trainer_pid(cluster: Cluster, pod: str) -> int:
    found = next(p for p in cluster.pods(pod.rsplit("-", 2)[0]) if p["metadata"]["name"] == pod)
    trainer = next(c for c in found["status"]["containerStatuses"] if c["name"] == "trainer")
    return int(trainer["containerID"].removeprefix("local://"))


@pytest.mark.slow
@pytest.mark.parametrize("framework", sorted(CASES))
def test_killed_once_resumes_from_its_committed_checkpoint(
    cluster: Cluster, stack: LocalStack, framework: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"{framework}-resume"
    cluster.apply(example_job(framework, name))

    seen: dict[str, Any] = {}

    def committed() -> int | None:
        seen.update(cluster.status(name))
        latest = seen.get("latestCheckpoint") or {}
        return int(latest["iteration"]) if latest.get("iteration") else None

    wait_for(committed, 240, f"{name}'s first committed checkpoint", cluster.describe_job(name))
    reports = CASES[framework][1]
    # The callback told the total (max_steps / save_steps, max_epochs) before the first report.
    assert seen["progress"]["totalIterations"] == reports
    assert seen["progress"]["percentage"] == seen["iteration"] * 100 // reports < 100
    os.kill(trainer_pid(cluster, f"{name}-0-1"), signal.SIGKILL)
    status = cluster.wait_for_phase(name, "Succeeded", "Failed", timeout=300)

    assert status["phase"] == "Succeeded", status.get("message")
    assert status["restarts"] == 1 and status["attempt"] == 1
    checkpoint_file = CASES[framework][2]
    assert status["iteration"] == reports
    # Iterations count across attempts: the resumed attempt ends at 100 %, nothing remaining.
    progress = status["progress"]
    assert (progress["totalIterations"], progress["percentage"]) == (reports, 100)
    assert (progress["estimatedRemainingSeconds"], progress["eta"]) == (0, "0s")
    header, row = (line.split() for line in cluster.kubectl("get", "tj", name).splitlines())
    assert header[3:6] == ["ITERATION", "PROGRESS", "ETA"]  # kubectl get tj's printer columns
    cells = dict(zip(header, row, strict=True))
    shown = [cells[column] for column in ("NAME", "PHASE", "ITERATION", "PROGRESS", "ETA")]
    assert shown == [name, "Succeeded", str(reports), "100", "0s"]
    log = cluster.kubectl("logs", f"{name}-1-0", "-c", "trainer")
    resumed = next(line for line in log.splitlines() if line.startswith("resuming from "))
    resumed_uri = resumed.removeprefix("resuming from ")
    assert resumed_uri.startswith(f"s3://trainjob/e2e-{name}/{cluster.namespace}/{name}/checkpoint_")
    resumed_iteration = int(resumed_uri.rsplit("_", 1)[1])
    assert 1 <= resumed_iteration < reports  # not from scratch, and the rest was trained after it
    # Iterations went on from the checkpoint: every one of them was committed once.
    assert sorted(c["iteration"] for c in status["checkpoints"]) == list(range(1, reports + 1))

    assert stack.seaweedfs is not None
    for key, value in stack.seaweedfs.credentials_env.items():
        monkeypatch.setenv(key, value)
    latest = committed_checkpoint(status["latestCheckpoint"]["uri"], retry_budget_seconds=10)
    assert latest is not None
    metadata = latest.get_metadata()
    assert checkpoint_file in [f["path"] for f in metadata["files"]]
    with latest.as_directory() as directory:
        assert (Path(directory) / checkpoint_file).stat().st_size > 0
    assert "epoch" in metadata["metrics"] and "step" in metadata["metrics"]
