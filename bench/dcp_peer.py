"""Issue 16, goal 4: PyTorch's own async checkpointing (``torch.distributed.checkpoint.async_save``,
DCP) as a peer of our async ``report()``: the same sharded state (N ranks over gloo, each with its
own ``shard_mib`` of tensors), to the same place, in the same run, interleaved round by round.

The place is a local directory: DCP's writer for object storage is fsspec's, which needs
``s3fs`` for S3, and that is not installed here; so DCP writes to ``file://`` and our SDK stores
to ``file://`` on the same disk. Candidates (see ``bench/workers/dcp_rank.py``):

- ``dcp_async``: DCP's ``async_save``; durable when every rank's future is done;
- ``ours_async``: ``torch.save`` of the shard, then ``report(upload="async")`` with the directory
  handed over; durable when the coordinator has committed it;
- ``ours_staged``: ``worker_sdk.torch.StateStager.stage`` of the shard (tensors copied into reused
  CPU buffers; the file written in the background), then ``report(upload="async")``; durable when
  committed;
- ``dcp_then_report``: DCP's ``async_save`` into a rank's own directory, then ``report`` of that
  directory a few steps later (the documented way to report a DCP checkpoint: see the SDK's
  README); durable when committed. The driver loads the last committed one back with ``dcp.load``.

Training-loop blocking is per rank and checkpoint (after a barrier); until durable is from the
checkpoint's start on the first rank to its last rank's future (DCP) or its commit (ours).

    python -m bench.dcp_peer [--ranks 4] [--shard-mib 256] [--checkpoints 3] [--rounds 2]
"""

from __future__ import annotations

import json
import os
import statistics
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from bench.common import Job, collect_json, emit, log, scenario_parser, summary_ms, workdir

MODES = ("dcp_async", "ours_async", "ours_staged", "dcp_then_report")


def load_back(directory: Path, checkpoint_index: int) -> int:
    """Read a committed DCP checkpoint back with ``dcp.load`` (one process, no process group) and
    check its values; the number of tensors read."""
    import torch
    from torch.distributed.checkpoint.filesystem import FileSystemReader
    from torch.distributed.checkpoint.state_dict_loader import load

    # A committed checkpoint's files are in the data directory of the attempt that committed it.
    attempts = sorted(Path(directory).glob("attempt-*"))
    if not (Path(directory) / ".metadata").exists() and attempts:
        directory = attempts[-1]
    metadata = FileSystemReader(str(directory)).read_metadata()
    state = {
        key: torch.empty(item.size, dtype=item.properties.dtype)  # type: ignore[union-attr]
        for key, item in metadata.state_dict_metadata.items()
    }
    load(state, checkpoint_id=str(directory), no_dist=True)
    for key, tensor in state.items():
        rank, index = (int(part) for part in key.removeprefix("rank").split(".weight"))
        expected = (float(checkpoint_index), float(rank * 1000 + index))
        if (float(tensor[0]), float(tensor[1])) != expected:
            raise RuntimeError(f"{key} read back as {tensor[:2].tolist()}, expected {list(expected)}")
    return len(state)


def run_mode(tmp: Path, mode: str, params: dict[str, Any], ranks: int, timeout: float) -> dict[str, Any]:
    root = tmp / f"run-{mode}-{time.monotonic_ns()}"
    (root / "work").mkdir(parents=True)
    job = Job(root, (root / "storage").as_uri(), ranks)
    committed_at: dict[int, float] = {}
    stop = threading.Event()
    try:
        coordinator = job.start_coordinator(0)

        def watch() -> None:
            while not stop.is_set():
                try:
                    latest = coordinator.state().get("latestCheckpoint")
                except OSError:
                    latest = None
                if isinstance(latest, dict):
                    committed_at.setdefault(int(latest["iteration"]), time.time())
                time.sleep(0.01)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        args = [
            "-m",
            "bench.workers.dcp_rank",
            json.dumps({**params, "mode": mode, "workroot": str(root / "work")}),
        ]
        try:
            lines = collect_json(job.start_ranks(coordinator, args), timeout)
        except RuntimeError:
            for rank_log in sorted(root.glob("rank-*.log")):
                log(f"{rank_log.name}:\n{rank_log.read_text()[-3000:]}")
            raise
        checkpoints = int(params["checkpoints"])
        deadline = time.monotonic() + 120
        while (
            mode != "dcp_async" and max(committed_at, default=0) < checkpoints and time.monotonic() < deadline
        ):
            time.sleep(0.05)
        latest_uri = (coordinator.state().get("latestCheckpoint") or {}).get("uri")
    finally:
        stop.set()
        job.stop()
    out: dict[str, Any] = {"blocked_s": [b for line in lines for b in line["blocked_s"]]}
    out["loop_s"] = max(line["loop_s"] for line in lines)
    durable, written = [], []
    for index in range(int(params["checkpoints"])):
        t0 = min(line["began"][index] for line in lines)
        done = [line["done_at"][index] for line in lines]
        if mode not in ("ours_async", "ours_staged"):
            written.append(max(done) - t0)
        if mode == "dcp_async":
            durable.append(max(done) - t0)
        else:
            # Reports are made at checkpoints only: the checkpoint of index i is iteration i + 1.
            seen = [at for iteration, at in committed_at.items() if iteration >= index + 1]
            if not seen:
                raise RuntimeError(f"{mode}: checkpoint {index} never committed; see {root}")
            durable.append(min(seen) - t0)
    out["durable_s"] = durable
    out["files_written_s"] = written
    if mode == "dcp_then_report":
        assert latest_uri, "no committed checkpoint"
        out["loaded_back_tensors"] = load_back(
            Path(urlparse(latest_uri).path), int(params["checkpoints"]) - 1
        )
    return out


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = scenario_parser(__doc__)
    parser.add_argument("--ranks", type=int, default=4)
    parser.add_argument("--shard-mib", type=int, default=256, help="state per rank (float32 tensors)")
    parser.add_argument("--checkpoints", type=int, default=3, help="checkpoints per run")
    parser.add_argument("--steps-between", type=int, default=40, help="training steps between checkpoints")
    parser.add_argument(
        "--report-after", type=int, default=20, help="dcp_then_report: steps until the report"
    )
    parser.add_argument("--compute-ms", type=float, default=50.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args(argv)
    params = {
        "shard_mib": args.shard_mib,
        "checkpoints": args.checkpoints,
        "steps_between": args.steps_between,
        "report_after": min(args.report_after, args.steps_between - 1),
        "compute_ms": args.compute_ms,
    }
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    with workdir("dcp") as tmp:
        for round_number in range(args.rounds):
            for mode in MODES:
                at_load = round(os.getloadavg()[0], 2)
                log(f"dcp_peer: round {round_number + 1}/{args.rounds} {mode} (load {at_load})")
                runs[mode].append(
                    {**run_mode(tmp, mode, params, args.ranks, args.timeout), "load_average": at_load}
                )
    results: dict[str, Any] = {}
    for mode, mode_runs in runs.items():
        results[mode] = {
            "blocked": summary_ms([b for run in mode_runs for b in run["blocked_s"]]),
            "durable": summary_ms([d for run in mode_runs for d in run["durable_s"]]),
            "loop_s_median": round(statistics.median(run["loop_s"] for run in mode_runs), 2),
            "load_averages": [run["load_average"] for run in mode_runs],
        }
        written = [w for run in mode_runs for w in run["files_written_s"]]
        if written:
            results[mode]["files_written"] = summary_ms(written)
        if mode == "dcp_then_report":
            results[mode]["loaded_back_tensors"] = mode_runs[-1]["loaded_back_tensors"]
    dcp_blocked = results["dcp_async"]["blocked"]["p50_ms"]
    dcp_durable = results["dcp_async"]["durable"]["p50_ms"]
    ratios = {
        f"{mode}_over_dcp_{what}_p50": round(results[mode][what]["p50_ms"] / base, 3)
        for mode in ("ours_async", "ours_staged", "dcp_then_report")
        for what, base in (("blocked", dcp_blocked), ("durable", dcp_durable))
    }
    best = min(
        ratios["ours_async_over_dcp_blocked_p50"],
        ratios["ours_staged_over_dcp_blocked_p50"],
        ratios["dcp_then_report_over_dcp_blocked_p50"],
    )
    return [
        emit(
            "dcp_peer",
            {
                "ranks": args.ranks,
                **params,
                "total_mib": args.ranks * args.shard_mib,
                "rounds": args.rounds,
                "storage": "file:// on the local disk (DCP's fsspec writer needs s3fs for S3: not installed)",
            },
            {mode: results[mode] for mode in ("ours_async", "ours_staged", "dcp_then_report")},
            {"dcp_async": results["dcp_async"]},
            ratios,
            {
                "target": "our async report() blocks the loop no more than DCP's async_save (p50)",
                "met": best <= 1.0,
            },
        )
    ]


if __name__ == "__main__":
    main()
