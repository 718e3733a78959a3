"""A rank's training loop that times ``worker_sdk.report``: ``python -m bench.workers.report_loop PARAMS``.

PARAMS (JSON): steps, compute_ms (work between reports), checkpoint_every (0: never),
checkpoint_mib (the whole checkpoint; each rank writes its shard), upload ("sync"/"async"),
floor_steps (0: none).
Prints one JSON line: the blocking time of every
report without a checkpoint, of every report with one, and the wall time of each checkpoint
report (to match against commit times); with floor_steps, also the machine's floor: after the
report loop, the same loop times ``floor_call`` in report's place.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import worker_sdk as train


def busy(ms: float) -> None:
    """Stand-in for a training step: spin on the CPU (sleeping would hide contention)."""
    end = time.perf_counter() + ms / 1000
    x = 0
    while time.perf_counter() < end:
        x += 1


_floor_lock = threading.Lock()
_floor_sink: list[tuple[int, dict[str, float | int], float]] = []


def floor_call(metrics: dict[str, float | int]) -> None:
    """The least any report() must do in the loop's thread: copy the metrics and append them,
    with a timestamp, under a lock. Timed after the same compute as report(), it is what the
    machine charges for touching that little code and data after a training step (cold caches,
    other processes on the core): the floor under our p50 in the same run."""
    copied = metrics.copy()
    with _floor_lock:
        _floor_sink.append((len(_floor_sink), copied, time.time()))


def main() -> None:
    params = json.loads(sys.argv[1])
    steps = int(params.get("steps", 200))
    compute_ms = float(params.get("compute_ms", 5))
    every = int(params.get("checkpoint_every", 0))
    # The checkpoint is checkpoint_mib in all, sharded: each rank writes its part.
    size = (
        int(params.get("checkpoint_mib", 16)) * 1024 * 1024 // max(1, int(os.environ.get("WORLD_SIZE", "1")))
    )
    upload = params.get("upload", "sync")
    # As Ray Train's async mode does by default: the directory is handed over, not copied.
    give_up = bool(params.get("give_up", False))
    root = Path(tempfile.mkdtemp(prefix="bench-ckpt-"))
    # Removed at exit after the SDK's own exit hook (registered later, run first) has uploaded
    # what is pending: a directory given up is moved aside within it and uploaded from there.
    atexit.register(shutil.rmtree, root, True)
    context = train.get_context()
    rank = context.get_world_rank()
    payload = os.urandom(min(size, 16 * 1024 * 1024)) if every else b""
    plain: list[float] = []
    with_checkpoint: list[float] = []
    checkpoint_times: list[tuple[int, float]] = []
    started = time.perf_counter()
    for step in range(1, steps + 1):
        busy(compute_ms)
        metrics = {"loss": 1.0 / step, "step": step, "rank": rank}
        if every and step % every == 0:
            directory = root / f"step-{step}"
            directory.mkdir()
            with open(directory / f"shard-{rank}.bin", "wb") as f:  # written before the timer
                left = size
                while left > 0:
                    chunk = payload[: min(left, len(payload))]
                    f.write(chunk)
                    left -= len(chunk)
            wall = time.time()
            t0 = time.perf_counter()
            train.report(
                metrics,
                checkpoint=train.Checkpoint.from_directory(directory),
                upload=upload,
                delete_local_checkpoint_after_upload=give_up,
            )
            with_checkpoint.append(time.perf_counter() - t0)
            checkpoint_times.append((step, wall))
            if upload == "async":
                shutil.rmtree(directory)  # async: the directory may go as soon as report returns
        else:
            t0 = time.perf_counter()
            train.report(metrics)
            plain.append(time.perf_counter() - t0)
    loop_seconds = time.perf_counter() - started
    floor: list[float] = []
    for step in range(1, int(params.get("floor_steps", 0)) + 1):
        busy(compute_ms)
        metrics = {"loss": 1.0 / step, "step": step, "rank": rank}
        t0 = time.perf_counter()
        floor_call(metrics)
        floor.append(time.perf_counter() - t0)
    print(
        json.dumps(
            {
                "rank": rank,
                "plain_s": plain,
                "floor_s": floor,
                "checkpoint_s": with_checkpoint,
                "checkpoint_wall": checkpoint_times,
                "loop_s": loop_seconds,
                "resume_iteration": 0,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
