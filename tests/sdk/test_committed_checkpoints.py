"""The three readers of a job's committed checkpoints agree: the SDK (what `get_checkpoint()`
resumes from), the coordinator's recovery (what `status.latestCheckpoint`/`bestCheckpoint` say
after a restart) and the CLI (`trainjob checkpoints`). Every directory with a valid manifest is a
committed checkpoint, whatever `report(checkpoint_dir_name=...)` named it; the latest is the one
with the highest (iteration, attempt); the best exists only when the job ranks by a score."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

import worker_sdk as train
from trainjob_operator.coordinator.committing import Committer, RetentionPolicy
from trainjob_operator.coordinator.recovery import recover
from trainjob_operator.job_storage import JobStorage
from worker_sdk.protocol import CheckpointFile, CheckpointManifest, manifest_key
from worker_sdk.storage import Storage, open_storage

NS, JOB = "ml", "digits"
SetEnv = Callable[..., None]  # the `sdk_env` fixture (tests/sdk/conftest.py)


def commit(storage: Storage, dir_name: str, iteration: int, attempt: int, loss: float) -> None:
    """What a coordinator leaves: the files, then the manifest."""
    storage.put_bytes(f"{NS}/{JOB}/{dir_name}/model.pt", b"weights")
    manifest = CheckpointManifest(
        iteration=iteration,
        attempt=attempt,
        metrics={"loss": loss},
        files=(CheckpointFile("model.pt", 7),),
        committed_at=f"2026-01-01T00:00:0{attempt}Z",
    )
    storage.put_bytes(manifest_key(NS, JOB, dir_name), json.dumps(manifest.to_json()).encode())


@pytest.fixture
def storage(tmp_path: Path) -> Storage:
    """Attempt 0 committed 4 and 5; attempt 1 resumed from 4 and committed 5 again, under the
    name its program chose (`checkpoint_dir_name`)."""
    opened = open_storage((tmp_path / "store").as_uri())
    commit(opened, "checkpoint_000004", 4, 0, 0.3)
    commit(opened, "checkpoint_000005", 5, 0, 0.4)
    commit(opened, "epoch-5", 5, 1, 0.2)
    opened.put_bytes(f"{NS}/{JOB}/checkpoint_000006/model.pt", b"uncommitted")  # no manifest
    return opened


def cli(storage: Storage, spec: dict[str, object] | None = None) -> JobStorage:
    return JobStorage(storage, f"{NS}/{JOB}", spec or {})


def test_the_cli_lists_checkpoints_whatever_their_directory_name(storage: Storage) -> None:
    listed = [c.uri.rsplit("/", 1)[1] for c in cli(storage).committed_checkpoints()]
    assert sorted(listed) == ["checkpoint_000004", "checkpoint_000005", "epoch-5"]


def test_sdk_coordinator_and_cli_agree_on_the_latest(storage: Storage, sdk_env: SetEnv) -> None:
    expected = storage.uri_for(f"{NS}/{JOB}/epoch-5")
    recovered = recover(Committer(storage, NS, JOB, attempt=2))
    assert recovered.checkpoints[-1].uri == expected
    assert cli(storage).committed_checkpoints()[-1].uri == expected
    sdk_env(TRAINJOB_STORAGE_URI=storage.uri, TRAINJOB_NAME=JOB, TRAINJOB_NAMESPACE=NS)
    resumed = train.get_checkpoint()
    assert resumed is not None and resumed.uri == expected


def test_coordinator_and_cli_agree_on_the_best(storage: Storage) -> None:
    checkpoints = recover(Committer(storage, NS, JOB, attempt=2)).checkpoints
    listed = cli(storage).committed_checkpoints()
    # Without a score attribute nothing is "best" (status.bestCheckpoint is absent).
    unranked = RetentionPolicy().best(checkpoints)
    assert unranked is None
    assert cli(storage).best(listed) is None
    ranked = RetentionPolicy(score_attribute="loss", score_order="min").best(checkpoints)
    assert ranked is not None and ranked.uri.endswith("/epoch-5")
    by_cli = cli(storage, {"checkpoints": {"scoreAttribute": "loss", "scoreOrder": "min"}}).best(listed)
    assert by_cli is not None and by_cli.uri == ranked.uri
