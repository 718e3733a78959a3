"""The environment contract (docs/architecture.md, "The rank environment") as the SDK reads it, and
the standalone rule."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

import worker_sdk as train
from worker_sdk.context import JobEnvironment, Settings

SetEnv = Callable[..., None]

JOB_ENV = {
    "TRAINJOB_NAME": "digits",
    "TRAINJOB_NAMESPACE": "ml",
    "TRAINJOB_ATTEMPT": "2",
    "WORLD_SIZE": "4",
    "RANK": "3",
    "LOCAL_RANK": "1",
    "LOCAL_WORLD_SIZE": "2",
    "NODE_RANK": "1",
    "MASTER_ADDR": "digits-2-0.digits",
    "MASTER_PORT": "29500",
    "TRAINJOB_COORDINATOR_URL": "http://digits-2-0.digits:8470/",
    "TRAINJOB_REPORT_TOKEN": "secret",
    "TRAINJOB_STORAGE_URI": "s3://ckpt/runs",
    "TRAINJOB_RESUME_CHECKPOINT": "s3://ckpt/runs/ml/digits/checkpoint_000040",
    "TRAINJOB_CONFIG": '{"epochs": 20, "lr": 0.05, "layers": [64, 10]}',
}


def test_a_worker_reads_the_whole_contract() -> None:
    env = JobEnvironment.from_env(JOB_ENV)
    context = env.context
    assert not env.standalone
    assert (context.get_job_name(), context.get_namespace(), context.get_attempt()) == ("digits", "ml", 2)
    assert (context.get_world_rank(), context.get_world_size()) == (3, 4)
    assert (context.get_local_rank(), context.get_local_world_size(), context.get_node_rank()) == (1, 2, 1)
    assert context.get_storage_uri() == "s3://ckpt/runs"
    assert context.get_config() == {"epochs": 20, "lr": 0.05, "layers": [64, 10]}
    assert env.coordinator_url == "http://digits-2-0.digits:8470"
    assert env.report_token == "secret"
    assert env.resume_checkpoint_uri == "s3://ckpt/runs/ml/digits/checkpoint_000040"
    assert env.settings == Settings()


def test_get_config_returns_a_copy() -> None:
    context = JobEnvironment.from_env(JOB_ENV).context
    context.get_config()["layers"].append(99)
    assert context.get_config()["layers"] == [64, 10]


def test_no_trainjob_environment_means_standalone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    env = JobEnvironment.from_env({"TRAINJOB_CONFIG": '{"epochs": 1}'})
    context = env.context
    assert env.standalone
    assert (context.get_world_rank(), context.get_world_size(), context.get_attempt()) == (0, 1, 0)
    assert context.get_namespace() == "default"
    assert context.get_job_name()  # the running program's name
    assert context.get_storage_uri() == (tmp_path / "trainjob-results").as_uri()
    assert context.get_config() == {"epochs": 1}


def test_standalone_takes_name_and_storage_from_the_environment() -> None:
    env = JobEnvironment.from_env({"TRAINJOB_NAME": "mnist", "TRAINJOB_STORAGE_URI": "file:///data/ckpt"})
    assert env.context.get_job_name() == "mnist"
    assert env.context.get_storage_uri() == "file:///data/ckpt"


def test_a_partial_job_environment_names_what_is_missing() -> None:
    with pytest.raises(RuntimeError) as raised:
        JobEnvironment.from_env({"TRAINJOB_COORDINATOR_URL": "http://c:8470", "TRAINJOB_NAME": "digits"})
    assert str(raised.value) == (
        "incomplete trainjob environment: TRAINJOB_COORDINATOR_URL is set, so this process is a TrainJob "
        "worker, but TRAINJOB_NAMESPACE, TRAINJOB_ATTEMPT, WORLD_SIZE, RANK, LOCAL_RANK, LOCAL_WORLD_SIZE, "
        "NODE_RANK, TRAINJOB_REPORT_TOKEN, TRAINJOB_STORAGE_URI are not. The operator sets all of them; to "
        "run standalone (one process, checkpoints in a local directory) unset TRAINJOB_COORDINATOR_URL, "
        "TRAINJOB_REPORT_TOKEN, TRAINJOB_ATTEMPT (TRAINJOB_COORDINATOR_URL unset means standalone mode)"
    )


def test_get_context_raises_for_a_partial_environment(sdk_env: SetEnv) -> None:
    sdk_env(**{k: v for k, v in JOB_ENV.items() if k != "RANK"})
    with pytest.raises(train.JobEnvironmentError, match=r"but RANK is not\. The operator sets all of them"):
        train.get_context()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"RANK": "4"}, "RANK=4 is not below WORLD_SIZE=4"),
        ({"RANK": "one"}, "RANK='one' is not an integer"),
        ({"WORLD_SIZE": "0"}, "WORLD_SIZE=0 must be >= 1"),
        ({"TRAINJOB_CONFIG": "[1, 2]"}, "TRAINJOB_CONFIG must be a JSON object, got list"),
        (
            {"TRAINJOB_CONFIG": "{epochs: 1}"},
            "TRAINJOB_CONFIG is not valid JSON: Expecting property name enclosed in double quotes: "
            "line 1 column 2 (char 1)",
        ),
        ({"TRAINJOB_UPLOAD_QUEUE": "0"}, "TRAINJOB_UPLOAD_QUEUE=0 must be >= 1"),
        ({"TRAINJOB_FINAL_WAIT_SECONDS": "soon"}, "TRAINJOB_FINAL_WAIT_SECONDS='soon' is not a number"),
    ],
)
def test_invalid_values_are_refused_with_their_name(change: dict[str, str], message: str) -> None:
    with pytest.raises(train.JobEnvironmentError) as raised:
        JobEnvironment.from_env({**JOB_ENV, **change})
    assert str(raised.value) == message


def test_several_processes_without_a_coordinator_are_refused() -> None:
    with pytest.raises(train.JobEnvironmentError) as raised:
        JobEnvironment.from_env({"WORLD_SIZE": "2", "RANK": "1"})
    assert str(raised.value) == (
        "WORLD_SIZE=2 but TRAINJOB_COORDINATOR_URL is not set: standalone mode runs one process; several "
        "processes need a TrainJob (and its coordinator)"
    )


def test_knobs_are_read() -> None:
    settings = JobEnvironment.from_env(
        {
            **JOB_ENV,
            "TRAINJOB_FINAL_WAIT_SECONDS": "5",
            "TRAINJOB_UPLOAD_QUEUE": "4",
            "TRAINJOB_REPORT_BUFFER": "10",
            "TRAINJOB_STORAGE_RETRY_SECONDS": "1.5",
            "TRAINJOB_HTTP_TIMEOUT_SECONDS": "3",
            "TRAINJOB_STAGING_DIR": "/scratch",
        }
    ).settings
    assert settings == Settings(5.0, 4, 10, 1.5, 3.0, "/scratch")
