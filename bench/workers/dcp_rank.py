"""One rank of the DCP scenario: ``python -m bench.workers.dcp_rank PARAMS``.

A training loop (CPU spin steps) over a process group (gloo), each rank holding its own shard of a
state dict (``shard_mib`` of float32 tensors under rank-specific keys), checkpointed every
``steps_between`` steps in one of three ways (PARAMS ``mode``):

- ``dcp_async``: ``torch.distributed.checkpoint.async_save`` into one directory (all ranks, as
  DCP expects on a shared file system); durable when every rank's future is done (DCP's
  FileSystemWriter fsyncs its files; rank 0 writes ``.metadata`` last);
- ``ours_async``: ``torch.save`` of the shard into a fresh directory, then
  ``report(upload="async", delete_local_checkpoint_after_upload=True)``; durable when the
  coordinator has committed it (the driver watches);
- ``ours_staged``: ``worker_sdk.torch.StateStager.stage`` of the shard (a copy into reused CPU
  buffers; ``torch.save`` runs in the background), then ``report(upload="async")``; durable when
  committed;
- ``dcp_then_report``: ``async_save`` into a directory of the rank's own, and ``report`` of that
  directory ``report_after`` steps later, on every rank at the same step (``future.result()`` first:
  usually done by then). The ranks' directories merge in storage into one DCP checkpoint (each
  rank's ``__<rank>_0.distcp``, rank 0's ``.metadata``), which ``dcp.load`` reads back.

DCP's collectives run on a process group of their own (DCP's advice for async saves), not the
training loop's. Prints one JSON line: per checkpoint, when it began (after a barrier), how long the
loop was blocked, and when DCP's future was done.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

MiB = 1024 * 1024
TENSOR_MIB = 16


def busy(ms: float) -> None:
    """A training step's stand-in: spin on the CPU (sleeping would hide contention)."""
    end = time.perf_counter() + ms / 1000
    while time.perf_counter() < end:
        pass


def make_state(rank: int, shard_mib: int) -> dict[str, Any]:
    import torch

    count = max(1, shard_mib // TENSOR_MIB)
    elements = min(shard_mib, TENSOR_MIB) * MiB // 4
    return {f"rank{rank}.weight{i}": torch.full((elements,), float(rank * 1000 + i)) for i in range(count)}


def main() -> None:
    params = json.loads(sys.argv[1])
    mode = params["mode"]
    import torch
    import torch.distributed as dist
    from torch.distributed.checkpoint.state_dict_saver import async_save

    import worker_sdk as train

    dist.init_process_group("gloo")
    rank = dist.get_rank()
    checkpoint_group = dist.new_group(backend="gloo")
    state = make_state(rank, int(params["shard_mib"]))
    if mode != "dcp_async":
        train.get_checkpoint()  # the SDK's session, before the clock starts
    stager = train.torch.StateStager() if mode == "ours_staged" else None
    root = Path(params["workroot"])
    began: list[float] = []
    blocked: list[float] = []
    done_at: list[float | None] = []
    pending: tuple[int, Future[Any], Path] | None = None  # dcp_then_report: saved, not reported yet
    futures: list[Future[Any]] = []
    steps_between, report_after = int(params["steps_between"]), int(params["report_after"])
    compute_ms = float(params["compute_ms"])
    loop_started = time.perf_counter()
    checkpoints = int(params["checkpoints"])
    for index in range(checkpoints + 1):  # steps after the last checkpoint too: its report is due
        for step in range(steps_between):
            busy(compute_ms)
            if pending is not None and step == report_after:
                number, future, directory = pending
                t = time.perf_counter()
                future.result()
                train.report(
                    {"checkpoint": number},
                    checkpoint=train.Checkpoint.from_directory(directory),
                    upload="async",
                    delete_local_checkpoint_after_upload=True,
                )
                blocked[number] += time.perf_counter() - t
                pending = None
        if index == checkpoints:
            break
        for tensor in state.values():
            tensor[0] = index  # the state changes between checkpoints
        dist.barrier()
        began.append(time.time())
        done_at.append(None)
        t = time.perf_counter()
        if mode == "ours_async":
            directory = Path(tempfile.mkdtemp(prefix=f"ours-{rank}-", dir=root))
            torch.save(state, directory / f"shard-{rank}.pt")
            train.report(
                {"checkpoint": index},
                checkpoint=train.Checkpoint.from_directory(directory),
                upload="async",
                delete_local_checkpoint_after_upload=True,
            )
        elif stager is not None:
            train.report(
                {"checkpoint": index},
                checkpoint=stager.stage(state, filename=f"shard-{rank}.pt"),
                upload="async",
            )
        else:
            directory = (
                root / f"dcp-{index}"
                if mode == "dcp_async"
                else Path(tempfile.mkdtemp(prefix=f"dcp-{rank}-", dir=root))
            )
            if futures:
                # One save in flight at a time, as DCP requires: two would interleave their
                # collectives on the checkpoint group and deadlock.
                futures[-1].result()
            saved = async_save(state, checkpoint_id=str(directory), process_group=checkpoint_group)
            assert isinstance(saved, Future)  # an AsyncSaveResponse only with async_stager given
            future = saved

            def record(_: Future[Any], index: int = index) -> None:
                done_at[index] = time.time()

            future.add_done_callback(record)
            futures.append(future)
            if mode == "dcp_then_report":
                pending = (index, future, directory)
        blocked.append(time.perf_counter() - t)
    loop_s = time.perf_counter() - loop_started
    if stager is not None:
        stager.close()
    for future in futures:
        future.result()
    dist.barrier()
    dist.destroy_process_group()
    print(
        json.dumps(
            {
                "rank": rank,
                "mode": mode,
                "began": began,
                "blocked_s": blocked,
                "done_at": done_at,
                "loop_s": loop_s,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
