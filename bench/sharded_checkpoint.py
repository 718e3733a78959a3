"""Issue 16, goal 3: big sharded checkpoints. N ranks (4) each report a shard (1 GiB) to SeaweedFS
through a real coordinator, against the best plain boto3 with the same parallelism (N processes,
each ``upload_file`` of its shard with a tuned TransferConfig), in the same run, interleaved.

What is measured, per candidate (each on a fresh SeaweedFS, so no candidate inherits another's
volumes; all ranks start at one wall-clock instant):

- aggregate throughput: N x shard bytes / (last rank done - first rank began);
- ours, sync: the upload (until the last rank's ``report`` returned: its files are stored) and the
  commit (until the coordinator's ``/v1/state`` shows the checkpoint committed), and the commit
  after the last rank's report alone;
- ours, async: how long ``report`` blocks with the directory handed over
  (``delete_local_checkpoint_after_upload=True``, a rename) and copied (the default), against sync;
- the peak RSS (VmHWM) of every rank process once its upload is over, ours and boto3's;
- CPU seconds per GiB stored, of the rank processes and of SeaweedFS: on a machine shared with
  others' work the wall-clock figures swing 2x between repetitions of one candidate, the CPU
  per GiB does not, and with SeaweedFS on the same 2 cores what the client spends is what
  SeaweedFS cannot.

    python -m bench.sharded_checkpoint [--ranks 4] [--shard-mib 1024] [--rounds 2] [--boto3 4x64,10x16]

At 4 x 1 GiB with 2 rounds this takes about 10 minutes on 2 cores; $BENCH_TMP places the shards
(N x shard on disk) and SeaweedFS's data (one candidate's N x shard at a time).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import (
    REPO_ROOT,
    Job,
    MiB,
    base_env,
    collect_json,
    emit,
    log,
    scenario_parser,
    seaweedfs,
    stop_process,
    workdir,
)

# Ranks start this long after they are launched: long enough for every one to import its
# libraries on a loaded machine (a late rank is seen: each reports when it really began).
START_DELAY_S = 8.0


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a running process (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load() -> float:
    return round(os.getloadavg()[0], 2)


def write_shards(directory: Path, ranks: int, size: int) -> list[str]:
    directory.mkdir(parents=True)
    block = os.urandom(min(size, 16 * MiB))  # random: nothing on the way can compress it
    paths = []
    for rank in range(ranks):
        path = directory / f"shard-{rank}.bin"
        with open(path, "wb") as f:
            left = size
            while left > 0:
                f.write(block[: min(left, len(block))])
                left -= min(left, len(block))
        paths.append(str(path))
    return paths


def watch_commit(coordinator: Any, stop: threading.Event, seen: list[float]) -> None:
    """Record when the coordinator first shows a committed checkpoint."""
    while not stop.is_set() and not seen:
        try:
            if coordinator.state().get("latestCheckpoint"):
                seen.append(time.time())
                return
        except OSError:
            pass
        time.sleep(0.01)


def run_candidate(tmp: Path, name: str, params: dict[str, Any], ranks: int, timeout: float) -> dict[str, Any]:
    """One candidate on a fresh SeaweedFS; the ranks' lines, and the commit time for ours."""
    root = tmp / f"run-{name}"
    root.mkdir()
    try:
        with seaweedfs(root) as s3:
            params = {**params, "workroot": str(root / "work"), "start_at": time.time() + START_DELAY_S}
            args = ["-m", "bench.workers.shard_rank", json.dumps(params)]
            if params["mode"] == "boto3":
                env = {**base_env(), **s3.credentials_env}
                processes = [
                    subprocess.Popen(
                        [sys.executable, *args],
                        cwd=REPO_ROOT,
                        env={**env, "RANK": str(rank)},
                        stdout=subprocess.PIPE,
                    )
                    for rank in range(ranks)
                ]
                try:
                    weed_before = process_cpu_s(s3.process.pid)
                    lines = collect_json(processes, timeout)
                    return {"ranks": lines, "seaweedfs_cpu_s": process_cpu_s(s3.process.pid) - weed_before}
                finally:
                    for process in processes:
                        stop_process(process)
            job = Job(root, f"s3://{s3.bucket}/ours", ranks, extra_env=dict(s3.credentials_env))
            try:
                coordinator = job.start_coordinator(0)
                seen: list[float] = []
                stop = threading.Event()
                watcher = threading.Thread(target=watch_commit, args=(coordinator, stop, seen), daemon=True)
                watcher.start()
                weed_before = process_cpu_s(s3.process.pid)
                lines = collect_json(job.start_ranks(coordinator, args), timeout)
                watcher.join(120)
                stop.set()
                if not seen:
                    raise RuntimeError(f"{name}: no checkpoint committed; see {job.directory}")
                weed_cpu = process_cpu_s(s3.process.pid) - weed_before
                return {"ranks": lines, "committed_at": seen[0], "seaweedfs_cpu_s": weed_cpu}
            finally:
                job.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def figures(result: dict[str, Any], total_bytes: int) -> dict[str, Any]:
    ranks = result["ranks"]
    began = min(r["began"] for r in ranks)
    done = max(r["returned"] for r in ranks)
    out: dict[str, Any] = {
        "seconds": round(done - began, 3),
        "mib_per_s": round(total_bytes / MiB / (done - began), 1),
        "blocked_ms": [round((r["returned"] - r["began"]) * 1000, 2) for r in ranks],
        "start_spread_ms": round((max(r["began"] for r in ranks) - began) * 1000, 1),
        "peak_rss_mib": [r["peak_rss_mib"] for r in ranks],
        "cpu_s_per_gib": round(sum(r["cpu_s"] for r in ranks) / (total_bytes / 1024**3), 2),
        "seaweedfs_cpu_s_per_gib": round(result["seaweedfs_cpu_s"] / (total_bytes / 1024**3), 2),
        "rss_before_mib": [r["rss_before_mib"] for r in ranks],
    }
    if "committed_at" in result:
        out["to_commit_s"] = round(result["committed_at"] - began, 3)
        out["commit_after_last_report_s"] = round(result["committed_at"] - done, 3)
    return out


def median_of(runs: list[dict[str, Any]], key: str) -> float:
    return round(float(statistics.median(run[key] for run in runs)), 3)


def emit_subset(
    runs: dict[str, list[dict[str, Any]]], boto: dict[str, list[dict[str, Any]]], args: argparse.Namespace
) -> dict[str, Any]:
    """Some candidates only (``--only``): each SDK candidate's throughput against the best plain
    boto3 on medians and round by round (each round's best boto3), and CPU per GiB."""
    ours = {name: r for name, r in runs.items() if not name.startswith("boto3") and r}
    best_name = max(boto, key=lambda name: median_of(boto[name], "mib_per_s"))
    rounds = min(len(r) for r in runs.values())
    best_per_round = [max(r[i]["mib_per_s"] for r in boto.values()) for i in range(rounds)]
    ratios = {
        name: {
            "over_best_boto3_medians": round(
                median_of(r, "mib_per_s") / median_of(boto[best_name], "mib_per_s"), 3
            ),
            "over_best_boto3_per_round": [
                round(r[i]["mib_per_s"] / best_per_round[i], 3) for i in range(rounds)
            ],
            "cpu_s_per_gib": median_of(r, "cpu_s_per_gib"),
        }
        for name, r in ours.items()
    }
    return emit(
        "sharded_checkpoint",
        {
            "ranks": args.ranks,
            "shard_mib": args.shard_mib,
            "rounds": args.rounds,
            "only": args.only,
            "storage": "seaweedfs (s3), fresh per candidate",
        },
        {"runs": ours},
        {"best_boto3": best_name, "runs": boto},
        ratios,
        {"target": "aggregate >= 90% of the best plain boto3 (same parallelism)", "met": None},
    )


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = scenario_parser(__doc__)
    parser.add_argument("--ranks", type=int, default=4)
    parser.add_argument("--shard-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--boto3",
        default="4x64,10x16",
        help="plain boto3 configs: max_concurrency x chunk MiB, per process",
    )
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated candidates to run (default: all); sdk_sync_signed, the SDK with its "
        "data bodies signed too (before the last change), runs only when named",
    )
    parser.add_argument("--timeout", type=float, default=900, help="seconds one candidate may take")
    args = parser.parse_args(argv)
    size = args.shard_mib * MiB
    total = size * args.ranks
    candidates: dict[str, dict[str, Any]] = {
        "sdk_sync": {"mode": "sdk_sync"},
        "sdk_async_given_up": {"mode": "sdk_async_given_up"},
        "sdk_async_copy": {"mode": "sdk_async_copy"},
    }
    for config in args.boto3.split(","):
        concurrency, chunk = (int(x) for x in config.split("x"))
        candidates[f"boto3_c{concurrency}_chunk{chunk}mib"] = {
            "mode": "boto3",
            "concurrency": concurrency,
            "chunk_mib": chunk,
        }
    candidates["sdk_sync_signed"] = {"mode": "sdk_sync_signed"}
    only = [name for name in args.only.split(",") if name]
    unknown = sorted(set(only) - set(candidates))
    if unknown:
        parser.error(f"--only: no candidate(s) {', '.join(unknown)}; there are {', '.join(candidates)}")
    candidates = {
        name: params
        for name, params in candidates.items()
        if name in only or (not only and name != "sdk_sync_signed")
    }
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in candidates}
    failures: dict[str, list[dict[str, Any]]] = {}
    with workdir("sharded") as tmp:
        shards = write_shards(tmp / "shards", args.ranks, size)
        for round_number in range(args.rounds):
            for name, params in candidates.items():  # interleaved: the load drifts alike for all
                at_load = load()
                log(f"sharded_checkpoint: round {round_number + 1}/{args.rounds} {name} (load {at_load})")
                try:
                    result = run_candidate(tmp, name, {**params, "shards": shards}, args.ranks, args.timeout)
                except RuntimeError as exc:
                    if params["mode"] != "boto3":
                        raise
                    # A plain boto3 run that fails (SeaweedFS closing a connection under load:
                    # boto3's upload_file gives up) is recorded, and must not lose the others.
                    log(f"sharded_checkpoint: {name} failed: {exc}")
                    failures.setdefault(name, []).append({"error": str(exc)[-300:], "load_average": at_load})
                    continue
                runs[name].append({**figures(result, total), "load_average": at_load})
                log(f"sharded_checkpoint: {name}: {json.dumps(runs[name][-1])}")
    boto = {name: r for name, r in runs.items() if name.startswith("boto3") and r}
    if only:
        return [emit_subset(runs, boto, args)]
    best_name = max(boto, key=lambda name: median_of(boto[name], "mib_per_s"))
    best = median_of(boto[best_name], "mib_per_s")
    sync = runs["sdk_sync"]
    ours_rate = median_of(sync, "mib_per_s")
    upload_s = median_of(sync, "seconds")
    to_commit_s = median_of(sync, "to_commit_s")
    sync_blocked = statistics.median(b for run in sync for b in run["blocked_ms"])
    async_blocked = {
        mode: max(b for run in runs[mode] for b in run["blocked_ms"])
        for mode in ("sdk_async_given_up", "sdk_async_copy")
    }
    peak_ours = max(
        p for mode in ("sdk_sync", "sdk_async_given_up") for run in runs[mode] for p in run["peak_rss_mib"]
    )
    peak_copy = max(p for run in runs["sdk_async_copy"] for p in run["peak_rss_mib"])
    peak_boto = max(p for run in boto[best_name] for p in run["peak_rss_mib"])
    ratios = {
        "sdk_over_best_boto3": round(ours_rate / best, 3),
        "commit_over_upload": round(to_commit_s / upload_s, 3),
        "async_given_up_max_over_sync_p50": round(async_blocked["sdk_async_given_up"] / sync_blocked, 5),
        "async_copy_max_over_sync_p50": round(async_blocked["sdk_async_copy"] / sync_blocked, 5),
        "peak_rss_ours_over_best_boto3": round(peak_ours / peak_boto, 2),
        "cpu_per_gib_ours_over_best_boto3": round(
            median_of(sync, "cpu_s_per_gib") / median_of(boto[best_name], "cpu_s_per_gib"), 3
        ),
    }
    met = (
        ratios["sdk_over_best_boto3"] >= 0.9
        and ratios["commit_over_upload"] <= 1.2
        and ratios["async_given_up_max_over_sync_p50"] <= 0.01
    )
    return [
        emit(
            "sharded_checkpoint",
            {
                "ranks": args.ranks,
                "shard_mib": args.shard_mib,
                "total_mib": args.ranks * args.shard_mib,
                "rounds": args.rounds,
                "storage": "seaweedfs (s3), fresh per candidate",
            },
            {
                "sync": {
                    "mib_per_s": ours_rate,
                    "upload_s": upload_s,
                    "to_commit_s": to_commit_s,
                    "commit_after_last_report_s": median_of(sync, "commit_after_last_report_s"),
                    "blocked_p50_ms": round(sync_blocked, 1),
                    "cpu_s_per_gib": median_of(sync, "cpu_s_per_gib"),
                    "seaweedfs_cpu_s_per_gib": median_of(sync, "seaweedfs_cpu_s_per_gib"),
                },
                "async_given_up_blocked_max_ms": async_blocked["sdk_async_given_up"],
                "async_given_up_to_commit_s": median_of(runs["sdk_async_given_up"], "to_commit_s"),
                "async_copy_blocked_max_ms": async_blocked["sdk_async_copy"],
                "peak_rss_per_rank_mib": peak_ours,
                "peak_rss_per_rank_async_copy_mib": peak_copy,
                "runs": {name: r for name, r in runs.items() if not name.startswith("boto3")},
            },
            {
                "best_boto3": best_name,
                "best_boto3_mib_per_s": best,
                "best_boto3_peak_rss_per_process_mib": peak_boto,
                "best_boto3_cpu_s_per_gib": median_of(boto[best_name], "cpu_s_per_gib"),
                "best_boto3_seaweedfs_cpu_s_per_gib": median_of(boto[best_name], "seaweedfs_cpu_s_per_gib"),
                "runs": boto,
                "failed_runs": failures,
            },
            ratios,
            {
                "target": "aggregate >= 90% of the best plain boto3 (same parallelism); "
                "commit <= 1.2x upload; async blocking <= 1% of sync; "
                "memory per rank bounded (peak RSS shown)",
                "met": met,
            },
        )
    ]


if __name__ == "__main__":
    main()
