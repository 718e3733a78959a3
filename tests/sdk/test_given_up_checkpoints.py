"""``report(..., delete_local_checkpoint_after_upload=True)``: the caller gives its directory up,
as in Ray Train. Its files are removed once stored (the directory stays, empty, for whoever made
it to remove); an async upload moves the directory aside instead of copying it; and a failed
upload keeps the files instead of losing them."""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import pytest

import worker_sdk as train
from tests.sdk.network_support import StallingProxy
from worker_sdk import session
from worker_sdk.storage import Storage

SetEnv = Callable[..., None]


def write_checkpoint(directory: Path, step: int) -> train.Checkpoint:
    (directory / "shards").mkdir(parents=True, exist_ok=True)
    (directory / "model.pt").write_bytes(f"model {step}".encode() * 1000)
    (directory / "shards" / "0.pt").write_bytes(f"shard {step}".encode())
    return train.Checkpoint.from_directory(directory)


@pytest.mark.parametrize("upload", ["sync", "async"])
def test_a_given_up_directory_is_emptied_and_what_it_held_is_stored(
    sdk_env: SetEnv, storage_uri: str, storage: Storage, tmp_path: Path, upload: Literal["sync", "async"]
) -> None:
    sdk_env(TRAINJOB_STORAGE_URI=storage_uri, TRAINJOB_NAME="givenup")
    for step in (1, 2):
        # The pattern Ray Train documents: a temporary directory per checkpoint.
        with tempfile.TemporaryDirectory(dir=tmp_path) as local:
            checkpoint = write_checkpoint(Path(local), step)
            train.report(
                {"step": step},
                checkpoint=checkpoint,
                upload=upload,
                delete_local_checkpoint_after_upload=True,
            )
            assert list(Path(local).iterdir()) == []  # emptied, still there for the context to remove

    assert session.shutdown() == []
    for step in (1, 2):
        prefix = f"default/givenup/checkpoint_{step:06d}"
        data = f"{prefix}/attempt-0"  # attempt-scoped (fencing)
        assert storage.get_bytes(f"{data}/model.pt") == f"model {step}".encode() * 1000
        assert storage.get_bytes(f"{data}/shards/0.pt") == f"shard {step}".encode()
        assert storage.get_bytes(f"{prefix}/.trainjob-checkpoint.json")
    # Nothing staged is left beside the caller's directories.
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".trainjob-staging-")] == []


def test_by_default_the_callers_files_are_kept(
    sdk_env: SetEnv, storage_uri: str, storage: Storage, tmp_path: Path
) -> None:
    sdk_env(TRAINJOB_STORAGE_URI=storage_uri, TRAINJOB_NAME="kept")
    checkpoint = write_checkpoint(tmp_path / "c", 1)
    train.report({"step": 1}, checkpoint=checkpoint, upload="async")

    assert session.shutdown() == []
    assert (tmp_path / "c" / "model.pt").read_bytes() == b"model 1" * 1000
    assert storage.get_bytes("default/kept/checkpoint_000001/attempt-0/model.pt") == b"model 1" * 1000


def test_a_given_up_directory_whose_upload_fails_is_kept_where_the_log_says(
    sdk_env: SetEnv,
    vanishing_s3: str,
    stalling_s3: StallingProxy,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sdk_env(TRAINJOB_STORAGE_URI=vanishing_s3, TRAINJOB_NAME="keep")
    assert train.get_checkpoint() is None
    stalling_s3.close()
    with caplog.at_level(logging.ERROR, logger="worker_sdk"):
        train.report(
            {"step": 1},
            checkpoint=write_checkpoint(tmp_path / "c", 1),
            upload="async",
            delete_local_checkpoint_after_upload=True,
        )
        deadline = time.monotonic() + 30
        with pytest.raises(train.CheckpointUploadError):
            while time.monotonic() < deadline:  # the upload gives up after its 1 s budget
                train.report({"step": 2})
                time.sleep(0.2)

    kept = [m for m in caplog.messages if "was not stored; its files are kept in" in m]
    assert len(kept) == 1, caplog.text
    staging = Path(kept[0].rsplit(" ", 1)[1])
    assert (staging / "checkpoint" / "model.pt").read_bytes() == b"model 1" * 1000
    assert (staging / "checkpoint" / "shards" / "0.pt").read_bytes() == b"shard 1"


def test_delete_local_checkpoint_after_upload_must_be_a_bool(sdk_env: SetEnv, tmp_path: Path) -> None:
    sdk_env(TRAINJOB_STORAGE_URI=(tmp_path / "s").as_uri(), TRAINJOB_NAME="bad")
    checkpoint = write_checkpoint(tmp_path / "c", 1)
    refused = "delete_local_checkpoint_after_upload must be True, False or None, got 'yes'"
    with pytest.raises(TypeError, match=refused):
        train.report({"step": 1}, checkpoint=checkpoint, delete_local_checkpoint_after_upload="yes")  # type: ignore[arg-type]  # bad input on purpose
    assert (tmp_path / "c" / "model.pt").exists()  # refused before anything was touched
