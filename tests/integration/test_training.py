"""Real DDP training (gloo, 2 and 4 processes) of examples.digits.train against a real coordinator,
on SeaweedFS and on a directory: commits, retention, sharding, kills, resumes, restarts, SIGTERM."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from job_support import JobRunner

from examples.digits.train import load_checkpoint, make_model
from worker_sdk.protocol import MANIFEST_NAME, CheckpointManifest
from worker_sdk.storage import Storage, open_storage

FAST = {"epochs": 4, "batch_size": 64, "lr": 0.05, "checkpoint_every": 1}
METRIC_NAMES = {"loss", "val_loss", "accuracy", "epoch"}


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
    best = min(retained.values(), key=lambda manifest: float(manifest.metrics["val_loss"]))  # type: ignore[arg-type]
    assert status["bestCheckpoint"]["iteration"] == best.iteration
    assert status["bestCheckpoint"]["metrics"] == best.metrics
    # Retention deleted the others' files too, not only their manifests.
    assert storage.list_dirs(f"ml/{runner.job}") == sorted(
        [f"checkpoint_{i:06d}" for i in retained] + ["metrics"]
    )
    assert [f.path for f in retained[4].files] == ["state.pt"]


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
