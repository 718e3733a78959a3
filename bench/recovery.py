"""Scenario 7: a worker is SIGKILLed; the time until the next attempt's first report after resuming,
in phases: failure detected (status attempt/phase changes), old pods gone, new pods running, first
report of the new attempt.

    python -m bench.recovery [--workers 2]
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from bench.common import REPO_ROOT, emit, log, scenario_parser, workdir
from bench.stack import BenchStack, json_lines, trainjob
from tests.support.processes import wait_until


def find_rank_pid(job: str, rank: int, attempt: int) -> int | None:
    """The trainer process of ``job``'s rank (its environment carries the env contract)."""
    wanted = {f"TRAINJOB_NAME={job}", f"RANK={rank}", f"TRAINJOB_ATTEMPT={attempt}"}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            if b"bench.workers.trainer" not in cmdline:
                continue
            environ = set((entry / "environ").read_bytes().decode(errors="replace").split("\0"))
        except OSError:
            continue
        if wanted <= environ:
            return int(entry.name)
    return None


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = scenario_parser(__doc__)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--interval", type=float, default=0.2)
    args = parser.parse_args(argv)
    namespace, name = "bench-recovery", "recovery"
    with (
        workdir("recovery") as tmp,
        BenchStack(tmp / "stack", root=REPO_ROOT, namespaces=(namespace,)) as stack,
    ):
        manifest = trainjob(
            name,
            ["python", "-m", "bench.workers.trainer"],
            workers=args.workers,
            extra_spec={"config": {"reports": 100000, "interval": args.interval, "checkpoint_every": 5}},
        )
        stack.submit(namespace, manifest)

        def status() -> dict[str, Any]:
            return dict(stack.job(namespace, name).get("status") or {})

        wait_until("a checkpoint", lambda: (status().get("iteration") or 0) >= 6, timeout=120, interval=0.05)
        pid = wait_until(
            "rank 1's process", lambda: find_rank_pid(name, args.workers - 1, 0), timeout=30, interval=0.05
        )
        log(f"recovery: SIGKILL rank {args.workers - 1} (pid {pid})")
        killed = time.time()
        os.kill(pid, signal.SIGKILL)

        def stamp(probe: Any) -> float:
            wait_until("a phase", probe, timeout=180, interval=0.02)
            return time.time() - killed

        detected = stamp(lambda: status().get("attempt", 0) >= 1 or status().get("phase") == "Restarting")
        old_gone = stamp(
            lambda: not stack.pods(namespace, f"trainjob.dev/name={name},trainjob.dev/attempt=0")
        )
        selector = f"trainjob.dev/name={name},trainjob.dev/attempt=1"

        def new_running() -> bool:
            pods = stack.pods(namespace, selector)
            return len(pods) == args.workers and all(
                (p.get("status") or {}).get("phase") == "Running" for p in pods
            )

        running = stamp(new_running)

        def first_report() -> float | None:
            for pod in stack.pods(namespace, selector):
                if pod["metadata"]["labels"].get("trainjob.dev/rank") != "0":
                    continue
                lines = json_lines(stack.pod_log(namespace, pod["metadata"]["name"]))
                if lines:
                    return float(lines[0]["t"]) - killed
            return None

        first = wait_until("the new attempt's first report", first_report, timeout=120, interval=0.1)
        resumed_from = None
        for pod in stack.pods(namespace, selector):
            lines = json_lines(stack.pod_log(namespace, pod["metadata"]["name"]))
            if lines:
                resumed_from = lines[0].get("resumed_from")
    phases = {
        "failure_detected_s": round(detected, 2),
        "old_pods_gone_s": round(old_gone, 2),
        "new_pods_running_s": round(running, 2),
        "first_report_after_resume_s": round(first, 2),
    }
    return emit(
        "recovery",
        {"workers": args.workers, "report_interval_s": args.interval, "backoff_s": 1},
        {**phases, "resumed_from_iteration": resumed_from},
        None,
        None,
        {"target": "measured (no numeric goal)", "met": None},
    )


if __name__ == "__main__":
    main()
