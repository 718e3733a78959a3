"""The README's local-cluster walkthrough, run as a user would paste it into a shell."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def shell_block_after(heading: str) -> str:
    text = (REPO_ROOT / "README.md").read_text()
    section = text[text.index(heading) :]
    match = re.search(r"```sh\n(.*?)```", section, re.S)
    assert match is not None, f"no sh block after {heading!r}"
    return match.group(1)


@pytest.mark.slow
def test_the_local_cluster_walkthrough_runs_as_written(tmp_path: Path) -> None:
    script = shell_block_after("### On the local cluster")
    # The user's checkout, as seen from a fresh directory: the walkthrough writes .local/ there.
    for name in (".venv", "deploy", "examples"):
        (tmp_path / name).symlink_to(REPO_ROOT / name)
    venv_bin = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{venv_bin}:{os.environ['PATH']}"}
    env.pop("KUBECONFIG", None)
    shell = subprocess.Popen(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = shell.communicate(timeout=600)
    finally:
        subprocess.run(
            [f"{venv_bin}/trainjob", "local", "down", "--dir", str(tmp_path / ".local/trainjob")],
            capture_output=True,
            timeout=120,
        )
        with contextlib.suppress(ProcessLookupError):
            os.killpg(shell.pid, signal.SIGKILL)
        shell.wait()

    assert shell.returncode == 0, output
    assert "trainjob.trainjob.dev/digits created" in output
    assert "condition met" in output
    assert re.search(r"Phase:\s+Succeeded", output), output
    assert "checkpoint_000020" in output  # the example's 20 epochs, committed
    assert "local cluster stopped" in output
