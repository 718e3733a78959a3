"""Smoke tests of the benchmarks: each scenario runs with tiny parameters and without Ray, and its
JSON line has the fields and positive numbers. No timing is asserted: the numbers are the
benchmarks' business, these tests only keep the scenarios runnable.

The local-cluster scenarios (status latency, operator scale, recovery, preemption) start the whole stack and
are marked slow.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
FIELDS = ("scenario", "parameters", "ours", "peer", "ratio", "goal", "machine")


def run_scenario(*args: str, timeout: float = 240) -> list[dict[str, Any]]:
    env = {**os.environ, "BENCH_NO_RAY": "1", "PYTHONPATH": str(REPO_ROOT)}
    process = subprocess.Popen(
        [sys.executable, *args],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            # SIGTERM first: the scenario then stops the cluster and processes it started.
            process.terminate()
            try:
                process.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()
    assert process.returncode == 0, stderr[-4000:]
    lines = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    assert lines, stdout
    for line in lines:
        for name in FIELDS:
            assert name in line, f"{name} missing from {line}"
        assert line["machine"]["cores"] >= 1
    return lines


def numbers(value: object) -> list[float]:
    if isinstance(value, bool) or value is None:
        return []
    if isinstance(value, int | float):
        return [float(value)]
    if isinstance(value, dict):
        return [n for v in value.values() for n in numbers(v)]
    if isinstance(value, list):
        return [n for v in value for n in numbers(v)]
    return []


def test_report_overhead() -> None:
    (line,) = run_scenario(
        "-m", "bench.report_overhead", "--steps", "20", "--floor-steps", "10", "--compute-ms", "1", "--no-ray"
    )  # fmt: skip
    assert line["ours"]["n"] == 40 and line["ours"]["p50_ms"] > 0 and line["ours"]["p99_ms"] > 0
    floor = line["ours"]["floor"]
    assert floor["n"] == 20 and floor["p50_ms"] > 0
    assert line["ratio"]["ours_p50_over_floor"] == round(line["ours"]["p50_ms"] / floor["p50_ms"], 2)


def test_checkpoint_report() -> None:
    (line,) = run_scenario(
        "-m", "bench.checkpoint_report", "--sizes", "2", "--checkpoints", "1", "--every", "2", "--no-ray"
    )
    for mode in ("sync", "async", "async_given_up"):
        assert line["ours"][mode]["blocked"]["p50_ms"] > 0
        assert line["ours"][mode]["to_commit"]["n"] >= 1


def test_upload_throughput() -> None:
    lines = run_scenario(
        "-m", "bench.upload_throughput", "--large-mib", "2", "--small-count", "4", "--small-kib", "16",
        "--repeats", "1",
    )  # fmt: skip
    assert {line["parameters"]["shape"] for line in lines} == {"one_large_file", "many_small_files"}
    for line in lines:
        assert line["ours"]["sdk"]["mib_per_s"] > 0 and line["ratio"]["sdk_over_best_boto3"] > 0


def test_sharded_checkpoint() -> None:
    (line,) = run_scenario(
        "-m", "bench.sharded_checkpoint", "--ranks", "2", "--shard-mib", "2", "--rounds", "1",
        "--boto3", "4x8",
    )  # fmt: skip
    sync = line["ours"]["sync"]
    assert sync["mib_per_s"] > 0 and sync["to_commit_s"] >= sync["upload_s"] > 0
    assert line["ours"]["peak_rss_per_rank_mib"] > 0 and line["peer"]["best_boto3_mib_per_s"] > 0
    assert sync["cpu_s_per_gib"] > 0 and line["peer"]["best_boto3_cpu_s_per_gib"] > 0
    assert set(line["ratio"]) >= {
        "sdk_over_best_boto3",
        "commit_over_upload",
        "async_given_up_max_over_sync_p50",
    }


def test_dcp_peer() -> None:
    (line,) = run_scenario(
        "-m", "bench.dcp_peer", "--ranks", "2", "--shard-mib", "2", "--rounds", "1", "--checkpoints", "2",
        "--steps-between", "4", "--report-after", "2", "--compute-ms", "5", timeout=400,
    )  # fmt: skip
    for mode in ("ours_async", "ours_staged", "dcp_then_report"):
        assert line["ours"][mode]["blocked"]["n"] == 4 and line["ours"][mode]["durable"]["n"] == 2
    assert line["peer"]["dcp_async"]["durable"]["p50_ms"] > 0
    # The DCP checkpoint reported through report() is a whole one: dcp.load read every rank's tensor.
    assert line["ours"]["dcp_then_report"]["loaded_back_tensors"] == 2


def test_coordinator_scale() -> None:
    (line,) = run_scenario(
        "-m", "bench.coordinator_scale", "--ranks", "8", "--rate", "5", "--seconds", "2", "--warmup", "0.5",
        "--load-processes", "1",
    )  # fmt: skip
    assert line["ours"]["accepted_per_s"] > 0 and line["ours"]["coordinator_rss_mib"] > 0
    assert line["ours"]["errors"] == 0
    # The generator's event loop was probed every 10 ms for the 2 s, and a sleep never wakes early.
    lag = line["ours"]["generator_loop_lag"]
    assert lag["n"] >= 20 and lag["p50_ms"] >= 0


def test_gpu_checkpoint_on_cpu(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "worker_sdk" / "src")}
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "bench" / "gpu_checkpoint.py"), "--device", "cpu", "--size-mib", "4",
         "--checkpoints", "2", "--seconds-between", "0.1"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    line = json.loads(result.stdout.strip().splitlines()[-1])
    assert line["scenario"] == "gpu_checkpoint" and line["card"]
    assert all(n > 0 for n in numbers(line["ours"]))


@pytest.mark.slow
def test_status_latency() -> None:
    (line,) = run_scenario("-m", "bench.status_latency", "--reports", "4", "--interval", "0.3")
    assert line["ours"]["report_to_status"]["n"] >= 1 and line["ours"]["status_patches"] > 0


@pytest.mark.slow
def test_operator_scale() -> None:
    (line,) = run_scenario("-m", "bench.operator_scale", "--jobs", "1", "--workers", "2", "--reports", "3")
    assert line["ours"]["succeeded"] == 1 and line["ours"]["writes_per_job_besides_status_median"] > 0


@pytest.mark.slow
def test_recovery() -> None:
    (line,) = run_scenario("-m", "bench.recovery", timeout=400)
    assert all(line["ours"][k] > 0 for k in ("failure_detected_s", "first_report_after_resume_s"))


@pytest.mark.slow
def test_preemption() -> None:
    (line,) = run_scenario(
        "-m", "bench.preemption", "--preemptions", "1", "--checkpoint-every", "4", "--step", "0.1",
        "--grace", "3", "--modes", "ignored", timeout=400,
    )  # fmt: skip
    # (The "without" mode differs from "ignored" only by its grace of 0; left out to keep this short.)
    assert set(line["peer"]) == {"ignoring_notice"}
    for summary in (line["ours"]["notice"], *line["peer"].values()):
        (preemption,) = summary["per_preemption"]
        # Each mode was preempted once, as a disruption (not a restart), and resumed from a commit.
        assert (summary["status_disruptions"], summary["status_restarts"]) == (1, 0)
        assert preemption["last_iteration"] >= preemption["evicted_at_iteration"] > 0
        assert preemption["lost_iterations"] == preemption["last_iteration"] - preemption["resumed_from"] >= 0
    assert line["goal"]["met"] is not None
