"""Scenario 4: on the local cluster, the time from ``report()`` to the iteration being visible on the
TrainJob through the API (p50, p99), with status patches still coalesced (counted at the API server).

    python -m bench.status_latency [--reports 30] [--interval 0.5] [--workers 2]
"""

from __future__ import annotations

import threading
import time
from typing import Any

from bench.common import REPO_ROOT, emit, log, scenario_parser, summary_ms, workdir
from bench.stack import BenchStack, count_requests, json_lines, trainjob
from tests.support.processes import wait_until


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = scenario_parser(__doc__)
    parser.add_argument("--reports", type=int, default=30)
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between reports")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--poll", type=float, default=0.02, help="seconds between status reads")
    args = parser.parse_args(argv)
    namespace, name = "bench-latency", "latency"
    with (
        workdir("latency") as tmp,
        BenchStack(tmp / "stack", root=REPO_ROOT, namespaces=(namespace,)) as stack,
    ):
        offset = stack.log_offset()
        seen: dict[int, float] = {}
        stop = threading.Event()

        def watch() -> None:
            while not stop.is_set():
                try:
                    status = stack.job(namespace, name).get("status") or {}
                except Exception:
                    status = {}
                iteration = status.get("iteration")
                if isinstance(iteration, int):
                    seen.setdefault(iteration, time.time())
                time.sleep(args.poll)

        manifest = trainjob(
            name,
            ["python", "-m", "bench.workers.trainer"],
            workers=args.workers,
            extra_spec={"config": {"reports": args.reports, "interval": args.interval}},
        )
        log(f"status_latency: {args.workers} workers x {args.reports} reports every {args.interval}s")
        stack.submit(namespace, manifest)
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        wait_until(
            "the job to finish",
            lambda: (stack.job(namespace, name).get("status") or {}).get("phase") in ("Succeeded", "Failed"),
            timeout=120 + args.reports * args.interval * 3,
            interval=0.25,
        )
        stop.set()
        watcher.join()
        reported: dict[int, float] = {}
        for pod in stack.pods(namespace, f"trainjob.dev/name={name}"):
            for line in json_lines(stack.pod_log(namespace, pod["metadata"]["name"])):
                # An iteration is complete when the last rank reported it.
                reported[line["iteration"]] = max(reported.get(line["iteration"], 0.0), line["t"])
        status_patches = sum(
            1
            for method, ns, resource, _ in count_requests(stack.apiserver_log, offset)
            if ns == namespace and resource == "trainjobs/status" and method in ("PATCH", "PUT")
        )
    latencies = []
    for iteration, at in sorted(reported.items()):
        visible = [t for i, t in seen.items() if i >= iteration]
        if visible:
            latencies.append(min(visible) - at)
    lat = summary_ms(latencies)
    duration = args.reports * args.interval
    return emit(
        "status_latency",
        {"workers": args.workers, "reports": args.reports, "interval_s": args.interval, "poll_s": args.poll},
        {
            "report_to_status": lat,
            "status_patches": status_patches,
            "status_patches_per_s": round(status_patches / duration, 2),
            "reports_per_s_all_ranks": round(args.workers / args.interval, 2),
        },
        {"limit": "p50 <= 1500 ms, patches coalesced (<= ~1/s)"},
        None,
        {"target": "p50 <= 1.5 s with status patches coalesced", "met": lat["p50_ms"] <= 1500},
    )


if __name__ == "__main__":
    main()
