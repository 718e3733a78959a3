"""Scenario 1: the time ``report(metrics)`` (no checkpoint) blocks the training loop, 2 workers,
against Ray Train v1 (``RAY_TRAIN_V2_ENABLED=0``) and v2 in the same run. The load average at the
start and the end is in the line: on a shared machine it decides the tail more than the code.

``floor`` is the machine's share, measured in the same rank processes right after our loop: the
same compute, then a bare copy-and-append in report's place (``bench.workers.report_loop``). Code
run after 5 ms of compute finds its caches cold (other processes ran on the core meanwhile), so
our p50 moves from run to run with the floor; ``ours_p50_over_floor`` is the part that is ours.

    python -m bench.report_overhead [--steps N] [--ray-steps N] [--ray-v2-steps N] [--no-ray]
"""

from __future__ import annotations

import os
from typing import Any

from bench.common import emit, log, ratio, scenario_parser, summary_ms, with_ray
from bench.loops import all_of, run_ours, run_ray


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = scenario_parser(__doc__)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=500, help="reports per worker (ours)")
    parser.add_argument("--ray-steps", type=int, default=300, help="reports per worker (Ray v1)")
    parser.add_argument("--ray-v2-steps", type=int, default=10, help="reports per worker (Ray v2: ~2 s each)")
    parser.add_argument("--compute-ms", type=float, default=5.0, help="CPU work between reports")
    parser.add_argument(
        "--floor-steps", type=int, default=250, help="per worker, after the report loop: the machine's floor"
    )
    args = parser.parse_args(argv)
    base = {"compute_ms": args.compute_ms, "workers": args.workers}
    load_at_start = os.getloadavg()[0]
    log(f"report_overhead: ours, {args.workers} ranks x {args.steps} reports")
    params = {**base, "steps": args.steps, "floor_steps": args.floor_steps}
    ours_run = run_ours(params, world_size=args.workers)
    ours = summary_ms(all_of(ours_run, "plain_s"))
    floor = summary_ms(all_of(ours_run, "floor_s")) if args.floor_steps else None
    peer: dict[str, Any] | None = None
    ratios: dict[str, Any] = {}
    if floor is not None:
        ratios["ours_p50_over_floor"] = ratio(ours["p50_ms"], floor["p50_ms"])
    if not args.no_ray and with_ray():
        log(f"report_overhead: Ray Train v1, {args.ray_steps} reports")
        v1 = run_ray({**base, "steps": args.ray_steps}, v2=False)
        log(f"report_overhead: Ray Train v2, {args.ray_v2_steps} reports")
        v2 = run_ray({**base, "steps": args.ray_v2_steps}, v2=True)
        peer = {}
        for name, result in (("ray_v1", v1), ("ray_v2", v2)):
            times = all_of(result, "plain_s")
            peer[name] = summary_ms(times) if times else result
        for name in ("ray_v1", "ray_v2"):
            if "p50_ms" in (peer.get(name) or {}):
                ratios[f"{name}_p50_over_ours"] = ratio(peer[name]["p50_ms"], ours["p50_ms"])
                ratios[f"{name}_p99_over_ours"] = ratio(peer[name]["p99_ms"], ours["p99_ms"])
    met = None
    if "ray_v1_p50_over_ours" in ratios and ratios["ray_v1_p50_over_ours"] is not None:
        met = ratios["ray_v1_p50_over_ours"] >= 300 and ours["p99_ms"] <= 0.2
    return emit(
        "report_overhead",
        {**base, "steps": args.steps, "ray_v1_steps": args.ray_steps, "ray_v2_steps": args.ray_v2_steps},
        {
            **ours,
            "floor": floor,
            "load_average_at_start": round(load_at_start, 2),
            "load_average_at_end": round(os.getloadavg()[0], 2),
        },
        peer,
        ratios or None,
        {"target": "ours p50 <= Ray v1 p50 / 300, ours p99 <= 0.2 ms", "met": met},
    )


if __name__ == "__main__":
    main()
