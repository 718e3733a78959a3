"""Scenario 6: N TrainJobs x 4 workers (a trainer that reports 10 times and exits) submitted at once
to the local cluster: time until every pod runs, until every job Succeeded, API requests and writes
per job (counted at the API server), and the operator's RSS. Each job gets a namespace of its own
so requests are attributed to jobs by namespace.

    python -m bench.operator_scale [--jobs 100] [--workers 4]

Every pod is a real Python process (jobs x workers processes plus a coordinator per job): on 2
cores and 24 GiB the default 100 x 4 takes about five minutes, nearly all of it the node agent
starting 500 processes; the writes per job do not depend on N when the operator keeps up.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import REPO_ROOT, emit, log, workdir
from bench.stack import BenchStack, breakdown, count_requests, trainjob

STATUS_PATCHES = ("PATCH trainjobs/status", "PUT trainjobs/status", "PATCH pods/status", "PUT pods/status")
# Not the operator's: the user's submission, and the node agent (kubelet) minting the coordinator's token.
NOT_OPERATOR = ("POST trainjobs", "POST serviceaccounts/token")
# One per pod: the gang's scheduling gate comes off once every pod of the attempt exists. Kubernetes
# has no batch write for it, so it is counted apart from the per-job budget (which it would scale).
GATE_REMOVALS = ("PATCH pods",)


def rss_mib(pid: int) -> float:
    import os

    pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1024 / 1024


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--reports", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args(argv)
    names = [f"scale-{i}" for i in range(args.jobs)]
    namespaces = {f"bench-scale-{i}" for i in range(args.jobs)}
    with workdir("operator") as tmp, BenchStack(tmp / "stack", root=REPO_ROOT, namespaces=()) as stack:
        for namespace in sorted(namespaces):
            stack.prepare_namespace(namespace)
        assert stack.operator is not None
        operator_pid = stack.operator.pid
        peak_rss = [rss_mib(operator_pid)]
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                try:
                    peak_rss.append(rss_mib(operator_pid))
                except OSError:
                    return
                time.sleep(0.5)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        offset = stack.log_offset()
        log(f"operator_scale: submitting {args.jobs} jobs x {args.workers} workers")
        submitted = time.monotonic()
        for i, name in enumerate(names):
            manifest = trainjob(
                name,
                ["python", "-m", "bench.workers.trainer"],
                workers=args.workers,
                extra_spec={"config": {"reports": args.reports, "interval": 0.05}},
            )
            stack.submit(f"bench-scale-{i}", manifest)
        submit_s = time.monotonic() - submitted
        all_running_s: float | None = None
        phases: dict[str, str] = {}
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            pods = [p for ns in sorted(namespaces) for p in stack.pods(ns)]
            running = [p for p in pods if (p.get("status") or {}).get("phase") in ("Running", "Succeeded")]
            if all_running_s is None and len(running) >= args.jobs * args.workers:
                all_running_s = time.monotonic() - submitted
            for i, name in enumerate(names):
                phases[name] = str((stack.job(f"bench-scale-{i}", name).get("status") or {}).get("phase"))
            if all(phase in ("Succeeded", "Failed") for phase in phases.values()):
                break
            time.sleep(0.25)
        all_done_s = time.monotonic() - submitted
        stop.set()
        sampler.join()
        time.sleep(2)  # the last status patches and pod updates reach the log
        requests = count_requests(stack.apiserver_log, offset)
        operator_rss = rss_mib(operator_pid)
    per_job = [breakdown(requests, {f"bench-scale-{i}"}) for i in range(args.jobs)]
    writes_besides_status = [
        sum(
            n
            for verb, n in job["writes"].items()
            if verb not in STATUS_PATCHES + NOT_OPERATOR + GATE_REMOVALS
        )
        for job in per_job
    ]
    gate_removals = [sum(n for verb, n in job["writes"].items() if verb in GATE_REMOVALS) for job in per_job]
    status_patches = [
        sum(n for verb, n in job["writes"].items() if verb in STATUS_PATCHES) for job in per_job
    ]
    cluster_wide = [r for r in requests if r[1] not in namespaces]
    succeeded = sum(1 for p in phases.values() if p == "Succeeded")
    median_writes = statistics.median(writes_besides_status) if writes_besides_status else None
    return emit(
        "operator_scale",
        {"jobs": args.jobs, "workers": args.workers, "reports_per_worker": args.reports},
        {
            "submit_s": round(submit_s, 2),
            "all_pods_running_s": None if all_running_s is None else round(all_running_s, 2),
            "all_jobs_done_s": round(all_done_s, 2),
            "succeeded": succeeded,
            "phases": sorted(set(phases.values())),
            "writes_per_job_besides_status_median": median_writes,
            "status_patches_per_job_median": statistics.median(status_patches) if status_patches else None,
            "gate_removals_per_job_median": statistics.median(gate_removals) if gate_removals else None,
            "requests_per_job_median": statistics.median(j["total"] for j in per_job) if per_job else None,
            "example_job_breakdown": per_job[0] if per_job else None,
            # Where the writes of all jobs went, per job on average: what the median is made of.
            "writes_per_job_by_verb_mean": {
                verb: round(sum(job["writes"].get(verb, 0) for job in per_job) / len(per_job), 2)
                for verb in sorted({verb for job in per_job for verb in job["writes"]})
            }
            if per_job
            else None,
            "cluster_scoped_requests": len(cluster_wide),
            "operator_rss_mib": round(operator_rss, 1),
            "operator_peak_rss_mib": round(max(peak_rss), 1),
        },
        {"limit": "<= 12 writes per job lifecycle besides status patches and gate removals (one per pod)"},
        None,
        {
            "target": "<= 12 writes per job besides status patches and gate removals (one per pod)",
            "met": None if median_writes is None else median_writes <= 12 and succeeded == args.jobs,
        },
    )


if __name__ == "__main__":
    main()
