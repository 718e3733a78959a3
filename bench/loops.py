"""Run the report loop (``bench/workers/report_loop.py``) as a job of our own, and as Ray's."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from bench.common import Job, collect_json, log, run_peer, workdir


def run_ours(
    params: dict[str, Any],
    *,
    world_size: int,
    storage_uri: str | None = None,
    extra_env: dict[str, str] | None = None,
    timeout: float = 600,
) -> dict[str, Any]:
    """Our ranks against a real coordinator process. Returns the ranks' timings and, for
    checkpoints, the seconds from each checkpoint report to its commit (seen through /v1/state)."""
    with workdir("ours") as tmp:
        job = Job(tmp, storage_uri or (tmp / "storage").as_uri(), world_size, extra_env=dict(extra_env or {}))
        try:
            coordinator = job.start_coordinator(0)
            committed_at: dict[int, float] = {}
            stop = threading.Event()

            def watch() -> None:  # when each checkpoint became the latest committed one
                while not stop.is_set():
                    try:
                        latest = coordinator.state().get("latestCheckpoint")
                    except OSError:
                        latest = None
                    if isinstance(latest, dict):
                        committed_at.setdefault(int(latest["iteration"]), time.time())
                    time.sleep(0.01)

            watcher = threading.Thread(target=watch, daemon=True)
            if params.get("checkpoint_every"):
                watcher.start()
            ranks = job.start_ranks(coordinator, ["-m", "bench.workers.report_loop", json.dumps(params)])
            results = collect_json(ranks, timeout)
            if watcher.is_alive():
                last = max((s for s, _ in results[0]["checkpoint_wall"]), default=0)
                deadline = time.monotonic() + 120
                while last and max(committed_at, default=0) < last and time.monotonic() < deadline:
                    time.sleep(0.05)
                stop.set()
                watcher.join()
        finally:
            job.stop()
    commit_s = []
    for step, wall in results[0]["checkpoint_wall"]:
        seen = [at for iteration, at in committed_at.items() if iteration >= step]
        if seen:
            commit_s.append(min(seen) - wall)
    return {"ranks": results, "commit_s": commit_s}


def run_ray(params: dict[str, Any], *, v2: bool, timeout: float = 900) -> dict[str, Any] | None:
    env = {"RAY_TRAIN_V2_ENABLED": "1" if v2 else "0"}
    try:
        return run_peer("ray_report.py", params, env=env, timeout=timeout)
    except Exception as exc:  # the peer failing must not lose our own figures
        log(f"Ray Train {'v2' if v2 else 'v1'} run failed: {exc}")
        return {"error": str(exc)[-1500:]}


def all_of(result: dict[str, Any] | None, key: str) -> list[float]:
    if not result or "ranks" not in result:
        return []
    return [value for rank in result["ranks"] for value in rank[key]]
