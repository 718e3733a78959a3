"""`trainjob demo` (what `make demo` runs), end to end as a subprocess: it reports the plot and the
best checkpoint, and leaves no process behind."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cli_support import REPO_ROOT

from trainjob_operator.local.stack import read_stack_info

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def named_pids(line: str) -> dict[str, int]:
    """`started: local up 12, apiserver 13, trainer digits-0-0 14` -> {name: pid}."""
    pairs = (item.rsplit(" ", 1) for item in line.split(": ", 1)[1].split(", "))
    return {name: int(pid) for name, pid in pairs}


@pytest.mark.slow
def test_demo_runs_digits_to_success_and_stops_everything_it_started(tmp_path: Path) -> None:
    # A working directory of its own, so the plot lands there and not in the checkout.
    for name in ("deploy", "examples"):
        (tmp_path / name).symlink_to(REPO_ROOT / name)
    state = tmp_path / "state"
    command = [sys.executable, "-m", "trainjob_operator", "demo", "--epochs", "3", "--dir", str(state)]
    env = {
        key: value for key, value in os.environ.items() if not key.startswith("AWS_") and key != "KUBECONFIG"
    }
    try:
        result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=420)
    finally:
        subprocess.run(
            [sys.executable, "-m", "trainjob_operator", "local", "down", "--dir", str(state)],
            capture_output=True,
            timeout=120,
        )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "$ kubectl apply -f" in out and "trainjob.trainjob.dev/digits created" in out
    assert "TrainJob digits Succeeded" in out
    best = re.search(
        r"^best checkpoint: (s3://\S+/default/digits/checkpoint_\d{6}) \(iteration (\d+)", out, re.M
    )
    assert best is not None, out
    assert f"trainjob checkpoints download digits --iteration {best.group(2)}" in out
    assert "metric history plot: demo-output/digits-metrics.png (3 iterations)" in out
    plot = tmp_path / "demo-output" / "digits-metrics.png"
    assert plot.read_bytes().startswith(PNG_SIGNATURE) and plot.stat().st_size > 1000

    started_line = next(line for line in out.splitlines() if line.startswith("started: "))
    stopped_line = next(line for line in out.splitlines() if line.startswith("stopped processes: "))
    started, stopped = named_pids(started_line), named_pids(stopped_line)
    assert set(started) == {"local up", "apiserver", "agent", "seaweedfs", "operator", "dashboard"}, (
        started_line
    )
    assert re.search(r"^dashboard: http://127\.0\.0\.1:\d+/", out, re.M), out
    assert set(started.items()) <= set(stopped.items())
    assert {"trainer digits-0-0", "trainer digits-0-1"} <= set(stopped), stopped_line
    assert "still running" not in out
    assert not [f"{name} {pid}" for name, pid in stopped.items() if alive(pid)]
    assert read_stack_info(state) is None
