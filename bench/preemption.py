"""Scenario 8 (issue 14, prove-it 5): work lost per preemption, with the disruption notice and
without it, in the same run on the same local cluster and operator.

TrainJobs run side by side, one per mode (same trainer, same step time, a checkpoint every K iterations):

- ``notice``: the program asks ``should_stop()`` before each report and, when told, reports a
  checkpoint and leaves its loop (the README's loop); ``preemption.gracePeriodSeconds`` 30.
- ``without``: the program never asks, and the job has ``preemption.gracePeriodSeconds: 0`` — a
  disruption ends the attempt at once, as before notices existed; the next attempt resumes from
  the last periodic checkpoint.
- ``ignored``: the program never asks, under the same grace as ``notice``: what a program that
  was not changed for notices costs with the default settings (the coordinator finds that no rank
  acts on the notice, ``status.noticeIgnored``, and the operator stops the gang without the grace).

They are preempted in turn, each time by an eviction of rank 1's pod through the Eviction API
(what ``kubectl drain`` and Kueue/cluster-autoscaler-style tooling send) at a seeded random
iteration between two periodic checkpoints. Work lost per preemption = the last iteration any
rank of the attempt completed minus the iteration the next attempt resumed from; seconds of
compute = those iterations times the attempt's measured step time (per gang; times the workers
for worker-seconds). The trainer appends each iteration to a trace file (``trace_dir``), so an
attempt's last iteration is known after its pods are gone.

    python -m bench.preemption [--preemptions 5] [--checkpoint-every 10] [--step 0.2] [--modes ...]
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import statistics
import time
from pathlib import Path
from typing import Any

from bench.common import REPO_ROOT, emit, log, scenario_parser, workdir
from bench.stack import BenchStack, trainjob
from tests.support.processes import wait_until

MODES = ("notice", "without", "ignored")
PEER_KEYS = {"without": "without_notice", "ignored": "ignoring_notice"}


def read_trace(trace_dir: Path, job: str, workers: int) -> list[dict[str, Any]]:
    """Every line every rank of ``job`` wrote, in file order per rank."""
    lines: list[dict[str, Any]] = []
    for rank in range(workers):
        path = trace_dir / f"{job}-rank-{rank}.jsonl"
        if not path.exists():
            continue
        for text in path.read_text().splitlines():
            try:
                lines.append(json.loads(text))
            except ValueError:
                continue  # a line being written
    return lines


def of_attempt(lines: list[dict[str, Any]], attempt: int, rank: int | None = None) -> list[dict[str, Any]]:
    return [x for x in lines if x["attempt"] == attempt and (rank is None or x["rank"] == rank)]


def step_seconds(lines: list[dict[str, Any]]) -> float:
    """The median time between consecutive iterations of one rank in one attempt."""
    times = sorted(x["t"] for x in lines)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    return statistics.median(gaps) if gaps else 0.0


class PreemptedJob:
    """One of the two jobs, its attempts and what each preemption cost."""

    def __init__(self, stack: BenchStack, namespace: str, mode: str, args: argparse.Namespace, trace: Path):
        self.stack, self.namespace, self.mode, self.args, self.trace = stack, namespace, mode, args, trace
        self.name = f"lost-{mode}"
        self.attempt = 0
        self.results: list[dict[str, Any]] = []
        config = {
            "reports": 1_000_000,
            "interval": args.step,
            "checkpoint_every": args.checkpoint_every,
            "honor_notice": mode == "notice",
            "trace_dir": str(trace),
        }
        grace = 0 if mode == "without" else args.grace
        self.manifest = trainjob(
            self.name,
            ["python", "-m", "bench.workers.trainer"],
            workers=args.workers,
            extra_spec={"config": config, "preemption": {"gracePeriodSeconds": grace}},
        )

    def lines(self) -> list[dict[str, Any]]:
        return read_trace(self.trace, self.name, self.args.workers)

    def iteration(self, rank: int = 1) -> int:
        done = of_attempt(self.lines(), self.attempt, rank)
        return max((x["iteration"] for x in done), default=0)

    def preempt(self, rng: random.Random) -> dict[str, Any]:
        """Evict rank 1 at a random iteration between two periodic checkpoints; wait until the next
        attempt reports; what it cost."""
        every = self.args.checkpoint_every
        now = wait_until(f"{self.name} attempt {self.attempt} to report", self.iteration, 180, interval=0.05)
        offset = rng.randint(1, every - 1)
        target = (now // every + 1) * every + offset
        wait_until(
            f"{self.name} to reach iteration {target}",
            lambda: self.iteration() >= target or None,
            180,
            interval=0.02,
        )
        pod = f"{self.name}-{self.attempt}-1"
        evicted_at = time.time()
        at_iteration = self.iteration()
        self.stack.api(
            "POST",
            f"/api/v1/namespaces/{self.namespace}/pods/{pod}/eviction",
            {
                "apiVersion": "policy/v1",
                "kind": "Eviction",
                "metadata": {"name": pod, "namespace": self.namespace},
            },
        )
        log(f"preemption: evicted {pod} at iteration {at_iteration} (checkpoint every {every})")
        old, self.attempt = self.attempt, self.attempt + 1
        first = wait_until(
            f"{self.name} attempt {self.attempt}'s first iteration",
            lambda: of_attempt(self.lines(), self.attempt) or None,
            240,
            interval=0.05,
        )
        lines = self.lines()
        done = of_attempt(lines, old)
        last = max(x["iteration"] for x in done)
        resumed = int(first[0]["resumed_from"])
        lost = max(0, last - resumed)
        step = step_seconds(of_attempt(lines, old, 0))
        result = {
            "evicted_at_iteration": at_iteration,
            "last_iteration": last,
            "resumed_from": resumed,
            "lost_iterations": lost,
            "lost_compute_s": round(lost * step, 3),
            "step_s": round(step, 4),
            "eviction_to_next_iteration_s": round(min(x["t"] for x in first) - evicted_at, 2),
        }
        log(f"preemption: {self.mode}: {result}")
        self.results.append(result)
        return result

    def summary(self) -> dict[str, Any]:
        lost = [r["lost_iterations"] for r in self.results]
        seconds = [r["lost_compute_s"] for r in self.results]
        downtime = [r["eviction_to_next_iteration_s"] for r in self.results]
        return {
            "preemptions": len(self.results),
            "lost_iterations": lost,
            "lost_iterations_mean": round(statistics.fmean(lost), 2),
            "lost_iterations_max": max(lost),
            "lost_compute_s": seconds,
            "lost_compute_s_mean": round(statistics.fmean(seconds), 3),
            "lost_worker_s_mean": round(statistics.fmean(seconds) * self.args.workers, 3),
            "eviction_to_next_iteration_s": downtime,
            "per_preemption": self.results,
        }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = scenario_parser(__doc__)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--preemptions", type=int, default=5, help="per mode")
    parser.add_argument("--checkpoint-every", type=int, default=10, help="K: a periodic checkpoint every K")
    parser.add_argument("--step", type=float, default=0.2, help="seconds of 'compute' per iteration")
    parser.add_argument(
        "--grace", type=int, default=30, help="preemption.gracePeriodSeconds of the notice and ignored modes"
    )
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument(
        "--modes", default=",".join(MODES), help="of " + ",".join(MODES) + "; notice is always run"
    )
    args = parser.parse_args(argv)
    modes = ["notice", *(m for m in MODES[1:] if m in args.modes.split(","))]
    if not set(args.modes.split(",")) <= set(MODES):
        parser.error(f"--modes: each of {','.join(MODES)}")
    if args.checkpoint_every < 2:
        parser.error("--checkpoint-every must be at least 2 (a preemption lands between checkpoints)")
    namespace = "bench-preemption"
    rng = random.Random(args.seed)
    with (
        workdir("preemption") as tmp,
        BenchStack(tmp / "stack", root=REPO_ROOT, namespaces=(namespace,)) as stack,
    ):
        trace = tmp / "trace"
        trace.mkdir()
        jobs = {mode: PreemptedJob(stack, namespace, mode, args, trace) for mode in modes}
        for job in jobs.values():
            stack.submit(namespace, job.manifest)
        # In turn, so every mode sees the same load over the run.
        for _ in range(args.preemptions):
            for mode in modes:
                jobs[mode].preempt(rng)
        statuses = {mode: stack.job(namespace, job.name).get("status") or {} for mode, job in jobs.items()}
    summaries = {mode: job.summary() for mode, job in jobs.items()}
    for mode, status in statuses.items():
        summaries[mode]["status_disruptions"] = status.get("disruptions")
        summaries[mode]["status_restarts"] = status.get("restarts")
    notice = summaries["notice"]
    ratio: dict[str, Any] = {}
    for mode in modes[1:]:
        other = summaries[mode]["lost_iterations_mean"]
        ratio[f"lost_iterations_{mode}_over_notice"] = (
            round(other / notice["lost_iterations_mean"], 2) if notice["lost_iterations_mean"] > 0 else None
        )
        ratio[f"lost_iterations_saved_per_preemption_vs_{mode}"] = round(
            other - notice["lost_iterations_mean"], 2
        )
    return emit(
        "preemption",
        {
            "workers": args.workers,
            "preemptions_per_mode": args.preemptions,
            "checkpoint_every": args.checkpoint_every,
            "step_s": args.step,
            "grace_period_s": args.grace,
            "modes": modes,
            "disruption": "Eviction API on rank 1 at a seeded random iteration between checkpoints",
            "seed": args.seed,
        },
        {"notice": notice},
        {PEER_KEYS[mode]: summaries[mode] for mode in modes[1:]},
        ratio,
        {
            "target": "with the notice, at most 1 iteration lost per preemption",
            "met": notice["lost_iterations_max"] <= 1,
        },
    )


if __name__ == "__main__":
    main()
