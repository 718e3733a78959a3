"""``python -m bench`` (``make bench``): every scenario, each in its own process; the JSON lines go
to stdout and to ``bench/results/latest.jsonl``, and the table in ``bench/RESULTS.md`` (between its
markers) is rewritten from them. Extra arguments are passed to every scenario (e.g. ``--no-ray``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from bench.common import REPO_ROOT, last_json_line, log

SCENARIOS = (
    "report_overhead",
    "checkpoint_report",
    "upload_throughput",
    "sharded_checkpoint",
    "dcp_peer",
    "status_latency",
    "coordinator_scale",
    "operator_scale",
    "recovery",
    "preemption",
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


def write_table(lines: list[dict[str, Any]], command: str) -> None:
    machine = lines[0]["machine"] if lines else {}
    table = [
        START,
        f"Produced by `{command}` at {lines[0]['at'] if lines else '?'} on {json.dumps(machine)}.",
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


def main() -> int:
    extra = sys.argv[1:]
    lines: list[dict[str, Any]] = []
    failed = []
    for scenario in SCENARIOS:
        log(f"=== {scenario}")
        result = subprocess.run(
            [sys.executable, "-m", f"bench.{scenario}", *extra],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        sys.stdout.write(result.stdout)
        if result.returncode != 0:
            failed.append(scenario)
            continue
        lines.extend(json.loads(x) for x in result.stdout.splitlines() if x.startswith("{"))
        last_json_line(result.stdout)
    out = REPO_ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "latest.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    write_table(lines, " ".join(["python -m bench", *extra]))
    if failed:
        log(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
