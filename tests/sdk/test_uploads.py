"""Async uploads: a snapshot (so the caller may delete or rewrite its files at once), bounded
(a full queue blocks report()), and failures that surface instead of vanishing."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import worker_sdk as train
from tests.sdk.network_support import StallingProxy
from trainjob_operator.local.seaweedfs import SeaweedFS
from worker_sdk import session
from worker_sdk.storage import Storage, open_storage

SetEnv = Callable[..., None]


def write_checkpoint(directory: Path, content: bytes) -> train.Checkpoint:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "model.pt").write_bytes(content)
    return train.Checkpoint.from_directory(directory)


def test_async_upload_stores_a_snapshot_of_the_directory(
    sdk_env: SetEnv, storage_uri: str, storage: Storage, tmp_path: Path
) -> None:
    sdk_env(TRAINJOB_STORAGE_URI=storage_uri, TRAINJOB_NAME="snap")
    directory = tmp_path / "ckpt"
    for step in range(1, 4):
        checkpoint = write_checkpoint(directory, f"step {step}".encode() * 1000)
        train.report({"step": step}, checkpoint=checkpoint, upload="async")
        # What users do right after report() returns: rewrite the file in place (torch.save
        # truncates it), or delete the directory.
        (directory / "model.pt").write_bytes(b"overwritten")
    (directory / "model.pt").unlink()
    directory.rmdir()

    assert session.shutdown() == []
    for step in range(1, 4):
        stored = storage.get_bytes(f"default/snap/checkpoint_{step:06d}/attempt-0/model.pt")
        assert stored == f"step {step}".encode() * 1000
        assert storage.get_bytes(f"default/snap/checkpoint_{step:06d}/.trainjob-checkpoint.json")


def test_a_full_upload_queue_blocks_report_until_an_upload_finishes(
    sdk_env: SetEnv,
    seaweedfs: SeaweedFS,
    stalling_s3: StallingProxy,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    storage_uri = f"s3://{seaweedfs.bucket}/backpressure-{time.time_ns()}"
    sdk_env(TRAINJOB_STORAGE_URI=storage_uri, TRAINJOB_NAME="bp", TRAINJOB_UPLOAD_QUEUE="1")
    stalling_s3.stall()

    started = time.monotonic()
    train.report({"step": 1}, checkpoint=write_checkpoint(tmp_path / "1", b"one"), upload="async")
    assert time.monotonic() - started < 1.0  # staged and queued; the upload itself is stalled

    second_returned = threading.Event()

    def second_report() -> None:
        train.report({"step": 2}, checkpoint=write_checkpoint(tmp_path / "2", b"two"), upload="async")
        second_returned.set()

    with caplog.at_level(logging.WARNING, logger="worker_sdk"):
        reporter = threading.Thread(target=second_report)
        reporter.start()
        assert not second_returned.wait(1.5), "report() must block while the upload queue is full"
        stalling_s3.resume()
        assert second_returned.wait(30)
        reporter.join()
    assert (
        "1 async checkpoint uploads are pending (TRAINJOB_UPLOAD_QUEUE): report() waits for one to finish"
        in caplog.messages
    )

    assert session.shutdown() == []
    storage = open_storage(storage_uri)
    assert storage.get_bytes("default/bp/checkpoint_000001/attempt-0/model.pt") == b"one"
    assert storage.get_bytes("default/bp/checkpoint_000002/attempt-0/model.pt") == b"two"


def test_a_failed_async_upload_is_raised_from_the_next_report(
    sdk_env: SetEnv, vanishing_s3: str, stalling_s3: StallingProxy, tmp_path: Path
) -> None:
    sdk_env(TRAINJOB_STORAGE_URI=vanishing_s3, TRAINJOB_NAME="lost")
    assert train.get_checkpoint() is None  # storage was there at the start
    stalling_s3.close()
    train.report({"step": 1}, checkpoint=write_checkpoint(tmp_path / "c", b"x"), upload="async")
    deadline = time.monotonic() + 30
    with pytest.raises(train.CheckpointUploadError) as raised:
        while time.monotonic() < deadline:  # the upload gives up after its 1 s budget
            train.report({"step": 2})
            time.sleep(0.2)
    message = str(raised.value)
    assert message.startswith(
        f"the checkpoint of iteration 1 (async upload) could not be stored at "
        f"{vanishing_s3}/default/lost/checkpoint_000001/attempt-0: cannot upload "
    )
    assert "storage unavailable for 1s" in message
    assert message.endswith("Its report was not sent, so this checkpoint is never committed")


def test_a_failed_sync_upload_is_raised_by_report_itself(
    sdk_env: SetEnv, vanishing_s3: str, stalling_s3: StallingProxy, tmp_path: Path
) -> None:
    sdk_env(TRAINJOB_STORAGE_URI=vanishing_s3, TRAINJOB_NAME="lost")
    assert train.get_checkpoint() is None
    stalling_s3.close()
    with pytest.raises(train.CheckpointUploadError, match=r"^the checkpoint of iteration 1 \(sync upload\)"):
        train.report({"step": 1}, checkpoint=write_checkpoint(tmp_path / "c", b"x"))


def test_a_failed_upload_at_exit_makes_the_process_fail(
    vanishing_s3: str, stalling_s3: StallingProxy, tmp_path: Path
) -> None:
    script = textwrap.dedent(
        """
        import pathlib, sys, worker_sdk as train
        assert train.get_checkpoint() is None
        print("storage checked", flush=True)
        sys.stdin.readline()  # the test takes the storage away now
        directory = pathlib.Path("ckpt"); directory.mkdir()
        (directory / "model.pt").write_bytes(b"x")
        train.report({"step": 1}, checkpoint=train.Checkpoint.from_directory(directory), upload="async")
        print("training done")
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINJOB_")}
    env.update(TRAINJOB_STORAGE_URI=vanishing_s3, TRAINJOB_STORAGE_RETRY_SECONDS="1", TRAINJOB_NAME="exit")
    process = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == "storage checked\n"
        stalling_s3.close()
        stdout, stderr = process.communicate("go\n", timeout=60)
    finally:
        process.kill()
        process.wait()
    assert stdout == "training done\n"
    assert process.returncode == 1
    assert "trainjob: the checkpoint of iteration 1 (async upload) could not be stored" in stderr
    assert "trainjob: 1 failure(s) at exit: reports or checkpoints were not delivered" in stderr
