"""Scenario 5: one coordinator process against many simulated ranks (async HTTP clients, one
keep-alive connection each) reporting at a fixed rate: accepted reports/s, latency, and the
coordinator's CPU and RSS (from /proc), and the CPU the load generator itself used: on a small
machine it shares the cores with the coordinator, so its share says how much was left.

Each simulated rank sends what the SDK's sender would: every ``--batch`` reports in one request
(``{"reports": [...]}``), a request every ``batch / rate`` seconds. The default is what the SDK
sends at this rate: woken by a report, it lingers ``_LINGER_SECONDS`` (0.25 s) and sends what came
meanwhile, so a rank reporting 10 times a second sends 3 reports per request. ``--batch 1`` is one request per
report (the single-report form). Latency is per request: from sending it to its answer.

    python -m bench.coordinator_scale [--ranks 1024] [--rate 10] [--seconds 20] [--batch N]
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import Job, emit, log, scenario_parser, summary_ms, workdir

# The generators' event-loop probe sleeps this long between looks (loop_lag).
LAG_PROBE_S = 0.01
_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of ``pid``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / _TICKS, int(fields[12]) / _TICKS  # utime, stime


def rss_mib(pid: int) -> float:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE / 1024 / 1024


def _report(rank: int, iteration: int) -> dict[str, Any]:
    return {
        "rank": rank,
        "attempt": 0,
        "iteration": iteration,
        "metrics": {"loss": 1.0 / iteration, "step": iteration},
        "checkpoint": None,
        "time": time.time(),
    }


async def rank_client(
    host: str, port: int, token: str, rank: int, rate: float, batch: int, until: float, latencies: list[float]
) -> int:
    """One rank: a keep-alive HTTP/1.1 connection and ``batch`` reports every batch/rate seconds
    (one report alone when ``batch`` is 1). The requests are written by hand (a full client
    library costs more CPU than the server under test)."""
    reader, writer = await asyncio.open_connection(host, port)
    interval = batch / rate
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
            if batch == 1:
                iteration += 1
                body = json.dumps(_report(rank, iteration)).encode()
            else:
                reports = [_report(rank, iteration + i) for i in range(1, batch + 1)]
                iteration += batch
                body = json.dumps({"reports": reports}).encode()
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


async def loop_lag(until: float, lags: list[float], every: float = LAG_PROBE_S) -> None:
    """How late this process's event loop wakes a task sleeping ``every`` seconds, until ``until``.
    A rank's answer waits that long in the generator before it is timed, and its request latency
    includes the wait: on 2 cores shared with the coordinator this tells the generator's share of a
    high p99 from the coordinator's."""
    while time.monotonic() < until:
        asked = time.monotonic()
        await asyncio.sleep(every)
        lags.append(time.monotonic() - asked - every)


@dataclass
class Load:
    """What load generators measured: each request's latency, the errors, their event loops'
    lateness (``loop_lag``) and the CPU seconds they used."""

    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    lags: list[float] = field(default_factory=list)
    cpu_s: float = 0.0

    def add(self, other: Load) -> None:
        self.latencies += other.latencies
        self.errors += other.errors
        self.lags += other.lags
        self.cpu_s += other.cpu_s


async def drive_ranks(url: str, token: str, ranks: range, rate: float, batch: int, seconds: float) -> Load:
    """The ranks in this process's event loop, with its lateness probed meanwhile (no CPU)."""
    host, port = url.removeprefix("http://").split(":")
    load = Load()
    until = time.monotonic() + seconds
    probe = asyncio.create_task(loop_lag(until, load.lags))
    errors = await asyncio.gather(
        *(rank_client(host, int(port), token, r, rate, batch, until, load.latencies) for r in ranks)
    )
    await probe
    load.errors = sum(errors)
    return load


def _load_process(
    url: str, token: str, first: int, last: int, rate: float, batch: int, seconds: float
) -> Load:
    before = resource.getrusage(resource.RUSAGE_SELF)
    load = asyncio.run(drive_ranks(url, token, range(first, last), rate, batch, seconds))
    after = resource.getrusage(resource.RUSAGE_SELF)
    load.cpu_s = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return load


def drive(url: str, token: str, ranks: int, rate: float, batch: int, seconds: float, processes: int) -> Load:
    """The ranks split over ``processes`` load processes, their measurements together."""
    from concurrent.futures import ProcessPoolExecutor

    bounds = [ranks * i // processes for i in range(processes + 1)]
    total = Load()
    with ProcessPoolExecutor(processes) as pool:
        futures = [
            pool.submit(_load_process, url, token, bounds[i], bounds[i + 1], rate, batch, seconds)
            for i in range(processes)
        ]
        for future in futures:
            total.add(future.result())
    return total


def sdk_batch(rate: float) -> int:
    """Reports per request from a rank reporting ``rate`` times a second through the SDK."""
    from worker_sdk.session import _BATCH_LIMIT, _LINGER_SECONDS

    # Woken by a report, the sender lingers and takes what came meanwhile.
    return min(_BATCH_LIMIT, int(rate * _LINGER_SECONDS) + 1)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = scenario_parser(__doc__)
    parser.add_argument("--ranks", type=int, default=1024)
    parser.add_argument("--rate", type=float, default=10.0, help="reports per second per rank")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--load-processes", type=int, default=2, help="processes simulating the ranks")
    parser.add_argument(
        "--batch", type=int, default=None, help="reports per request (default: what the SDK sends at --rate)"
    )
    args = parser.parse_args(argv)
    batch = args.batch or sdk_batch(args.rate)
    with workdir("coordinator") as tmp:
        job = Job(tmp, (tmp / "storage").as_uri(), args.ranks)
        try:
            coordinator = job.start_coordinator(0)
            pid = coordinator.process.pid
            log(f"coordinator_scale: {args.ranks} ranks x {args.rate}/s for {args.seconds}s")
            drive(coordinator.url, job.token, args.ranks, args.rate, batch, args.warmup, args.load_processes)
            cpu0, wall0, load0 = cpu_seconds(pid), time.monotonic(), os.getloadavg()[0]
            generated = drive(
                coordinator.url, job.token, args.ranks, args.rate, batch, args.seconds, args.load_processes
            )
            cpu1, wall1 = cpu_seconds(pid), time.monotonic()
            rss = rss_mib(pid)
            state = coordinator.state()
        finally:
            job.stop()
    elapsed = wall1 - wall0
    offered = args.ranks * args.rate
    accepted = len(generated.latencies) * batch / elapsed
    lat = summary_ms(generated.latencies)
    user, system = cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]
    cpu_fraction = (user + system) / elapsed
    served = max(len(generated.latencies) * batch, 1)
    met = accepted >= 0.95 * offered and lat["p99_ms"] < 50 and cpu_fraction <= 1.0
    return emit(
        "coordinator_scale",
        {
            "ranks": args.ranks,
            "rate_per_rank": args.rate,
            "seconds": args.seconds,
            "offered_per_s": offered,
            "reports_per_request": batch,
            "load_processes": args.load_processes,
        },
        {
            "accepted_per_s": round(accepted, 1),
            "requests_per_s": round(len(generated.latencies) / elapsed, 1),
            "errors": generated.errors,
            "latency": lat,
            "coordinator_cpu_cores": round(cpu_fraction, 3),
            # Per answered report, user + kernel (the kernel part is mostly loopback TCP); a
            # core sustains about 1e6 / this many reports a second.
            "coordinator_cpu_us_per_report": round((user + system) / served * 1e6, 1),
            "coordinator_cpu_user_us_per_report": round(user / served * 1e6, 1),
            "coordinator_cpu_system_us_per_report": round(system / served * 1e6, 1),
            "one_core_capacity_per_s": round(served / (user + system)) if user + system else None,
            "generator_cpu_cores": round(generated.cpu_s / elapsed, 3),
            # How late the generators' event loops ran (sleeps of LAG_PROBE_S): part of each latency.
            "generator_loop_lag": summary_ms(generated.lags),
            "load_average_at_start": round(load0, 2),
            "coordinator_rss_mib": round(rss, 1),
            "job_iteration": state.get("iteration"),
        },
        {"limit": "offered load, one core, p99 < 50 ms"},
        {"accepted_over_offered": round(accepted / offered, 3)},
        {"target": "holds the offered load on one core with p99 < 50 ms", "met": met},
    )


if __name__ == "__main__":
    main()
