"""``worker_sdk.torch.StateStager``: a checkpoint whose tensors are copied into reused CPU buffers
in the caller and written and uploaded in the background (README.md, "The worker SDK"). With real
torch and the test SeaweedFS: the state comes back exactly, what the loop changes after ``stage``
returns is not stored, and bad input is refused before anything is touched."""

from __future__ import annotations

import copy
import gc
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import pytest
import torch
from torch import nn

import worker_sdk as train
from worker_sdk import session
from worker_sdk import torch as train_torch
from worker_sdk.storage import Storage

SetEnv = Callable[..., None]


def trained_model() -> tuple[nn.Sequential, torch.optim.Optimizer]:
    """A model with parameters, buffers (an int64 counter among them) and a version-carrying
    state dict (BatchNorm's), and an Adam optimizer with state, after one step."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 2))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.8, 0.99))
    model(torch.randn(4, 8)).square().mean().backward()
    optimizer.step()
    return model, optimizer


def assert_same_state(left: Any, right: Any, where: str = "state") -> None:
    """Equal structure, equal plain values, tensors equal bit for bit (dtype and shape too)."""
    if isinstance(left, torch.Tensor):
        assert isinstance(right, torch.Tensor), where
        assert left.dtype == right.dtype and left.shape == right.shape, where
        assert torch.equal(left.cpu(), right.cpu()), where
    elif isinstance(left, dict):
        assert isinstance(right, dict) and list(left) == list(right), where
        for key in left:
            assert_same_state(left[key], right[key], f"{where}[{key!r}]")
    elif isinstance(left, list | tuple):
        assert type(left) is type(right) and len(left) == len(right), where
        for index, (a, b) in enumerate(zip(left, right, strict=True)):
            assert_same_state(a, b, f"{where}[{index}]")
    else:
        assert left == right, where


def storage_env(sdk_env: SetEnv, s3_env: dict[str, str], seaweedfs: Any, tmp_path: Path, name: str) -> Path:
    staging = tmp_path / "staging"
    staging.mkdir()
    sdk_env(
        TRAINJOB_STORAGE_URI=f"s3://{seaweedfs.bucket}/staged-{time.time_ns()}",
        TRAINJOB_NAME=name,
        TRAINJOB_STAGING_DIR=str(staging),
    )
    return staging


@pytest.mark.parametrize("upload", ["sync", "async"])
def test_a_staged_state_round_trips_exactly_and_later_changes_are_not_stored(
    sdk_env: SetEnv,
    s3_env: dict[str, str],
    seaweedfs: Any,
    tmp_path: Path,
    upload: Literal["sync", "async"],
) -> None:
    staging = storage_env(sdk_env, s3_env, seaweedfs, tmp_path, "staged")
    model, optimizer = trained_model()
    # A large tensor too: its write takes long enough that a stager that kept references to the
    # live tensors, instead of copies, would store the changes made just below.
    big = nn.Linear(1024, 1024)
    expected_model = copy.deepcopy(model.state_dict())
    expected_optimizer = copy.deepcopy(optimizer.state_dict())
    expected_big = big.weight.detach().clone()
    history = [1.5, 2.5]
    stager = train_torch.StateStager()

    checkpoint = stager.stage_state(
        model=model, optimizer=optimizer, epoch=3, history=history, big=big.weight
    )
    with torch.no_grad():  # the loop goes on at once, in place
        for parameter in [*model.parameters(), big.weight]:
            parameter.add_(1.0)
    norm = model[1]
    assert isinstance(norm, nn.BatchNorm1d) and norm.running_mean is not None
    norm.running_mean.fill_(7.0)
    model(torch.randn(4, 8)).square().mean().backward()
    optimizer.step()
    history.append(99.0)
    train.report({"loss": 0.5}, checkpoint=checkpoint, upload=upload)
    with torch.no_grad():
        big.weight.mul_(-1.0)
    stager.close()
    assert session.shutdown() == []

    assert list(staging.iterdir()) == []  # the staged files are removed once stored
    committed = train.get_checkpoint()  # a new session, reading what was committed
    assert committed is not None and committed.uri.startswith("s3://")
    assert committed.get_metadata()["metrics"] == {"loss": 0.5}
    with committed.as_directory() as directory:
        saved = torch.load(Path(directory) / "state.pt", weights_only=True)
        restored, restored_optimizer = trained_model()
        with torch.no_grad():
            for parameter in restored.parameters():
                parameter.zero_()
        extra = train_torch.load_state(directory, model=restored, optimizer=restored_optimizer)
    assert_same_state(expected_model, saved["model"], "model")
    # BatchNorm's version, which load_state_dict reads: kept.
    assert saved["model"]._metadata == expected_model._metadata  # type: ignore[attr-defined]
    assert_same_state(expected_model, restored.state_dict(), "loaded model")
    assert_same_state(expected_optimizer, saved["optimizer"], "optimizer")
    assert_same_state(expected_optimizer, restored_optimizer.state_dict(), "loaded optimizer")
    assert extra["epoch"] == 3 and extra["history"] == [1.5, 2.5]
    assert torch.equal(extra["big"], expected_big)


def test_the_buffers_are_reused_and_each_checkpoint_holds_its_own_step(
    sdk_env: SetEnv, s3_env: dict[str, str], seaweedfs: Any, tmp_path: Path
) -> None:
    storage_env(sdk_env, s3_env, seaweedfs, tmp_path, "steps")
    state = {"weight": torch.zeros(1024, 256), "step": torch.tensor(0)}
    stager = train_torch.StateStager()
    for step in (1, 2, 3):
        state["weight"].fill_(float(step))
        state["step"].fill_(step)
        train.report({"step": step}, checkpoint=stager.stage(state, filename="shard-0.pt"), upload="async")
        assert stager.nbytes == 1024 * 256 * 4 + 8  # one set of buffers, the size of the state
    stager.close()
    assert session.shutdown() == []

    storage = train.get_context().get_storage_uri()
    from worker_sdk.storage import open_storage

    store: Storage = open_storage(storage)
    for step in (1, 2, 3):
        local = tmp_path / f"c{step}"
        store.download_file(f"default/steps/checkpoint_{step:06d}/attempt-0/shard-0.pt", local)
        saved = torch.load(local, weights_only=True)
        assert torch.equal(saved["weight"], torch.full((1024, 256), float(step)))
        assert int(saved["step"]) == step


def test_bad_input_is_refused_with_where_it_is_and_loses_nothing(
    sdk_env: SetEnv, s3_env: dict[str, str], seaweedfs: Any, tmp_path: Path
) -> None:
    storage_env(sdk_env, s3_env, seaweedfs, tmp_path, "bad")
    stager = train_torch.StateStager()
    good = stager.stage({"weight": torch.ones(4)})

    class Schedule:
        pass

    with pytest.raises(
        TypeError, match=r"state\['extra'\]\['schedule'\] is a Schedule: stage\(\) holds tensors"
    ):
        stager.stage({"weight": torch.zeros(4), "extra": {"schedule": Schedule()}})
    with pytest.raises(TypeError, match=r"state\['emb'\] is a torch.sparse_coo tensor on cpu"):
        stager.stage({"emb": torch.eye(3).to_sparse()})
    with pytest.raises(TypeError, match="stage\\(\\) takes a state dict \\(a mapping\\), got list"):
        stager.stage([torch.ones(1)])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="filename must be a plain file name"):
        stager.stage({"weight": torch.ones(1)}, filename="../x.pt")
    with pytest.raises(TypeError, match="pin_memory must be True, False or None"):
        train_torch.StateStager(pin_memory="yes")  # type: ignore[arg-type]

    # The refusals touched nothing: the checkpoint staged before them still holds its state.
    train.report({"step": 1}, checkpoint=good, upload="async")
    with pytest.raises(ValueError, match="was already reported: a staged checkpoint is reported once"):
        train.report({"step": 2}, checkpoint=good)
    replaced = stager.stage({"weight": torch.full((4,), 2.0)})
    stager.stage({"weight": torch.full((4,), 3.0)})
    with pytest.raises(ValueError, match="was replaced by a later stage\\(\\) before it was reported"):
        train.report({"step": 2}, checkpoint=replaced)
    stager.close()
    with pytest.raises(RuntimeError, match="stage\\(\\) called after the stager was closed"):
        stager.stage({"weight": torch.ones(1)})
    assert session.shutdown() == []

    committed = train.get_checkpoint()
    assert (
        committed is not None and committed.get_metadata()["iteration"] == 1
    )  # the refused ones: never reported
    with committed.as_directory() as directory:
        assert torch.equal(
            torch.load(Path(directory) / "state.pt", weights_only=True)["weight"], torch.ones(4)
        )


def test_a_staged_checkpoint_never_reported_leaves_no_files(tmp_path: Path) -> None:
    stager = train_torch.StateStager(staging_dir=tmp_path)
    checkpoint = stager.stage({"weight": torch.ones(8)})
    copied = Path(checkpoint.to_directory(tmp_path / "copy"))  # readable before it is reported
    assert torch.equal(torch.load(copied / "state.pt", weights_only=True)["weight"], torch.ones(8))
    del checkpoint
    gc.collect()
    stager.close()
    assert [p.name for p in tmp_path.iterdir()] == ["copy"]
