"""What a user sees for each mistake in a report() call: the exact message."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

import worker_sdk as train

SetEnv = Callable[..., None]


@pytest.fixture
def checkpoint_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "ckpt"
    directory.mkdir()
    (directory / "model.pt").write_bytes(b"weights")
    return directory


@pytest.fixture(autouse=True)
def standalone(sdk_env: SetEnv, tmp_path: Path) -> None:
    sdk_env(TRAINJOB_STORAGE_URI=(tmp_path / "storage").as_uri(), TRAINJOB_NAME="validation")


def message_of(call: Callable[[], Any]) -> str:
    with pytest.raises(Exception) as raised:
        call()
    return f"{type(raised.value).__name__}: {raised.value}"


def test_metrics_must_be_a_dict() -> None:
    assert message_of(lambda: train.report([0.5])) == (  # type: ignore[arg-type]  # bad input on purpose
        "ProtocolError: metrics must be a dict of name -> number or string, got list"
    )


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_nan_and_infinities_are_refused_with_the_way_out(value: float) -> None:
    assert message_of(lambda: train.report({"loss": value})) == (
        f"ProtocolError: metrics['loss'] is {value}: NaN and infinities are not JSON; report a finite "
        "number, or str(value) if you want to record it"
    )
    with pytest.raises(ValueError):  # ProtocolError is a ValueError
        train.report({"loss": value})


def test_a_nan_as_string_is_accepted() -> None:
    train.report({"loss": str(math.nan), "step": 1, "ok": True, "note": None})


def test_metric_values_must_be_scalars() -> None:
    assert message_of(lambda: train.report({"loss": [0.5]})) == (  # type: ignore[dict-item]  # bad input on purpose
        "ProtocolError: metrics['loss'] has type list: only numbers, strings, booleans and None are "
        "allowed (convert tensors with .item())"
    )


def test_metric_names_must_be_strings() -> None:
    assert message_of(lambda: train.report({1: 0.5})) == (  # type: ignore[dict-item]  # bad input on purpose
        "ProtocolError: metrics: metric names must be non-empty strings, got 1"
    )


def test_a_checkpoint_directory_must_exist(tmp_path: Path, checkpoint_dir: Path) -> None:
    missing = tmp_path / "nowhere"
    assert message_of(lambda: train.Checkpoint.from_directory(missing)) == (
        f"FileNotFoundError: checkpoint directory {missing} does not exist"
    )
    checkpoint = train.Checkpoint.from_directory(checkpoint_dir)
    (checkpoint_dir / "model.pt").unlink()
    checkpoint_dir.rmdir()
    assert message_of(lambda: train.report({"loss": 1.0}, checkpoint=checkpoint)) == (
        f"FileNotFoundError: checkpoint directory {checkpoint_dir} does not exist"
    )


def test_a_symlink_out_of_the_checkpoint_is_refused(tmp_path: Path, checkpoint_dir: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("not for storage")
    (checkpoint_dir / "link.txt").symlink_to(secret)
    checkpoint = train.Checkpoint.from_directory(checkpoint_dir)
    assert message_of(lambda: train.report({"loss": 1.0}, checkpoint=checkpoint)) == (
        f"ValueError: checkpoint file link.txt is a symlink to {secret}, outside the checkpoint directory "
        f"{checkpoint_dir}: copy the file into the directory instead"
    )


def test_a_symlink_inside_the_checkpoint_uploads_its_content(checkpoint_dir: Path) -> None:
    (checkpoint_dir / "alias.pt").symlink_to(checkpoint_dir / "model.pt")
    train.report({"loss": 1.0}, checkpoint=train.Checkpoint.from_directory(checkpoint_dir))


def test_upload_must_be_sync_or_async(checkpoint_dir: Path) -> None:
    checkpoint = train.Checkpoint.from_directory(checkpoint_dir)
    assert message_of(lambda: train.report({"loss": 1.0}, checkpoint=checkpoint, upload="later")) == (  # type: ignore[arg-type]  # bad input on purpose
        "ValueError: upload must be 'sync' or 'async', got 'later'"
    )


def test_checkpoint_must_be_a_checkpoint(checkpoint_dir: Path) -> None:
    assert message_of(lambda: train.report({"loss": 1.0}, checkpoint=str(checkpoint_dir))) == (  # type: ignore[arg-type]  # bad input on purpose
        "TypeError: checkpoint must be a worker_sdk.Checkpoint (Checkpoint.from_directory(path)), got str"
    )


def test_checkpoint_dir_name_must_be_one_safe_component(checkpoint_dir: Path) -> None:
    checkpoint = train.Checkpoint.from_directory(checkpoint_dir)
    assert message_of(lambda: train.report({}, checkpoint=checkpoint, checkpoint_dir_name="../up")) == (
        "ProtocolError: invalid checkpoint directory name '../up': use letters, digits, '.', '_' and '-' "
        "(one path component, at most 128 characters)"
    )
    assert message_of(lambda: train.report({}, checkpoint_dir_name="best")) == (
        "ValueError: checkpoint_dir_name is only used together with a checkpoint"
    )


def test_the_manifest_name_is_reserved(checkpoint_dir: Path) -> None:
    (checkpoint_dir / ".trainjob-checkpoint.json").write_text("{}")
    checkpoint = train.Checkpoint.from_directory(checkpoint_dir)
    assert message_of(lambda: train.report({}, checkpoint=checkpoint)) == (
        "ValueError: .trainjob-checkpoint.json is reserved for the manifest the commit writes"
    )


def test_a_refused_report_does_not_count_as_an_iteration(tmp_path: Path, checkpoint_dir: Path) -> None:
    with pytest.raises(ValueError):
        train.report({"loss": math.nan})
    train.report({"loss": 1.0}, checkpoint=train.Checkpoint.from_directory(checkpoint_dir))
    from worker_sdk import session

    assert session.shutdown() == []
    manifest = tmp_path / "storage/default/validation/checkpoint_000001/.trainjob-checkpoint.json"
    assert manifest.exists()


NOT_AN_INT = "TypeError: total_iterations must be an int (how many times report() is called in all), got"


@pytest.mark.parametrize(
    ("total", "message"),
    [
        (0, "ProtocolError: total_iterations must be >= 1, got 0"),
        (-3, "ProtocolError: total_iterations must be >= 1, got -3"),
        (10.0, f"{NOT_AN_INT} float"),
        (True, f"{NOT_AN_INT} bool"),
        ("10", f"{NOT_AN_INT} str"),
    ],
)
def test_the_total_number_of_iterations_must_be_a_positive_int(total: Any, message: str) -> None:
    assert message_of(lambda: train.set_total_iterations(total)) == message


def test_standalone_a_total_is_accepted_and_changes_nothing(tmp_path: Path) -> None:
    train.set_total_iterations(2)
    train.report({"loss": 1.0})
    train.set_total_iterations(3)  # the last value counts
    train.report({"loss": 0.5})
    from worker_sdk import session

    assert session.shutdown() == []


def test_once_the_session_is_made_every_mistake_gets_the_same_message() -> None:
    """A report of metrics alone takes a shorter way (``Session.report_metrics``) than one with
    other arguments (``Session.report``): the same checks and messages, also once the session
    exists."""
    train.report({"loss": 1.0})
    assert message_of(lambda: train.report([0.5])) == (  # type: ignore[arg-type]  # bad input on purpose
        "ProtocolError: metrics must be a dict of name -> number or string, got list"
    )
    assert message_of(lambda: train.report({"loss": math.nan})) == (
        "ProtocolError: metrics['loss'] is nan: NaN and infinities are not JSON; report a finite number, "
        "or str(value) if you want to record it"
    )
    assert message_of(lambda: train.report({"loss": [0.5]})) == (  # type: ignore[dict-item]  # bad input on purpose
        "ProtocolError: metrics['loss'] has type list: only numbers, strings, booleans and None are "
        "allowed (convert tensors with .item())"
    )
    assert message_of(lambda: train.report({1: 0.5})) == (  # type: ignore[dict-item]  # bad input on purpose
        "ProtocolError: metrics: metric names must be non-empty strings, got 1"
    )
    assert message_of(lambda: train.report({"": 0.5})) == (
        "ProtocolError: metrics: metric names must be non-empty strings, got ''"
    )
    assert message_of(lambda: train.report({"loss": 1.0}, upload="later")) == (  # type: ignore[arg-type]  # bad input on purpose
        "ValueError: upload must be 'sync' or 'async', got 'later'"
    )


class _Loss(float):
    """A float subclass, as numpy's float64 is."""


def test_any_mapping_and_float_subclasses_are_accepted_and_a_subclass_nan_is_not() -> None:
    import numpy

    train.report({"loss": 1.0})
    train.report(MappingProxyType({"loss": _Loss(0.5), "lr": numpy.float64(0.1)}))
    assert message_of(lambda: train.report({"loss": _Loss(math.inf)})) == (
        "ProtocolError: metrics['loss'] is inf: NaN and infinities are not JSON; report a finite number, "
        "or str(value) if you want to record it"
    )
