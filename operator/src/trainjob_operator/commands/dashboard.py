"""`trainjob dashboard`: every TrainJob at a glance in a browser, live."""

from __future__ import annotations

import argparse
from typing import Any

from trainjob_operator.client import add_cluster_arguments, connect


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "dashboard",
        help="serve a read-only web dashboard of TrainJobs",
        description="Serve a read-only web app: every TrainJob with phase, progress and why it waits or "
        "failed; per job, live metric curves (attempts coloured, restarts and the best checkpoint "
        "marked), committed checkpoints with their download command, pods, conditions and events, "
        "and each rank's log. Uses your kubeconfig (or the in-cluster ServiceAccount): it needs get, "
        "list and watch on trainjobs, pods and events, and get on pods/log; storage credentials as "
        "`trainjob metrics` reads them. Binds 127.0.0.1 unless --address says otherwise.",
    )
    parser.add_argument(
        "--port", type=int, default=8080, help="port (default: %(default)s; 0 picks a free one)"
    )
    parser.add_argument("--address", default="127.0.0.1", help="address to bind (default: %(default)s)")
    parser.add_argument(
        "--all-namespaces", "-A", action="store_true", help="show the TrainJobs of every namespace"
    )
    parser.add_argument("--ready-file", help=argparse.SUPPRESS)  # tests and `local up`: the URL once serving
    add_cluster_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from trainjob_operator.dashboard import serve

    kube = connect(args)
    namespace = None if args.all_namespaces else kube.namespace
    serve(kube, host=args.address, port=args.port, namespace=namespace, ready_file=args.ready_file)
    return 0
