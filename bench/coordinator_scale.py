"""Scenario 5: one coordinator process against many simulated ranks (async HTTP clients, one
keep-alive connection each) reporting at a fixed rate: accepted reports/s, latency, and the
coordinator's CPU and RSS (from /proc).

    python -m bench.coordinator_scale [--ranks 256] [--rate 10] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

from bench.common import Job, emit, log, summary_ms, workdir

_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime + stime


def rss_mib(pid: int) -> float:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE / 1024 / 1024


async def rank_client(
    host: str, port: int, token: str, rank: int, rate: float, until: float, latencies: list[float]
) -> int:
    """One rank: a keep-alive HTTP/1.1 connection and a report every 1/rate seconds. The requests
    are written by hand (a full client library costs more CPU than the server under test)."""
    reader, writer = await asyncio.open_connection(host, port)
    interval = 1.0 / rate
    iteration = 0
    errors = 0
    next_at = time.monotonic() + (rank % 100) / 100 * interval  # spread the ranks over the interval
    try:
        while True:
            now = time.monotonic()
            if now >= until:
                return errors
            if next_at > now:
                await asyncio.sleep(next_at - now)
            next_at += interval
            iteration += 1
            body = json.dumps(
                {
                    "rank": rank,
                    "attempt": 0,
                    "iteration": iteration,
                    "metrics": {"loss": 1.0 / iteration, "step": iteration},
                    "checkpoint": None,
                    "time": time.time(),
                }
            ).encode()
            request = (
                f"POST /v1/reports HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode() + body
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            if not head.startswith(b"HTTP/1.1 200"):
                errors += 1
                continue
            latencies.append(time.perf_counter() - started)
    finally:
        writer.close()


async def drive_ranks(
    url: str, token: str, ranks: range, rate: float, seconds: float
) -> tuple[list[float], int]:
    host, port = url.removeprefix("http://").split(":")
    latencies: list[float] = []
    until = time.monotonic() + seconds
    errors = await asyncio.gather(
        *(rank_client(host, int(port), token, r, rate, until, latencies) for r in ranks)
    )
    return latencies, sum(errors)


def _load_process(
    url: str, token: str, first: int, last: int, rate: float, seconds: float
) -> tuple[list[float], int]:
    return asyncio.run(drive_ranks(url, token, range(first, last), rate, seconds))


def drive(
    url: str, token: str, ranks: int, rate: float, seconds: float, processes: int
) -> tuple[list[float], int]:
    """The ranks split over ``processes`` load processes."""
    from concurrent.futures import ProcessPoolExecutor

    bounds = [ranks * i // processes for i in range(processes + 1)]
    with ProcessPoolExecutor(processes) as pool:
        futures = [
            pool.submit(_load_process, url, token, bounds[i], bounds[i + 1], rate, seconds)
            for i in range(processes)
        ]
        results = [f.result() for f in futures]
    return [x for lat, _ in results for x in lat], sum(e for _, e in results)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ranks", type=int, default=256)
    parser.add_argument("--rate", type=float, default=10.0, help="reports per second per rank")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--load-processes", type=int, default=2, help="processes simulating the ranks")
    args = parser.parse_args(argv)
    with workdir("coordinator") as tmp:
        job = Job(tmp, (tmp / "storage").as_uri(), args.ranks)
        try:
            coordinator = job.start_coordinator(0)
            pid = coordinator.process.pid
            log(f"coordinator_scale: {args.ranks} ranks x {args.rate}/s for {args.seconds}s")
            drive(coordinator.url, job.token, args.ranks, args.rate, args.warmup, args.load_processes)
            cpu0, wall0 = cpu_seconds(pid), time.monotonic()
            latencies, errors = drive(
                coordinator.url, job.token, args.ranks, args.rate, args.seconds, args.load_processes
            )
            cpu1, wall1 = cpu_seconds(pid), time.monotonic()
            rss = rss_mib(pid)
            state = coordinator.state()
        finally:
            job.stop()
    elapsed = wall1 - wall0
    offered = args.ranks * args.rate
    accepted = len(latencies) / elapsed
    lat = summary_ms(latencies)
    cpu_fraction = (cpu1 - cpu0) / elapsed
    met = accepted >= 0.95 * offered and lat["p99_ms"] < 50 and cpu_fraction <= 1.0
    return emit(
        "coordinator_scale",
        {
            "ranks": args.ranks,
            "rate_per_rank": args.rate,
            "seconds": args.seconds,
            "offered_per_s": offered,
            "load_processes": args.load_processes,
        },
        {
            "accepted_per_s": round(accepted, 1),
            "errors": errors,
            "latency": lat,
            "coordinator_cpu_cores": round(cpu_fraction, 3),
            "coordinator_rss_mib": round(rss, 1),
            "job_iteration": state.get("iteration"),
        },
        {"limit": "offered load, one core, p99 < 50 ms"},
        {"accepted_over_offered": round(accepted / offered, 3)},
        {"target": "holds the offered load on one core with p99 < 50 ms", "met": met},
    )


if __name__ == "__main__":
    main()
