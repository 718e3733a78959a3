"""``python -m bench`` itself: which scenarios the run holds, that each takes the arguments the run
passes to all of them, and that the table it writes in ``bench/RESULTS.md`` keeps the text around
it. The scenarios' own smoke tests are in ``test_bench_smoke.py``."""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import bench.__main__ as run
from tests.support.processes import REPO_ROOT, stop_process, wait_until

BENCH = Path(run.__file__).resolve().parent
# Needs the GPU machine, which only some sessions are lent; it runs there as a prepared script.
NOT_IN_THE_RUN = {"gpu_checkpoint"}


def scenario_modules() -> set[str]:
    """Every module of bench/ that runs as ``python -m bench.<module>``, but the run itself."""
    return {
        path.stem
        for path in BENCH.glob("*.py")
        if path.stem != "__main__" and 'if __name__ == "__main__":' in path.read_text()
    }


def test_the_run_holds_every_scenario_module() -> None:
    modules = scenario_modules()
    assert {"operator_scale", "gpu_checkpoint"} <= modules
    assert {s.module for s in run.SCENARIOS} == modules - NOT_IN_THE_RUN


def test_goal_runs_are_in_the_run() -> None:
    # Issue 16: goal 1 in each of five consecutive runs; goal 2 is the simulated 1000 x 8.
    (report,) = [s for s in run.SCENARIOS if s.module == "report_overhead"]
    assert report.runs == 5
    assert run.Scenario("operator_scale", ("--simulated",)) in run.SCENARIOS
    assert run.Scenario("operator_scale") in run.SCENARIOS


@pytest.mark.parametrize("module", sorted({s.module for s in run.SCENARIOS}))
def test_every_scenario_takes_no_ray(module: str, capsys: pytest.CaptureFixture[str]) -> None:
    """``make bench BENCH_ARGS=--no-ray`` passes ``--no-ray`` to every scenario; one that did not know
    it stopped with argparse's error and the run reported it failed."""
    main = importlib.import_module(f"bench.{module}").main
    with pytest.raises(SystemExit) as stopped:
        main(["--no-ray", "--not-an-option"])
    assert stopped.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith("error: unrecognized arguments: --not-an-option")


def test_write_table_replaces_only_the_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    results = tmp_path / "RESULTS.md"
    results.write_text(f"# Results\n\nabove\n\n{run.START}\nold table\n{run.END}\n\nbelow\n")
    monkeypatch.setattr(run, "RESULTS", results)
    line: dict[str, Any] = {
        "scenario": "report_overhead",
        "parameters": {"workers": 2},
        "ours": {"p50_ms": 0.02},
        "peer": {"ray_v1": {"p50_ms": 6.0}},
        "ratio": 300.0,
        "goal": {"target": ">= 300x", "met": True},
        "machine": {"cores": 2},
        "at": "2026-12-02T12:00:00Z",
    }
    run.write_table([line, {**line, "goal": {"target": ">= 300x", "met": False}}], "python -m bench", 41.6)
    text = results.read_text()
    assert "old table" not in text
    assert text.startswith("# Results\n\nabove\n\n") and text.endswith("\n\nbelow\n")
    assert 'at 2026-12-02T12:00:00Z on {"cores": 2}, 42 min in all.' in text
    rows = [x for x in text.splitlines() if x.startswith("| report_overhead")]
    assert [r.rsplit("|", 2)[1].strip() for r in rows] == ["met", "NOT met"]


_SCENARIO = """
import pathlib, signal, sys, time
here = pathlib.Path(sys.argv[1])
def stop(signum, frame):
    (here / "stopped").write_text("cleaned up")  # what a scenario's `with` blocks do
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
(here / "started").write_text("")
time.sleep(120)
"""

_RUN = """
import sys
import bench.__main__ as run
print(run.run_scenario([sys.executable, "-c", sys.argv[1], sys.argv[2]]))
"""


def test_a_run_stopped_with_sigterm_lets_its_scenario_clean_up(tmp_path: Path) -> None:
    """Before, ``python -m bench`` stopped with SIGTERM SIGKILLed the scenario it was running (what
    ``subprocess.run`` does on an exception), and that scenario's API server stayed up."""
    parent = subprocess.Popen(
        [sys.executable, "-c", _RUN, _SCENARIO, str(tmp_path)],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until("the scenario to start", (tmp_path / "started").exists, timeout=60)
        parent.send_signal(signal.SIGTERM)
        _, stderr = parent.communicate(timeout=60)
    finally:
        stop_process(parent, signal.SIGKILL)
    assert parent.returncode == 128 + signal.SIGTERM, stderr
    assert (tmp_path / "stopped").read_text() == "cleaned up"
