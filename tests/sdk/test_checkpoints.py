"""Committed checkpoints are read through their manifest only; uncommitted ones are never offered."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

import worker_sdk as train
from worker_sdk.protocol import CheckpointFile, CheckpointManifest
from worker_sdk.storage import Storage

SetEnv = Callable[..., None]


def files_under(directory: str | Path) -> dict[str, bytes]:
    root = Path(directory)
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def commit_by_hand(storage: Storage, dir_key: str, files: dict[str, bytes], iteration: int) -> None:
    for path, data in files.items():
        storage.put_bytes(f"{dir_key}/{path}", data)
    manifest = CheckpointManifest(
        iteration=iteration,
        attempt=1,
        metrics={"loss": 0.25},
        files=tuple(CheckpointFile(path, len(data)) for path, data in files.items()),
        committed_at="2026-01-01T00:00:00Z",
    )
    storage.put_bytes(f"{dir_key}/.trainjob-checkpoint.json", json.dumps(manifest.to_json()).encode())


def test_a_committed_checkpoint_downloads_only_its_manifests_files(
    sdk_env: SetEnv, storage: Storage, storage_uri: str, tmp_path: Path
) -> None:
    listed = {"model.pt": b"weights", "optim/state.pt": b"momentum"}
    commit_by_hand(storage, "other/job/checkpoint_000040", listed, iteration=40)
    # A dead attempt's leftover in the same directory: not in the manifest, never downloaded.
    storage.put_bytes("other/job/checkpoint_000040/model-shard-7.pt", b"stale")
    sdk_env(
        TRAINJOB_STORAGE_URI=storage_uri,
        TRAINJOB_RESUME_CHECKPOINT=f"{storage_uri}/other/job/checkpoint_000040",
    )

    checkpoint = train.get_checkpoint()
    assert checkpoint is not None
    assert checkpoint.uri == f"{storage_uri}/other/job/checkpoint_000040"
    assert checkpoint.path is None
    metadata = checkpoint.get_metadata()
    assert (metadata["iteration"], metadata["attempt"], metadata["metrics"]) == (40, 1, {"loss": 0.25})
    with checkpoint.as_directory() as directory:
        assert files_under(directory) == listed
    assert not Path(directory).exists()  # the temporary download is removed
    target = checkpoint.to_directory(tmp_path / "copy")
    assert files_under(target) == listed


def test_iterations_continue_from_the_resumed_checkpoint_without_calling_get_checkpoint(
    sdk_env: SetEnv, storage: Storage, storage_uri: str, tmp_path: Path
) -> None:
    commit_by_hand(storage, "other/job/checkpoint_000040", {"a": b"1"}, iteration=40)
    local = tmp_path / "local"
    local.mkdir()
    (local / "b").write_bytes(b"2")
    sdk_env(
        TRAINJOB_STORAGE_URI=storage_uri,
        TRAINJOB_NAME="next",
        TRAINJOB_RESUME_CHECKPOINT=f"{storage_uri}/other/job/checkpoint_000040",
    )
    train.report({"loss": 1.0})
    train.report({"loss": 0.5}, checkpoint=train.Checkpoint.from_directory(local))
    from worker_sdk import session

    assert session.shutdown() == []
    assert storage.list_dirs("default/next") == ["checkpoint_000042"]


def test_a_directory_without_manifest_is_never_resumed_from(
    sdk_env: SetEnv, storage: Storage, storage_uri: str, caplog: pytest.LogCaptureFixture
) -> None:
    storage.put_bytes("other/job/checkpoint_000041/model.pt", b"half of a checkpoint")
    uri = f"{storage_uri}/other/job/checkpoint_000041"
    sdk_env(TRAINJOB_STORAGE_URI=storage_uri, TRAINJOB_RESUME_CHECKPOINT=uri)
    with caplog.at_level(logging.WARNING, logger="worker_sdk"):
        assert train.get_checkpoint() is None
    assert (
        f"TRAINJOB_RESUME_CHECKPOINT {uri} has no .trainjob-checkpoint.json: not a committed checkpoint, "
        "ignored" in caplog.messages
    )


def test_a_local_checkpoint_is_its_directory(tmp_path: Path) -> None:
    (tmp_path / "w.pt").write_bytes(b"x")
    checkpoint = train.Checkpoint.from_directory(tmp_path)
    assert checkpoint.path == tmp_path.resolve()
    assert checkpoint.uri == tmp_path.resolve().as_uri()
    assert checkpoint.get_metadata() == {}
    with checkpoint.as_directory() as directory:
        assert directory == str(tmp_path.resolve())
    assert files_under(checkpoint.to_directory(tmp_path.parent / "copied")) == {"w.pt": b"x"}
