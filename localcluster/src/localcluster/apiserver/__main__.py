"""`python -m localcluster.apiserver --host 127.0.0.1 --port 0 --kubeconfig PATH [--state-file PATH]`."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import sys

from .app import APIServer

log = logging.getLogger("localcluster.apiserver")


def _capacity(text: str) -> dict[str, str]:
    from ..cluster import ClusterError, parse_capacity

    try:
        return parse_capacity(text) if text else {}
    except ClusterError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m localcluster.apiserver", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    p.add_argument("--kubeconfig", required=True, help="where to write the admin kubeconfig")
    p.add_argument("--state-file", default=None, help="keep objects here across restarts")
    p.add_argument(
        "--node-name", default="localnode", help=argparse.SUPPRESS
    )  # accepted, unused: a scheduler binds
    p.add_argument(
        "--node-monitor-grace-seconds",
        type=float,
        default=50.0,
        help="a node without heartbeat this long becomes Unknown and unreachable (default: %(default)s)",
    )
    p.add_argument(
        "--default-toleration-seconds",
        type=int,
        default=300,
        help="tolerationSeconds of the not-ready/unreachable tolerations of new pods (default: %(default)s)",
    )
    p.add_argument(
        "--simulated-nodes",
        type=int,
        default=0,
        metavar="N",
        help="N simulated nodes sim-node-1..N: their pods go Running and exit 0 with no process",
    )
    p.add_argument(
        "--simulated-node-capacity",
        type=_capacity,
        default={},
        metavar="LIST",
        help="each simulated node's capacity, e.g. cpu=32,memory=256Gi,pods=110",
    )
    p.add_argument(
        "--simulated-pod-duration",
        type=float,
        default=10.0,
        metavar="S",
        help="how long a simulated pod runs unless its annotation "
        "localcluster.io/simulated-duration says (default: %(default)s)",
    )
    p.add_argument(
        "--token", default=None, help="the admin bearer token (default: random, or the state file's)"
    )
    p.add_argument("--watch-history", type=int, default=10000, help="changes kept for watches to resume from")
    p.add_argument(
        "--authorization",
        choices=["AlwaysAllow", "RBAC"],
        default="AlwaysAllow",
        help="RBAC: authorize every request by the stored Roles/ClusterRoles and their bindings",
    )
    p.add_argument("--log-level", default="WARNING")
    return p.parse_args(argv)


async def _run(args: argparse.Namespace) -> None:
    server = APIServer(
        args.host,
        args.port,
        state_file=args.state_file,
        kubeconfig=args.kubeconfig,
        node_name=args.node_name,
        admin_token=args.token,
        history=args.watch_history,
        authorization=args.authorization,
        node_monitor_grace_seconds=args.node_monitor_grace_seconds,
        default_toleration_seconds=args.default_toleration_seconds,
        simulated_nodes=args.simulated_nodes,
        simulated_node_capacity=args.simulated_node_capacity,
        simulated_pod_duration=args.simulated_pod_duration,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if stop.is_set():
            os._exit(1)  # a second signal: the user insists
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    await server.start()
    print(f"localcluster apiserver listening on {server.url}", flush=True)
    await stop.wait()
    log.info("stopping")
    try:
        await asyncio.wait_for(server.stop(), timeout=10)
    except TimeoutError:
        log.error("shutdown took longer than 10s; exiting anyway")


def tune_garbage_collector() -> None:
    """A full garbage collection at most every 1000 middle ones instead of every 10 (Python's
    default). The store is a heap of nested dicts that grows with every object created, and
    what a request allocates is mostly freed by refcounting at once; the full collections that
    walked the whole store were most of the server's collector time (at 1000 TrainJobs x 8 pods,
    32 of them over 1.9 million objects took 29 s of its 191 CPU seconds; `bench/RESULTS.md`,
    "Round five"). Young and middle collections are as by default."""
    gc.set_threshold(700, 10, 1000)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    tune_garbage_collector()
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    asyncio.run(_run(args))


if __name__ == "__main__":
    main()
