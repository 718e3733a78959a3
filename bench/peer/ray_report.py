"""The peer: the same training loop as ``bench/workers/report_loop.py`` under Ray Train's TorchTrainer.

Runs under ``.venv-bench/bin/python`` (Ray 2.60, torch 2.13), never imports the project:
``ray_report.py PARAMS`` with PARAMS (JSON): workers, steps, compute_ms, checkpoint_every,
checkpoint_mib (whole checkpoint, sharded over the workers), upload ("sync"/"async": Train v2's
``checkpoint_upload_mode``), storage ("local" or an S3 endpoint + bucket + keys). Train v1 or v2 is
chosen by the caller through ``RAY_TRAIN_V2_ENABLED``. Prints one JSON line: every worker's blocking
times, as the project's worker prints them.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def busy(ms: float) -> None:
    end = time.perf_counter() + ms / 1000
    x = 0
    while time.perf_counter() < end:
        x += 1


def train_loop(config: dict[str, Any]) -> None:
    import ray.train  # type: ignore[import-not-found]

    context = ray.train.get_context()
    rank = context.get_world_rank()
    world = context.get_world_size()
    steps = int(config["steps"])
    every = int(config.get("checkpoint_every", 0))
    size = int(config.get("checkpoint_mib", 16)) * 1024 * 1024 // world
    upload = config.get("upload", "sync")
    payload = os.urandom(min(size, 16 * 1024 * 1024)) if every else b""
    report_kwargs: dict[str, Any] = {}
    if upload == "async":
        from ray.train import CheckpointUploadMode  # Train v2 only

        report_kwargs["checkpoint_upload_mode"] = CheckpointUploadMode.ASYNC
    plain: list[float] = []
    with_checkpoint: list[float] = []
    checkpoint_wall: list[tuple[int, float]] = []
    root = Path(tempfile.mkdtemp(prefix="ray-bench-ckpt-"))
    started = time.perf_counter()
    for step in range(1, steps + 1):
        busy(float(config["compute_ms"]))
        metrics = {"loss": 1.0 / step, "step": step, "rank": rank}
        if every and step % every == 0:
            directory = root / f"step-{step}"
            directory.mkdir()
            with open(directory / f"shard-{rank}.bin", "wb") as f:
                left = size
                while left > 0:
                    chunk = payload[: min(left, len(payload))]
                    f.write(chunk)
                    left -= len(chunk)
            wall = time.time()
            t0 = time.perf_counter()
            ray.train.report(
                metrics, checkpoint=ray.train.Checkpoint.from_directory(str(directory)), **report_kwargs
            )
            with_checkpoint.append(time.perf_counter() - t0)
            checkpoint_wall.append((step, wall))
        else:
            t0 = time.perf_counter()
            ray.train.report(metrics)
            plain.append(time.perf_counter() - t0)
    loop_s = time.perf_counter() - started
    out = Path(config["out"]) / f"rank-{rank}.json"
    out.write_text(
        json.dumps(
            {
                "rank": rank,
                "plain_s": plain,
                "checkpoint_s": with_checkpoint,
                "checkpoint_wall": checkpoint_wall,
                "loop_s": loop_s,
            }
        )
    )


def main() -> None:
    params = json.loads(sys.argv[1])
    import ray
    import ray.train
    from ray.train.torch import TorchTrainer  # type: ignore[import-not-found]

    workers = int(params.get("workers", 2))
    ray.init(num_cpus=max(4, workers + 2), include_dashboard=False, log_to_driver=False)
    out = Path(tempfile.mkdtemp(prefix="ray-bench-out-"))
    storage = params.get("storage", "local")
    run_kwargs: dict[str, Any] = {"name": f"bench-{int(time.time() * 1000)}"}
    if isinstance(storage, dict):
        import pyarrow.fs  # type: ignore[import-not-found]

        endpoint = storage["endpoint"].removeprefix("http://")
        run_kwargs["storage_filesystem"] = pyarrow.fs.S3FileSystem(
            access_key=storage["access_key"],
            secret_key=storage["secret_key"],
            endpoint_override=endpoint,
            scheme="http",
            region="us-east-1",
        )
        run_kwargs["storage_path"] = f"{storage['bucket']}/ray"
    else:
        run_kwargs["storage_path"] = str(Path(tempfile.mkdtemp(prefix="ray-bench-storage-")))
    config = {**params, "out": str(out)}
    trainer = TorchTrainer(
        train_loop,
        train_loop_config=config,
        scaling_config=ray.train.ScalingConfig(num_workers=workers, use_gpu=False),
        run_config=ray.train.RunConfig(**run_kwargs),
    )
    started = time.perf_counter()
    trainer.fit()
    fit_s = time.perf_counter() - started
    ranks = [json.loads(p.read_text()) for p in sorted(out.glob("rank-*.json"))]
    v2 = os.environ.get("RAY_TRAIN_V2_ENABLED", "1") != "0"
    print(json.dumps({"ranks": ranks, "fit_s": fit_s, "train_v2": v2, "ray": ray.__version__}), flush=True)
    ray.shutdown()


if __name__ == "__main__":
    main()
