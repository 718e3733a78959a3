"""``python -m bench`` (``make bench``): every scenario, each in its own process; the JSON lines go
to stdout and to ``bench/results/latest.jsonl``, and the table in ``bench/RESULTS.md`` (between its
markers) is rewritten from them. Extra arguments are passed to every scenario (e.g. ``--no-ray``).

``bench/gpu_checkpoint.py`` is not in the run: it needs the GPU machine (``device``), which is lent
to some sessions only, and runs there as one prepared script.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

from bench.common import REPO_ROOT, last_json_line, log, stop_process


@dataclass(frozen=True)
class Scenario:
    """One step of the run: ``python -m bench.<module> <args>``, ``runs`` times in a row."""

    module: str
    args: tuple[str, ...] = ()
    runs: int = 1

    @property
    def title(self) -> str:
        return " ".join((self.module, *self.args))


SCENARIOS = (
    # Issue 16's goal 1 asks for its ratio in each of five consecutive runs.
    Scenario("report_overhead", runs=5),
    Scenario("checkpoint_report"),
    Scenario("upload_throughput"),
    Scenario("sharded_checkpoint"),
    Scenario("dcp_peer"),
    Scenario("status_latency"),
    Scenario("coordinator_scale"),
    # Real trainers through the node agent (100 x 4), then goal 2's 1000 x 8 on simulated nodes.
    Scenario("operator_scale"),
    Scenario("operator_scale", ("--simulated",)),
    Scenario("recovery"),
    Scenario("preemption"),
)
RESULTS = REPO_ROOT / "bench" / "RESULTS.md"
START, END = "<!-- table:start -->", "<!-- table:end -->"


def row(line: dict[str, Any]) -> str:
    goal = line.get("goal") or {}
    met = {True: "met", False: "NOT met", None: "n/a"}[goal.get("met")]
    return (
        f"| {line['scenario']} | `{json.dumps(line.get('parameters'))}` | `{json.dumps(line.get('ours'))}` | "
        f"`{json.dumps(line.get('peer'))}` | `{json.dumps(line.get('ratio'))}` | "
        f"{goal.get('target', '')} | {met} |"
    )


def write_table(lines: list[dict[str, Any]], command: str, minutes: float) -> None:
    machine = lines[0]["machine"] if lines else {}
    table = [
        START,
        f"Produced by `{command}` at {lines[0]['at'] if lines else '?'} on {json.dumps(machine)}, "
        f"{minutes:.0f} min in all.",
        "",
        "| scenario | parameters | ours | peer / limit | ratio | goal | |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        *(row(line) for line in lines),
        END,
    ]
    text = RESULTS.read_text() if RESULTS.exists() else f"# Benchmark results\n\n{START}\n{END}\n"
    before, _, rest = text.partition(START)
    _, _, after = rest.partition(END)
    RESULTS.write_text(before + "\n".join(table) + after)


def run_scenario(command: list[str]) -> tuple[int, str]:
    """Run one scenario's process to its end: its exit status and stdout (its stderr is the run's).

    A run stopped with SIGTERM (``bench.common`` makes that a ``SystemExit``) hands the SIGTERM on
    and waits up to a minute for the scenario, which then stops the cluster, servers and ranks it
    started; ``subprocess.run`` would SIGKILL it and leave them running."""
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    try:
        stdout, _ = process.communicate()
    finally:
        stop_process(process, timeout=60)
    return process.returncode, stdout


def main() -> int:
    extra = sys.argv[1:]
    started = time.monotonic()
    lines: list[dict[str, Any]] = []
    failed = []
    for scenario in SCENARIOS:
        for run in range(1, scenario.runs + 1):
            log(f"=== {scenario.title}" + (f" (run {run} of {scenario.runs})" if scenario.runs > 1 else ""))
            returncode, stdout = run_scenario(
                [sys.executable, "-m", f"bench.{scenario.module}", *scenario.args, *extra]
            )
            sys.stdout.write(stdout)
            if returncode != 0:
                failed.append(scenario.title)
                continue
            lines.extend(json.loads(x) for x in stdout.splitlines() if x.startswith("{"))
            last_json_line(stdout)
    out = REPO_ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "latest.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    write_table(lines, " ".join(["python -m bench", *extra]), (time.monotonic() - started) / 60)
    if failed:
        log(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
