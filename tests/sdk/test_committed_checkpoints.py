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
from worker_sdk._layout import ScoreOrder
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
    ranked = RetentionPolicy(score_attribute="loss", score_order=ScoreOrder.MIN).best(checkpoints)
    assert ranked is not None and ranked.uri.endswith("/epoch-5")
    by_cli = cli(storage, {"checkpoints": {"scoreAttribute": "loss", "scoreOrder": "min"}}).best(listed)
    assert by_cli is not None and by_cli.uri == ranked.uri


def test_a_changed_committed_file_is_refused_and_the_previous_checkpoint_loads(
    tmp_path: Path, sdk_env: SetEnv, caplog: pytest.LogCaptureFixture
) -> None:
    """Fencing's last line: the manifest's SHA-256s. A committed file that changed (whatever
    wrote it) is refused by get_checkpoint(), which falls back to the previous committed
    checkpoint and says so; `trainjob checkpoints download` refuses it with the file named."""
    from worker_sdk import session
    from worker_sdk.checkpoint import committed_checkpoint

    store = open_storage((tmp_path / "store").as_uri())
    sdk_env(TRAINJOB_STORAGE_URI=store.uri, TRAINJOB_NAME=JOB, TRAINJOB_NAMESPACE=NS)
    for step in (1, 2):
        local = tmp_path / f"local-{step}"
        local.mkdir()
        (local / "model.pt").write_bytes(f"weights {step}".encode())
        train.report({"step": step}, checkpoint=train.Checkpoint.from_directory(local))
    assert session.shutdown(wait_settled=False) == []
    changed = f"{NS}/{JOB}/checkpoint_000002/attempt-0/model.pt"
    store.put_bytes(changed, b"weights X")  # same size, other bytes

    latest = committed_checkpoint(store.uri_for(f"{NS}/{JOB}/checkpoint_000002"), retry_budget_seconds=5)
    assert latest is not None
    with pytest.raises(train.CheckpointCorruptError, match=r"model\.pt has SHA-256 .* the manifest recorded"):
        latest.to_directory(tmp_path / "refused")
    assert list((tmp_path / "refused").iterdir()) == []  # nothing half-loaded is left

    resumed = train.get_checkpoint()
    assert resumed is not None and resumed.uri == store.uri_for(f"{NS}/{JOB}/checkpoint_000001")
    with resumed.as_directory() as directory:
        assert (Path(directory) / "model.pt").read_bytes() == b"weights 1"
    assert any(
        "checkpoint_000002 does not match its manifest" in r.message and "falling back to" in r.message
        for r in caplog.records
    ), caplog.text

    from trainjob_operator.client import CommandError

    listed = cli(store).committed_checkpoints()
    with pytest.raises(CommandError, match=r"model\.pt has SHA-256"):
        cli(store).download(listed[-1], tmp_path / "cli")
    cli(store).download(listed[0], tmp_path / "cli-ok")
    assert (tmp_path / "cli-ok" / "model.pt").read_bytes() == b"weights 1"
