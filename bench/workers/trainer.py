"""The trainer of the local-cluster scenarios: ``python -m bench.workers.trainer``, configured by the
TrainJob's ``spec.config``: reports (how many), interval (seconds between them), checkpoint_every
(0: never; tiny checkpoints), honor_notice (ask ``should_stop()`` before each report and, when
told, report a checkpoint and leave the loop, as the README's loop does; default: never ask),
trace_dir (also append each line to ``<trace_dir>/<job>-rank-<rank>.jsonl``: the preemption
scenario reads what an attempt did after its pods are gone). Prints one JSON line per report:
iteration, wall time, rank, attempt.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import worker_sdk as train


def main() -> None:
    context = train.get_context()
    config = context.get_config()
    reports = int(config.get("reports", 10))
    interval = float(config.get("interval", 0.0))
    every = int(config.get("checkpoint_every", 0))
    honor_notice = bool(config.get("honor_notice", False))
    trace_dir = config.get("trace_dir")
    resumed = train.get_checkpoint()
    start = 0 if resumed is None else int(resumed.get_metadata()["iteration"])
    rank, attempt = context.get_world_rank(), context.get_attempt()
    trace = (
        open(Path(trace_dir) / f"{context.get_job_name()}-rank-{rank}.jsonl", "a")  # noqa: SIM115
        if trace_dir
        else None
    )
    for iteration in range(start + 1, reports + 1):
        if interval:
            time.sleep(interval)
        now = time.time()
        line = {"iteration": iteration, "t": now, "rank": rank, "attempt": attempt, "resumed_from": start}
        if trace is not None:
            # Before the report: the iteration's compute is done, whatever happens to the pod next.
            trace.write(json.dumps(line) + "\n")
            trace.flush()
        stopping = honor_notice and train.should_stop()
        if (every and iteration % every == 0) or stopping:
            with tempfile.TemporaryDirectory() as tmp:
                (Path(tmp) / f"rank-{rank}.txt").write_text(str(iteration))
                train.report({"i": iteration}, checkpoint=train.Checkpoint.from_directory(tmp))
        else:
            train.report({"i": iteration})
        print(json.dumps(line), flush=True)
        if stopping:
            break


if __name__ == "__main__":
    main()
