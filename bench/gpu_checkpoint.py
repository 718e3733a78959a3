"""GPU: report() blocking with a GPU-resident checkpoint (1 GiB by default), sync vs async.

Self-contained: torch (CUDA build) and the SDK in standalone mode (``PYTHONPATH=worker_sdk/src``,
``file://`` storage in a temporary directory); no boto3, no network. One process (a process
group over every GPU is not needed to time one rank's blocking).

- sync: ``torch.save`` of the GPU state dict into a directory, then ``report(upload="sync")``;
  the loop is blocked for all of it.
- async: ``worker_sdk.torch.StateStager.stage`` copies the state dict into reused pinned host
  buffers (one device-to-host copy per tensor, then one synchronize) and writes it in the
  background; ``report(upload="async")`` uploads it. The loop is blocked only for the copy (and,
  if the previous checkpoint is still being written, for that).

    PYTHONPATH=worker_sdk/src python bench/gpu_checkpoint.py            # on a CUDA machine
    PYTHONPATH=worker_sdk/src python bench/gpu_checkpoint.py --device cpu --size-mib 16

Prints one JSON line with the card name. Bounded to well under 3 minutes at 1 GiB.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--size-mib", type=int, default=1024, help="checkpoint size (the model's parameters)")
    parser.add_argument("--checkpoints", type=int, default=3, help="checkpoints per mode")
    parser.add_argument(
        "--seconds-between",
        type=float,
        default=6.0,
        help="seconds of training steps between checkpoints (a real job checkpoints every few minutes; "
        "this only needs to exceed the time a checkpoint takes to store)",
    )
    args = parser.parse_args()
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("CUDA is not available: use --device cpu")
    storage = tempfile.mkdtemp(prefix="gpu-ckpt-storage-")
    os.environ["TRAINJOB_STORAGE_URI"] = Path(storage).as_uri()
    os.environ.setdefault("TRAINJOB_NAME", "gpu-checkpoint")
    import worker_sdk as train

    # A stack of square layers whose parameters add up to size_mib (fp32).
    width = 4096 if args.size_mib >= 256 else 512
    layers = max(1, args.size_mib * 1024 * 1024 // (width * width * 4))
    model = torch.nn.Sequential(*[torch.nn.Linear(width, width, bias=False) for _ in range(layers)]).to(
        args.device
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4)
    batch = torch.randn(64, width, device=args.device)
    size_bytes = sum(p.numel() * p.element_size() for p in model.parameters())

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        out = batch
        for layer in model:
            out = torch.tanh(layer(out))
        out.square().mean().backward()  # type: ignore[no-untyped-call]
        optimizer.step()

    def sync_now() -> None:
        if args.device == "cuda":
            torch.cuda.synchronize()

    step()
    sync_now()
    results: dict[str, list[float]] = {"sync": [], "async": []}
    stager = train.torch.StateStager()
    # Allocate (and pin) the buffers once, before the clock: a job stages many checkpoints.
    train.report({"warm_up": 1}, checkpoint=stager.stage(model.state_dict()), upload="sync")
    to_stored: dict[str, list[float]] = {"sync": [], "async": []}
    job = Path(storage) / train.get_context().get_namespace() / train.get_context().get_job_name()
    watchers: list[threading.Thread] = []

    def watch_stored(iteration: int, t0: float) -> None:
        manifest = job / f"checkpoint_{iteration:06d}" / ".trainjob-checkpoint.json"
        while not manifest.exists():
            time.sleep(0.005)
        to_stored["async"].append(time.perf_counter() - t0)

    started = time.perf_counter()
    for mode in ("sync", "async"):
        for index in range(args.checkpoints):
            train_until = time.perf_counter() + args.seconds_between
            while time.perf_counter() < train_until:
                step()
                sync_now()
            t0 = time.perf_counter()
            if mode == "sync":
                with tempfile.TemporaryDirectory(prefix="gpu-ckpt-") as tmp:
                    torch.save(model.state_dict(), Path(tmp) / "model.pt")
                    train.report({"mode_sync": index}, checkpoint=train.Checkpoint.from_directory(tmp))
                results[mode].append(time.perf_counter() - t0)
                to_stored[mode].append(time.perf_counter() - t0)
            else:
                checkpoint = stager.stage(model.state_dict())
                results[mode].append(time.perf_counter() - t0)
                train.report({"mode_async": index}, checkpoint=checkpoint, upload="async")
                # The warm-up and the sync checkpoints came first; standalone, a checkpoint is
                # stored once its manifest is written.
                iteration = 1 + args.checkpoints + index + 1
                watcher = threading.Thread(target=watch_stored, args=(iteration, t0), daemon=True)
                watcher.start()
                watchers.append(watcher)
    stager.close()
    for watcher in watchers:
        watcher.join()
    total_s = time.perf_counter() - started

    def ms(values: list[float]) -> dict[str, float]:
        return {
            "p50_ms": round(statistics.median(values) * 1000, 2),
            "max_ms": round(max(values) * 1000, 2),
            "n": len(values),
        }

    sync_p50 = statistics.median(results["sync"])
    async_p50 = statistics.median(results["async"])
    print(
        json.dumps(
            {
                "scenario": "gpu_checkpoint",
                "parameters": {
                    "device": args.device,
                    "checkpoint_mib": round(size_bytes / 1024 / 1024, 1),
                    "checkpoints_per_mode": args.checkpoints,
                    "storage": "file:// (local disk)",
                    "processes": 1,
                    "seconds_between": args.seconds_between,
                },
                "ours": {
                    "sync_blocked": ms(results["sync"]),
                    "async_blocked": ms(results["async"]),
                    "sync_to_stored": ms(to_stored["sync"]),
                    "async_to_stored": ms(to_stored["async"]),
                },
                "ratio": {"async_over_sync_blocked_p50": round(async_p50 / sync_p50, 4)},
                "card": torch.cuda.get_device_name()
                if args.device == "cuda"
                else platform.processor() or "cpu",
                "gpus": torch.cuda.device_count() if torch.cuda.is_available() else 0,
                "total_s": round(total_s, 1),
                "machine": {
                    "cores": os.cpu_count(),
                    "python": platform.python_version(),
                    "torch": torch.__version__,
                    "cuda": torch.version.cuda,
                },
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
