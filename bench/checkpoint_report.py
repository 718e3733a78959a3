"""Scenario 2: ``report()`` with a checkpoint (16 and 256 MiB, sharded over 2 workers) every N steps,
to SeaweedFS: how long the loop is blocked, sync, async (a copy) and async with the directory handed
over (as Ray's ASYNC does by default), and how long until the checkpoint is
committed, against Ray Train (v2: SYNC and ASYNC upload modes; v1: sync) in the same run.

    python -m bench.checkpoint_report [--sizes 16,256] [--checkpoints 3] [--every 3] [--no-ray]

With Ray, most of the time is Ray's: each of its 4 runs (2 sizes x SYNC/ASYNC) starts a cluster
(about 1.5 min on 2 cores) and its v2 report() takes about 2 s, so the defaults keep the steps few.
Each size with 2 checkpoints took 4 minutes here, so the defaults take about 8 to 9 minutes.
"""

from __future__ import annotations

from typing import Any

from bench.common import emit, log, ratio, scenario_parser, seaweedfs, summary_ms, with_ray, workdir
from bench.loops import all_of, run_ours, run_ray


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = scenario_parser(__doc__)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sizes", default="16,256", help="checkpoint sizes in MiB (whole checkpoint)")
    parser.add_argument("--checkpoints", type=int, default=3, help="checkpoints per run")
    parser.add_argument("--every", type=int, default=3, help="a checkpoint every N reports")
    parser.add_argument("--compute-ms", type=float, default=20.0)
    args = parser.parse_args(argv)
    lines = []
    with workdir("checkpoint") as tmp, seaweedfs(tmp) as s3:
        env = s3.credentials_env
        for size in (int(s) for s in args.sizes.split(",")):
            params = {
                "workers": args.workers,
                "steps": args.every * args.checkpoints,
                "compute_ms": args.compute_ms,
                "checkpoint_every": args.every,
                "checkpoint_mib": size,
            }
            ours: dict[str, Any] = {}
            # async copies the directory (the caller keeps it); async_given_up hands it over, as
            # Ray's ASYNC mode does by default (delete_local_checkpoint_after_upload).
            modes: dict[str, dict[str, Any]] = {
                "sync": {"upload": "sync"},
                "async": {"upload": "async"},
                "async_given_up": {"upload": "async", "give_up": True},
            }
            for mode, how in modes.items():
                log(f"checkpoint_report: ours {mode} {size} MiB")
                result = run_ours(
                    {**params, **how},
                    world_size=args.workers,
                    storage_uri=f"s3://{s3.bucket}/ours-{mode}-{size}",
                    extra_env=env,
                )
                ours[mode] = {
                    "blocked": summary_ms(all_of(result, "checkpoint_s")),
                    "to_commit": summary_ms(result["commit_s"]),
                }
            peer: dict[str, Any] | None = None
            ratios: dict[str, Any] = {}
            if not args.no_ray and with_ray():
                storage = {
                    "endpoint": s3.endpoint,
                    "bucket": s3.bucket,
                    "access_key": s3.access_key,
                    "secret_key": s3.secret_key,
                }
                peer = {}
                for name, v2, mode in (("ray_v2_sync", True, "sync"), ("ray_v2_async", True, "async")):
                    log(f"checkpoint_report: {name} {size} MiB")
                    peer_result = run_ray({**params, "upload": mode, "storage": storage}, v2=v2)
                    times = all_of(peer_result, "checkpoint_s")
                    peer[name] = {"blocked": summary_ms(times)} if times else peer_result
                sync_p50 = (peer.get("ray_v2_sync") or {}).get("blocked", {}).get("p50_ms")
                ratios = {
                    f"ours_{mode}_over_ray_sync_p50": None
                    if not sync_p50
                    else round(ours[mode]["blocked"]["p50_ms"] / sync_p50, 4)
                    for mode in ("async", "async_given_up")
                }
                ratios["ray_sync_over_ours_sync_p50"] = ratio(sync_p50, ours["sync"]["blocked"]["p50_ms"])
            fraction = ratios.get("ours_async_given_up_over_ray_sync_p50")
            lines.append(
                emit(
                    "checkpoint_report",
                    {**params, "storage": "seaweedfs (s3)"},
                    ours,
                    peer,
                    ratios or None,
                    {
                        "target": "ours async blocking p50 <= 5% of Ray's sync blocking p50 (the directory "
                        "handed over, as Ray's async does by default; the copying async is shown beside)",
                        "met": None if fraction is None else fraction <= 0.05,
                    },
                )
            )
    return lines


if __name__ == "__main__":
    main()
