"""`trainjob coordinator`: the sidecar in a job's rank-0 pod (docs/architecture.md: "What the operator
creates", "From `report()` to the status patch").

Prints ``coordinator listening on http://HOST:PORT`` once it accepts requests; on SIGTERM or
SIGINT it stops accepting, lets a commit in flight finish, flushes the metric history and the
status, and exits 0. Storage credentials come from the standard AWS environment variables.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

from trainjob_operator.coordinator.committing import RetentionPolicy
from trainjob_operator.coordinator.server import create_app
from trainjob_operator.coordinator.service import Coordinator, CoordinatorConfig
from trainjob_operator.coordinator.sinks import open_status_sink
from trainjob_operator.in_cluster import PLAIN_HTTP_FLAG, PLAIN_HTTP_HELP
from worker_sdk._layout import ScoreOrder
from worker_sdk.storage import StorageError, open_storage

# Per storage operation; the coordinator retries failed commits itself, and a short budget lets
# its state say "storage unavailable" within seconds instead of minutes.
_STORAGE_RETRY_BUDGET_SECONDS = 10.0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "coordinator",
        help="run a job's coordinator (the rank-0 pod's sidecar)",
        description="Collect every rank's reports, commit checkpoints atomically, keep the best/latest "
        "N, write the metric history to storage and publish the job's status.",
    )
    parser.add_argument("--job", required=True, help="TrainJob name")
    parser.add_argument("--namespace", required=True, help="TrainJob namespace")
    parser.add_argument("--world-size", required=True, type=_positive_int, help="number of ranks")
    parser.add_argument(
        "--attempt", required=True, type=_non_negative_int, help="attempt this coordinator serves"
    )
    parser.add_argument(
        "--storage", required=True, help="storage root URI: s3://bucket/prefix or file:///path"
    )
    parser.add_argument(
        "--storage-endpoint", default=None, help="S3 endpoint URL (default: $AWS_ENDPOINT_URL_S3, else AWS)"
    )
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    parser.add_argument("--port", required=True, type=int, help="port to listen on (0: any free port)")
    parser.add_argument("--token-file", required=True, type=Path, help="file holding the job's report token")
    parser.add_argument(
        "--status-sink", required=True, help="where the status goes: file:PATH, or kubernetes (the TrainJob)"
    )
    parser.add_argument(PLAIN_HTTP_FLAG, action="store_true", help=PLAIN_HTTP_HELP)
    parser.add_argument(
        "--num-to-keep", type=_positive_int, default=None, help="committed checkpoints to keep (default: all)"
    )
    parser.add_argument("--score-attribute", default=None, help="metric that ranks checkpoints for retention")
    parser.add_argument(
        "--score-order", choices=("min", "max"), default="max", help="better score (default max)"
    )
    parser.add_argument(
        "--status-interval", type=float, default=1.0, help="seconds between status publishes (default 1.0)"
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # One access line per report is noise; refusals are logged by the server itself.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    try:
        token = args.token_file.read_text().strip()
        if not token:
            raise ValueError(f"token file {args.token_file} is empty")
        storage = open_storage(
            args.storage,
            endpoint_url=args.storage_endpoint,
            retry_budget_seconds=_STORAGE_RETRY_BUDGET_SECONDS,
        )
        sink = open_status_sink(
            args.status_sink, namespace=args.namespace, job=args.job, plain_http=args.api_plain_http
        )
    except (OSError, ValueError, StorageError) as exc:
        print(f"trainjob coordinator: {exc}", file=sys.stderr)
        return 2
    config = CoordinatorConfig(
        job=args.job,
        namespace=args.namespace,
        world_size=args.world_size,
        attempt=args.attempt,
        retention=RetentionPolicy(args.num_to_keep, args.score_attribute, ScoreOrder(args.score_order)),
        status_interval=args.status_interval,
    )
    app = create_app(Coordinator(config, storage, sink), token)
    return asyncio.run(_serve(app, args.host, args.port))


async def _serve(app: web.Application, host: str, port: int) -> int:
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_port = runner.addresses[0][1] if runner.addresses else port
        print(f"coordinator listening on http://{host}:{bound_port}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        logging.getLogger(__name__).info("stopping: flushing history and status")
    finally:
        await runner.cleanup()
    return 0
