"""The trainer of the local-cluster scenarios: ``python -m bench.workers.trainer``, configured by the
TrainJob's ``spec.config``: reports (how many), interval (seconds between them), checkpoint_every
(0: never; tiny checkpoints). Prints one JSON line per report: iteration, wall time, rank, attempt.
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
    resumed = train.get_checkpoint()
    start = 0 if resumed is None else int(resumed.get_metadata()["iteration"])
    rank, attempt = context.get_world_rank(), context.get_attempt()
    for iteration in range(start + 1, reports + 1):
        if interval:
            time.sleep(interval)
        now = time.time()
        if every and iteration % every == 0:
            with tempfile.TemporaryDirectory() as tmp:
                (Path(tmp) / f"rank-{rank}.txt").write_text(str(iteration))
                train.report({"i": iteration}, checkpoint=train.Checkpoint.from_directory(tmp))
        else:
            train.report({"i": iteration})
        line = {"iteration": iteration, "t": now, "rank": rank, "attempt": attempt, "resumed_from": start}
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
