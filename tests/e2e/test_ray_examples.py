"""Ray Train's own PyTorch examples, taken from the ray wheel at test time (``make ray-examples``
fetches it into .cache/, never committed), with only the README migration table's renames
applied mechanically: standalone through ``python -m worker_sdk.run``, and as a 2-worker TrainJob
on the local cluster that commits its checkpoints.

Which examples qualify (no downloaded data, no GPU) is in ``QUALIFYING``; every other example in
the wheel is in ``NOT_QUALIFYING`` with the reason, so a new one in a later Ray is noticed."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import TypedDict

import pytest
import torch
from torch import nn
from torch.nn.modules.utils import consume_prefix_in_state_dict_if_present

import worker_sdk
import worker_sdk.torch
from tests.support.kube import Cluster
from tests.support.manifests import trainjob
from tests.support.processes import REPO_ROOT, wait_for
from trainjob_operator.local.stack import LocalStack
from worker_sdk.checkpoint import committed_checkpoint

WHEEL_DIR = Path(os.environ.get("RAY_WHEEL_DIR", REPO_ROOT / ".cache" / "ray-wheel"))
EXAMPLES = "ray/train/examples/pytorch/"
# example file -> its train_loop_per_worker
QUALIFYING = {"torch_linear_example.py": "train_func"}
NOT_QUALIFYING = {
    "torch_quick_start.py": "downloads FashionMNIST through torchvision",
    "torch_fashion_mnist_example.py": "downloads FashionMNIST through torchvision",
    "torch_regression_example.py": "reads s3://anonymous@air-example-data with Ray Data (get_dataset_shard)",
    "torch_data_prefetch_benchmark/auto_pipeline_for_host_to_device_data_transfer.py": (
        "times itself with CUDA events: needs a GPU"
    ),
}


# Small enough for 2 cores; the example's own defaults otherwise.
class _Config(TypedDict):
    """The keys the examples' train_func reads from its config."""

    epochs: int
    data_size: int
    val_size: int
    batch_size: int
    lr: float
    hidden_size: int


CONFIG: _Config = {
    "epochs": 2,
    "data_size": 200,
    "val_size": 40,
    "batch_size": 32,
    "lr": 1e-2,
    "hidden_size": 1,
}


def ray_examples() -> dict[str, str]:
    """The example sources in the ray wheel, by path under ray/train/examples/pytorch/."""
    wheels = sorted(WHEEL_DIR.glob("ray-*.whl"))
    assert wheels, f"no ray wheel in {WHEEL_DIR}: run `make ray-examples` (make test does)"
    with zipfile.ZipFile(wheels[-1]) as wheel:
        return {
            name[len(EXAMPLES) :]: wheel.read(name).decode()
            for name in wheel.namelist()
            if name.startswith(EXAMPLES) and name.endswith(".py") and not name.endswith("__init__.py")
        }


_FROM_IMPORT = re.compile(r"^from (ray\.train(?:\.torch)?) import (.+)$", re.MULTILINE)


def migrate(source: str) -> str:
    """The migration table's renames, nothing else: ``ray.train`` is ``worker_sdk`` (and
    ``ray.train.torch`` ``worker_sdk.torch``); imported names with no counterpart (TorchTrainer,
    ScalingConfig, RunConfig: they become the TrainJob manifest) are dropped from the imports."""

    def from_import(match: re.Match[str]) -> str:
        module = worker_sdk.torch if match.group(1).endswith(".torch") else worker_sdk
        kept = [name.strip() for name in match.group(2).split(",") if hasattr(module, name.strip())]
        return f"from {module.__name__} import {', '.join(kept)}" if kept else ""

    source = _FROM_IMPORT.sub(from_import, source)
    source = re.sub(r"^import ray\.train as train$", "import worker_sdk as train", source, flags=re.MULTILINE)
    source = re.sub(r"^from ray import train$", "import worker_sdk as train", source, flags=re.MULTILINE)
    source = re.sub(r"^import ray\.train\.torch$", "import worker_sdk.torch", source, flags=re.MULTILINE)
    return re.sub(r"\bray\.train\.", "worker_sdk.", source)


@pytest.fixture
def migrated(tmp_path: Path) -> dict[str, Path]:
    """The qualifying examples, renamed, each in a file of its own."""
    examples = ray_examples()
    paths = {}
    for name in QUALIFYING:
        path = tmp_path / "examples" / Path(name).name
        path.parent.mkdir(exist_ok=True)
        path.write_text(migrate(examples[name]))
        paths[name] = path
    return paths


def test_every_example_in_the_wheel_is_classified() -> None:
    assert set(ray_examples()) == set(QUALIFYING) | set(NOT_QUALIFYING)


def test_the_renames_touch_only_import_lines() -> None:
    original = ray_examples()["torch_linear_example.py"].splitlines()
    renamed = migrate(ray_examples()["torch_linear_example.py"]).splitlines()
    assert len(original) == len(renamed)
    changed = [(a, b) for a, b in zip(original, renamed, strict=True) if a != b]
    assert changed == [
        ("import ray.train as train", "import worker_sdk as train"),
        ("from ray.train import Checkpoint, RunConfig, ScalingConfig", "from worker_sdk import Checkpoint"),
        ("from ray.train.torch import TorchTrainer", ""),
    ]


def load_linear_model(directory: str) -> nn.Linear:
    """The example saves ``model.state_dict()`` as it is: with 2 workers the DDP wrapper's
    (``module.`` keys), as it does under Ray."""
    state = torch.load(Path(directory) / "model.pt", weights_only=True)
    consume_prefix_in_state_dict_if_present(state, "module.")
    model = nn.Linear(1, CONFIG["hidden_size"])
    model.load_state_dict(state)
    return model


def test_linear_example_runs_standalone(migrated: dict[str, Path], tmp_path: Path) -> None:
    path = migrated["torch_linear_example.py"]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TRAINJOB_")},
        "TRAINJOB_CONFIG": json.dumps(CONFIG),
        "TRAINJOB_NAME": "linear",
        "OMP_NUM_THREADS": "1",
    }
    result = subprocess.run(
        [sys.executable, "-m", "worker_sdk.run", f"{path}:train_func"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    latest = tmp_path / "trainjob-results" / "default" / "linear" / "checkpoint_000002"
    checkpoint = committed_checkpoint(latest.as_uri(), retry_budget_seconds=5)
    assert checkpoint is not None, sorted(p.name for p in latest.parent.iterdir())
    assert checkpoint.get_metadata()["metrics"].keys() == {"loss"}
    with checkpoint.as_directory() as directory:
        model = load_linear_model(directory)
    assert model(torch.tensor([[1.0]])).shape == (1, 1)


@pytest.mark.slow
def test_linear_example_as_a_two_worker_trainjob(
    cluster: Cluster, stack: LocalStack, migrated: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = migrated["torch_linear_example.py"]
    manifest = trainjob(
        "ray-linear",
        ["python", "-m", "worker_sdk.run", f"{path}:train_func"],
        storage_uri="s3://trainjob/e2e-ray-linear",
        extra_spec={"config": CONFIG},
    )
    cluster.apply(manifest)
    wait_for(
        lambda: cluster.status("ray-linear").get("phase") in ("Succeeded", "Failed"),
        240,
        "the Ray linear example to finish",
        cluster.describe_job("ray-linear"),
    )
    status = cluster.status("ray-linear")
    assert status["phase"] == "Succeeded", status.get("message")
    assert status["iteration"] == 2 and set(status["metrics"]) == {"loss"}
    latest = status["latestCheckpoint"]
    assert latest["iteration"] == 2
    # Both ranks saved model.pt (the replicated model): it is committed once.
    assert stack.seaweedfs is not None
    for key, value in stack.seaweedfs.credentials_env.items():
        monkeypatch.setenv(key, value)
    checkpoint = committed_checkpoint(latest["uri"], retry_budget_seconds=10)
    assert checkpoint is not None
    assert [f["path"] for f in checkpoint.get_metadata()["files"]] == ["model.pt"]
    with checkpoint.as_directory() as directory:
        load_linear_model(directory)
