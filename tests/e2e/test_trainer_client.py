"""The notebook flow on the local cluster through ``TrainerClient``: train(function) -> wait ->
result(); a failing function's error and traceback; bad input; and that importing the client
loads neither kopf nor the local cluster."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from tests.support.kube import Cluster
from tests.support.processes import wait_for
from trainjob_operator.client import CommandError
from trainjob_operator.local.stack import LocalStack
from trainjob_operator.result import Result, TrainingFailedError
from trainjob_operator.trainer_client import TrainerClient

ITERATIONS = 4


def train_func(config: dict[str, Any]) -> None:
    """A notebook's training function: imports inside, as the function alone travels."""
    import tempfile

    import torch

    import worker_sdk as train

    torch.manual_seed(0)
    model = train.torch.prepare_model(torch.nn.Linear(2, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=config["lr"])
    features = torch.randn(64, 2)
    targets = features @ torch.tensor([[2.0], [-1.0]])
    for step in range(config["iterations"]):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(features), targets)
        loss.backward()  # type: ignore[no-untyped-call]  # torch leaves Tensor.backward unannotated
        optimizer.step()
        with tempfile.TemporaryDirectory() as directory:
            checkpoint = None
            if train.get_context().get_world_rank() == 0:
                torch.save(train.torch.unwrap_model(model).state_dict(), f"{directory}/model.pt")
                checkpoint = train.Checkpoint.from_directory(directory)
            train.report({"loss": loss.item(), "step": step}, checkpoint=checkpoint)
    print(f"trained {config['iterations']} steps", flush=True)


def failing_func() -> None:
    raise ValueError("bad hyperparameters")


@pytest.fixture
def client(cluster: Cluster, stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> TrainerClient:
    assert stack.seaweedfs is not None
    for key, value in stack.seaweedfs.credentials_env.items():  # to download checkpoints
        monkeypatch.setenv(key, value)
    return TrainerClient(kubeconfig=stack.kubeconfig, namespace=cluster.namespace)


def test_importing_the_client_loads_neither_kopf_nor_the_local_cluster() -> None:
    code = (
        "import sys, trainjob_operator.trainer_client, trainjob_operator.result\n"
        "heavy = {'kopf', 'localcluster', 'trainjob_operator.local', 'trainjob_operator.controller', "
        "'pandas', 'torch', 'matplotlib'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.slow
def test_notebook_flow_train_wait_result(client: TrainerClient, cluster: Cluster) -> None:
    name = client.train(
        train_func,
        workers=2,
        config={"lr": 0.1, "iterations": ITERATIONS},
        storage_uri=f"s3://trainjob/e2e-{cluster.namespace}",
        spec={
            "checkpoints": {"numToKeep": 2, "scoreAttribute": "loss", "scoreOrder": "min"},
            "failurePolicy": {"maxRestarts": 0},
        },
    )
    assert name.startswith("train-func-")
    assert [job["metadata"]["name"] for job in client.list_jobs()] == [name]
    job = client.wait_for_job_status(name, timeout=240)
    assert job["status"]["phase"] == "Succeeded"
    assert f"trained {ITERATIONS} steps" in list(client.get_job_logs(name))

    result = client.result(name)
    assert result.error is None
    assert result.path == f"s3://trainjob/e2e-{cluster.namespace}/{cluster.namespace}/{name}"
    frame = result.metrics_dataframe
    assert list(frame["training_iteration"]) == list(range(1, ITERATIONS + 1))  # every iteration
    assert list(frame["step"]) == list(range(ITERATIONS))
    assert result.metrics["step"] == ITERATIONS - 1
    assert frame["loss"].iloc[-1] == result.metrics["loss"]
    assert result.checkpoint is not None and result.checkpoint.uri.endswith(f"checkpoint_{ITERATIONS:06d}")
    assert len(result.best_checkpoints) == 2  # numToKeep
    for checkpoint, metrics in result.best_checkpoints:
        assert set(metrics) == {"loss", "step"} and checkpoint.get_metadata()["metrics"] == metrics

    import torch

    best = result.get_best_checkpoint("loss", "min")
    assert best is not None
    model = torch.nn.Linear(2, 1)
    with best.as_directory() as directory:
        model.load_state_dict(torch.load(f"{directory}/model.pt", weights_only=True))
    assert model(torch.ones(1, 2)).shape == (1, 1)

    again = Result.from_path(result.path)  # from storage alone, as Ray's Result.from_path
    assert again.metrics == result.metrics and again.path == result.path
    assert [c.uri for c, _ in again.best_checkpoints] == [c.uri for c, _ in result.best_checkpoints]

    client.delete_job(name)  # the operator's finalizer lets it go once its pods are gone
    wait_for(lambda: not client.list_jobs(), 60, f"TrainJob {name} to be deleted")
    with pytest.raises(CommandError, match=f'TrainJob "{name}" not found in namespace "{cluster.namespace}"'):
        client.delete_job(name)


@pytest.mark.slow
def test_a_failing_function_fails_the_job_with_its_traceback(client: TrainerClient, cluster: Cluster) -> None:
    name = client.train(
        failing_func,
        name="fails",
        storage_uri=f"s3://trainjob/e2e-{cluster.namespace}",
        spec={"failurePolicy": {"maxRestarts": 0}},
    )
    with pytest.raises(CommandError, match='TrainJob "fails" Failed, not Succeeded'):
        client.wait_for_job_status(name, timeout=120)
    logs = "\n".join(client.get_job_logs(name))
    assert "Traceback (most recent call last)" in logs and "ValueError: bad hyperparameters" in logs
    result = client.result(name)
    assert isinstance(result.error, TrainingFailedError)
    assert result.checkpoint is None and result.metrics == {} and result.metrics_dataframe.empty


def test_bad_input_is_one_clear_error(client: TrainerClient, tmp_path: Any) -> None:
    with pytest.raises(CommandError, match="train\\(\\) takes a function or a command, one of them"):
        client.train()
    with pytest.raises(CommandError, match="ships a function defined with def"):
        client.train(lambda: None)
    with pytest.raises(CommandError, match=r"cannot read manifest \S*missing\.yaml: No such file or"):
        client.submit(tmp_path / "missing.yaml")
    with pytest.raises(CommandError, match="the manifest is not a TrainJob"):
        client.submit({"kind": "Pod", "metadata": {"name": "x"}})
    with pytest.raises(CommandError, match='TrainJob "nothing" not found'):
        client.result("nothing")
    with pytest.raises(ValueError, match="is not a job's storage path"):
        Result.from_path("s3://bucket-only")
