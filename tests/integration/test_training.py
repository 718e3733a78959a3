"""Real DDP training (gloo, 2 and 4 processes) of examples.digits.train against a real coordinator,
on SeaweedFS and on a directory: commits, retention, sharding, kills, resumes, restarts, SIGTERM.

The longest scenarios run on SeaweedFS only: above the storage layer (tested on both in tests/sdk)
the commit and resume code does not know which one it writes to, and both together cost two
minutes of the suite's budget."""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path
from typing import Any

import pytest
import torch

from examples.digits.train import load_checkpoint, make_model
from tests.integration.digits_hooks import HOOKED_DIGITS
from tests.support.job import JobRunner
from tests.support.processes import wait_until
from worker_sdk.protocol import MANIFEST_NAME, CheckpointManifest
from worker_sdk.storage import Storage, open_storage

FAST = {"epochs": 4, "batch_size": 64, "lr": 0.05, "checkpoint_every": 1}
METRIC_NAMES = {"loss", "val_loss", "accuracy", "epoch"}
S3_ONLY = pytest.mark.parametrize("storage_uri", ["s3"], indirect=True)


def committed(storage: Storage, runner: JobRunner) -> dict[int, CheckpointManifest]:
    """The job's committed checkpoints in storage, by iteration."""
    prefix = f"{runner.namespace}/{runner.job}"
    found = {}
    for dir_name in storage.list_dirs(prefix):
        data = storage.get_bytes(f"{prefix}/{dir_name}/{MANIFEST_NAME}")
        if data is not None:
            manifest = CheckpointManifest.from_json(json.loads(data))
            found[manifest.iteration] = manifest
    return found


def latest_iteration(state: dict[str, Any]) -> int:
    latest = state.get("latestCheckpoint")
    return int(latest["iteration"]) if latest else 0


def resumed_from(log: str) -> tuple[str, int]:
    match = re.search(r"resumed from (\S+) at epoch (\d+)", log)
    assert match, log
    return match.group(1), int(match.group(2))


def test_ddp_job_commits_reports_and_keeps_num_to_keep(job_runner: Any, storage_uri: str) -> None:
    runner: JobRunner = job_runner(2)
    coordinator = runner.start_coordinator(0, num_to_keep=2, score_attribute="val_loss", score_order="min")
    workers = runner.start_workers(0, coordinator, FAST)
    assert runner.wait(workers) == [0, 0], runner.tails()

    state = coordinator.state()
    assert state["settled"], state  # rank 0 waited for it before exiting
    assert state["finalized"] == [0, 1]
    coordinator.stop()
    status = coordinator.status()

    assert status["iteration"] == 4
    assert set(status["metrics"]) == METRIC_NAMES
    assert status["metrics"]["epoch"] == 3  # rank 0's metrics at iteration 4
    storage = open_storage(storage_uri)
    retained = committed(storage, runner)
    assert len(retained) == 2
    assert sorted(c["iteration"] for c in status["checkpoints"]) == sorted(retained)
    assert status["latestCheckpoint"]["iteration"] == 4
    assert status["latestCheckpoint"]["uri"] == f"{storage_uri}/ml/{runner.job}/checkpoint_000004"
    best = min(retained.values(), key=lambda manifest: float(manifest.metrics["val_loss"]))  # type: ignore[arg-type]  # a number here
    assert status["bestCheckpoint"]["iteration"] == best.iteration
    assert status["bestCheckpoint"]["metrics"] == best.metrics
    # Retention deleted the others' files too, not only their manifests.
    assert storage.list_dirs(f"ml/{runner.job}") == sorted(
        [f"checkpoint_{i:06d}" for i in retained] + ["metrics"]
    )
    assert [f.path for f in retained[4].files] == ["state.pt"]


@S3_ONLY
def test_sharded_checkpoint_from_four_ranks_merges_into_one_directory(
    job_runner: Any, storage_uri: str, tmp_path: Path
) -> None:
    runner: JobRunner = job_runner(4)
    coordinator = runner.start_coordinator(0)
    workers = runner.start_workers(0, coordinator, {**FAST, "epochs": 2, "sharded": True, "upload": "async"})
    assert runner.wait(workers) == [0, 0, 0, 0], runner.tails()
    coordinator.stop()
    status = coordinator.status()
    assert status["iteration"] == 2
    assert status["latestCheckpoint"]["iteration"] == 2

    manifests = committed(open_storage(storage_uri), runner)
    assert sorted(manifests) == [1, 2]
    assert [f.path for f in manifests[2].files] == [
        *(f"model-shard-{rank:05d}-of-00004.pt" for rank in range(4)),
        "trainer.pt",
    ]
    # The merged shards are a whole model.
    from worker_sdk.checkpoint import committed_checkpoint

    checkpoint = committed_checkpoint(status["latestCheckpoint"]["uri"], retry_budget_seconds=10)
    assert checkpoint is not None
    model = make_model()
    with checkpoint.as_directory() as directory:
        assert load_checkpoint(Path(directory), model, torch.optim.SGD(model.parameters(), lr=0.1)) == 1


@S3_ONLY
def test_a_killed_job_resumes_from_the_latest_committed_checkpoint(
    job_runner: Any, storage_uri: str, tmp_path: Path
) -> None:
    runner: JobRunner = job_runner(2)
    config = {**FAST, "epochs": 5, "step_sleep": 0.05}
    coordinator = runner.start_coordinator(0)
    workers = runner.start_workers(0, coordinator, config)
    state = coordinator.wait_for_state("a committed checkpoint", lambda s: latest_iteration(s) >= 2)
    runner.kill(workers)  # SIGKILL every rank mid-run: no flush, no finalize
    assert [w.returncode for w in workers] == [-signal.SIGKILL] * 2
    seen_latest = coordinator.state()["latestCheckpoint"]
    assert latest_iteration(state) <= seen_latest["iteration"] < 5
    coordinator.stop()

    # Attempt 1, as the operator starts it: a new coordinator, the latest committed checkpoint in env.
    coordinator = runner.start_coordinator(1)
    resumed_weights = tmp_path / "resumed.pt"
    workers = runner.start_workers(
        1,
        coordinator,
        config,
        env={
            "TRAINJOB_RESUME_CHECKPOINT": seen_latest["uri"],
            "TRAINJOB_TEST_RESUMED_WEIGHTS": str(resumed_weights),
        },
        args=HOOKED_DIGITS,
    )
    assert runner.wait(workers) == [0, 0], runner.tails()
    uri, epoch = resumed_from(runner.log("rank-0-attempt-1"))
    assert uri == seen_latest["uri"]
    assert epoch == seen_latest["iteration"]  # one report per epoch: iteration n is after epoch n - 1

    # The weights the resumed run started from are exactly the committed ones.
    from worker_sdk.checkpoint import committed_checkpoint

    checkpoint = committed_checkpoint(uri, retry_budget_seconds=10)
    assert checkpoint is not None
    with checkpoint.as_directory() as directory:
        saved = torch.load(Path(directory) / "state.pt", weights_only=True)["model"]
    loaded = torch.load(resumed_weights, weights_only=True)
    assert saved.keys() == loaded.keys()
    assert all(torch.equal(saved[name], loaded[name]) for name in saved)

    coordinator.stop()
    status = coordinator.status()
    assert status["iteration"] == 5
    assert (status["latestCheckpoint"]["iteration"], status["latestCheckpoint"]["attempt"]) == (5, 1)
    assert sorted(committed(open_storage(storage_uri), runner)) == list(range(1, 6))


@S3_ONLY
def test_a_checkpoint_one_rank_never_reported_is_never_committed_nor_resumed(
    job_runner: Any, storage_uri: str
) -> None:
    runner: JobRunner = job_runner(2)
    config = {**FAST, "sharded": True}
    coordinator = runner.start_coordinator(0)
    # Rank 1 stores its shard of iteration 3, then dies before reporting it.
    workers = runner.start_workers(
        0,
        coordinator,
        config,
        env={"TRAINJOB_TEST_KILL_AFTER_UPLOAD": "3", "TRAINJOB_TEST_KILL_RANK": "1"},
        args=HOOKED_DIGITS,
    )
    wait_until("rank 1 to die", lambda: workers[1].poll() is not None)
    assert workers[1].returncode == -signal.SIGKILL
    assert "test hook: rank 1 stored iteration 3 and dies" in runner.log("rank-1-attempt-0")
    state = coordinator.wait_for_state(
        "rank 0's report of iteration 3", lambda s: s["ranks"].get("0", 0) >= 3
    )
    runner.kill(workers)
    storage = open_storage(storage_uri)
    prefix = f"ml/{runner.job}/checkpoint_000003"
    assert [o.key.rsplit("/", 1)[1] for o in storage.list_objects(prefix)] == [
        "model-shard-00000-of-00002.pt",
        "model-shard-00001-of-00002.pt",
        "trainer.pt",
    ]  # every file is there, but rank 1 never reported it: not committed
    state = coordinator.state()
    assert latest_iteration(state) == 2
    assert state["iteration"] == 2
    assert sorted(committed(storage, runner)) == [1, 2]
    coordinator.stop()

    coordinator = runner.start_coordinator(1)
    workers = runner.start_workers(
        1, coordinator, config, env={"TRAINJOB_RESUME_CHECKPOINT": state["latestCheckpoint"]["uri"]}
    )
    assert runner.wait(workers) == [0, 0], runner.tails()
    assert resumed_from(runner.log("rank-0-attempt-1")) == (f"{storage_uri}/{prefix[:-1]}2", 2)
    coordinator.stop()
    manifests = committed(storage, runner)
    assert sorted(manifests) == [1, 2, 3, 4]
    assert manifests[3].attempt == 1  # iteration 3 was committed by the attempt that reported it


def test_a_coordinator_restart_loses_nothing(job_runner: Any, storage_uri: str) -> None:
    runner: JobRunner = job_runner(2)
    config = {**FAST, "epochs": 6, "step_sleep": 0.05}
    coordinator = runner.start_coordinator(0)
    workers = runner.start_workers(0, coordinator, config)
    coordinator.wait_for_state("a committed checkpoint", lambda s: latest_iteration(s) >= 2)
    before = {c["iteration"] for c in coordinator.state()["checkpoints"]}
    coordinator.kill()  # a crash: the native sidecar is restarted in the same pod, same port
    coordinator = runner.start_coordinator(0, port=coordinator.port)
    assert runner.wait(workers) == [0, 0], runner.tails()

    state = coordinator.state()
    assert state["settled"]
    assert state["iteration"] == 6
    assert latest_iteration(state) == 6
    after = {c["iteration"] for c in state["checkpoints"]}
    assert before <= after  # no committed checkpoint lost
    assert any("the coordinator restarted" in runner.log(f"rank-{rank}-attempt-0") for rank in (0, 1))
    coordinator.stop()
    assert coordinator.status()["iteration"] == 6


def test_sigterm_flushes_the_last_report_and_checkpoint(job_runner: Any) -> None:
    runner: JobRunner = job_runner(2)
    coordinator = runner.start_coordinator(0)
    workers = runner.start_workers(0, coordinator, {**FAST, "epochs": 100, "step_sleep": 0.02})
    coordinator.wait_for_state("a committed checkpoint", lambda s: latest_iteration(s) >= 1)
    for worker in workers:  # what deleting the pods (suspend) does
        worker.send_signal(signal.SIGTERM)
    codes = runner.wait(workers, timeout=90)
    # The example acts on notices: the SIGTERM raises one, every rank checkpoints at the same
    # epoch and leaves its loop (a program that never asks exits 143 at once: test_notices).
    assert codes == [0, 0], runner.tails()
    assert "SIGTERM: the gang stops at its next report" in runner.log("rank-0-attempt-0")

    state = coordinator.state()
    assert state["finalized"] == [0, 1]
    assert state["settled"], state  # rank 0 waited until everything it reported was committed
    # Every rank's last report arrived; the last checkpoint both ranks reached is committed.
    assert state["iteration"] == min(state["ranks"].values())
    assert latest_iteration(state) == state["iteration"]
    coordinator.stop()
