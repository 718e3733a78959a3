"""``python -m worker_sdk.run FILE:FUNCTION`` and ``worker_sdk.torch``'s Ray Train helpers, in real
processes: two gloo ranks against a real coordinator (as a TrainJob's pods run them), and one
process standalone. The storage layer is tested elsewhere on both stores: these run on a
directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.job import JobRunner
from tests.support.processes import REPO_ROOT

PROGRAM = Path(__file__).parent / "programs" / "torch_loop.py"
FILE_ONLY = pytest.mark.parametrize("storage_uri", ["file"], indirect=True)


def entrypoint(function: str) -> list[str]:
    return ["-m", "worker_sdk.run", f"{PROGRAM}:{function}"]


def seen(out: Path, rank: int) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((out / f"rank-{rank}.json").read_text())
    return result


@FILE_ONLY
def test_two_ranks_split_the_data_and_set_epoch_reshuffles(job_runner: Any, tmp_path: Path) -> None:
    runner: JobRunner = job_runner(2)
    coordinator = runner.start_coordinator(0)
    out = tmp_path / "out"
    out.mkdir()
    workers = runner.start_workers(0, coordinator, {"out": str(out)}, args=entrypoint("sampler_and_model"))
    assert runner.wait(workers) == [0, 0], runner.tails()

    ranks = [seen(out, 0), seen(out, 1)]
    for rank in ranks:
        assert rank["group"] == 2 and rank["backend"] == "gloo"  # the entrypoint's process group
        assert rank["config"] == {"out": str(out)}  # FUNCTION(config) with spec.config
        assert rank["model"] == "DistributedDataParallel"
        assert rank["is_data_loader"] and rank["distributed_sampler"]
        assert rank["len"] == 3  # 10 items each, batches of 4
    for name in ("shuffled", "ordered"):
        for epoch in (0, 1):
            first, second = ranks[0]["epochs"][name][epoch], ranks[1]["epochs"][name][epoch]
            assert len(first) == len(second) == 10
            assert sorted(first + second) == list(range(20))  # each item on exactly one rank
    # The sampler's seed plus the epoch: another order in epoch 1 (and another split).
    assert ranks[0]["epochs"]["shuffled"][0] != ranks[0]["epochs"]["shuffled"][1]
    assert sorted(ranks[0]["epochs"]["shuffled"][0]) != list(range(0, 20, 2))
    # The loader did not shuffle: neither does its DistributedSampler (interleaved, every epoch).
    assert ranks[0]["epochs"]["ordered"] == [list(range(0, 20, 2))] * 2
    assert ranks[1]["epochs"]["ordered"] == [list(range(1, 20, 2))] * 2
    state = coordinator.state()
    assert state["settled"], state
    coordinator.stop()
    assert coordinator.status()["iteration"] == 2


def standalone(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the entrypoint as one process outside any TrainJob (cwd tmp_path)."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("TRAINJOB_") and k not in ("WORLD_SIZE", "RANK", "MASTER_ADDR", "MASTER_PORT")
    }
    return subprocess.run(
        [sys.executable, "-m", "worker_sdk.run", *args],
        cwd=tmp_path,
        env={**clean, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT), **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_standalone_runs_the_function_in_a_group_of_one(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    config = json.dumps({"out": str(out)})
    result = standalone(tmp_path, f"{PROGRAM}:sampler_and_model", env={"TRAINJOB_CONFIG": config})
    assert result.returncode == 0, result.stderr

    rank = seen(out, 0)
    assert rank["group"] == 1 and rank["backend"] == "gloo"
    assert rank["model"] == "Linear"  # one process: no DDP, as Ray with one worker
    assert rank["sampler"] == "RandomSampler" and not rank["distributed_sampler"]
    assert rank["len"] == 5 and sorted(rank["epochs"]["shuffled"][0]) == list(range(20))
    assert rank["epochs"]["shuffled"][0] != rank["epochs"]["shuffled"][1]  # RandomSampler, each epoch
    assert rank["epochs"]["ordered"] == [list(range(20))] * 2


def test_function_without_arguments_and_backend_override(tmp_path: Path) -> None:
    """``FUNCTION()`` for a function without parameters; ``--backend none``: no process group,
    and torch is not even imported."""
    out = tmp_path / "out.txt"
    (tmp_path / "light.py").write_text(
        "import sys\n\n"
        "def no_arguments():\n"
        f"    open({str(out)!r}, 'w').write(repr(('torch' in sys.modules, 'called')))\n"
    )
    result = standalone(tmp_path, "--backend", "none", "light.py:no_arguments")
    assert result.returncode == 0, result.stderr
    assert out.read_text() == "(False, 'called')"


def test_a_failing_function_exits_1_with_its_traceback(tmp_path: Path) -> None:
    (tmp_path / "light.py").write_text(
        "def fails(config):\n    raise RuntimeError(f'the loop failed on purpose with {config}')\n"
    )
    env = {"TRAINJOB_DIST_BACKEND": "none", "TRAINJOB_CONFIG": '{"lr": 5}'}
    result = standalone(tmp_path, "light.py:fails", env=env)
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert "RuntimeError: the loop failed on purpose with {'lr': 5}" in result.stderr


LIGHT_PROGRAM = """
def two_arguments(config, other):
    raise AssertionError("never called")

NOT_A_FUNCTION = 3
"""


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("no_such_module_here:train", "no module named 'no_such_module_here'"),
        ("worker_sdk.errors:no_such_function", "worker_sdk.errors has no function 'no_such_function'"),
        ("light.py:two_arguments", "must take no argument or one (the config), as train_loop_per_worker"),
        ("light.py:NOT_A_FUNCTION", "light.py:NOT_A_FUNCTION is a int, not a function"),
        ("/nowhere/train.py:main", "no such file: /nowhere/train.py"),
        ("examples.digits.train", "is not MODULE:FUNCTION or path/to/file.py:FUNCTION"),
    ],
)
def test_bad_targets_get_one_line_and_status_2(tmp_path: Path, target: str, message: str) -> None:
    (tmp_path / "light.py").write_text(LIGHT_PROGRAM)
    result = standalone(tmp_path, target)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("python -m worker_sdk.run: "), result.stderr
    assert message in lines[0]
    assert not (tmp_path / "trainjob-results").exists()  # nothing ran


def test_source_from_the_environment(tmp_path: Path) -> None:
    """How a function submitted from a notebook runs: its source in an env var, not a file."""
    out = tmp_path / "out.txt"
    source = f"def main(config):\n    open({str(out)!r}, 'w').write(repr(sorted(config.items())))\n"
    env = {"FUNCTION_SOURCE": source, "TRAINJOB_CONFIG": '{"lr": 0.5}', "TRAINJOB_DIST_BACKEND": "none"}
    result = standalone(tmp_path, "--source-env", "FUNCTION_SOURCE", "main", env=env)
    assert result.returncode == 0, result.stderr
    assert out.read_text() == "[('lr', 0.5)]"

    result = standalone(tmp_path, "--source-env", "UNSET_VARIABLE", "main")
    assert result.returncode == 2
    assert "--source-env UNSET_VARIABLE: the environment variable is not set or empty" in result.stderr


def test_a_bad_backend_is_refused(tmp_path: Path) -> None:
    result = standalone(tmp_path, f"{PROGRAM}:no_arguments", env={"TRAINJOB_DIST_BACKEND": "mpi"})
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "python -m worker_sdk.run: TRAINJOB_DIST_BACKEND='mpi': expected one of nccl, gloo, none"
    )
