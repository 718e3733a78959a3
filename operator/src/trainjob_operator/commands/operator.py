"""`trainjob operator`: run the TrainJob operator against a cluster."""

from __future__ import annotations

import argparse
import logging
import secrets
from typing import Any

import kopf

from trainjob_operator.in_cluster import PLAIN_HTTP_FLAG
from trainjob_operator.reconciling import OperatorSettings


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "operator",
        help="run the TrainJob operator",
        description="Run the operator: it turns each TrainJob into a gang of worker pods with a "
        "coordinator sidecar, restarts failed gangs from the latest committed checkpoint, and keeps "
        "the job's status true. Several replicas may run with --peering (one is active).",
    )
    parser.add_argument("--kubeconfig", help="kubeconfig to use (default: in-cluster, then $KUBECONFIG)")
    parser.add_argument(
        "--namespace",
        "-n",
        action="append",
        default=[],
        help="watch only this namespace (repeatable; default: all namespaces)",
    )
    parser.add_argument(
        "--peering",
        metavar="NAME",
        help="coordinate replicas through this KopfPeering object (default: standalone, one replica)",
    )
    parser.add_argument(
        "--priority",
        type=int,
        help="peering priority; the highest running replica is active (default: a random one per process, "
        "since replicas of equal priority all pause)",
    )
    parser.add_argument("--liveness-port", type=int, help="serve /healthz on this port")
    parser.add_argument("--metrics-port", type=int, help="serve Prometheus /metrics on this port")
    parser.add_argument(
        "--coordinator-image",
        default=OperatorSettings().coordinator_image,
        help="image of the coordinator sidecar (default: %(default)s)",
    )
    parser.add_argument(
        "--default-storage-endpoint",
        metavar="URL",
        help="S3 endpoint for jobs whose spec.storage names none (`trainjob local up` sets its SeaweedFS)",
    )
    parser.add_argument(
        "--per-job-master-port",
        action="store_true",
        help="derive each job's torch rendezvous port from its uid and name instead of 29500 (for clusters "
        "whose pods share one network namespace, like the local cluster)",
    )
    parser.add_argument(
        PLAIN_HTTP_FLAG,
        action="store_true",
        help="the API server serves plain HTTP (the local cluster): the operator's in-cluster login and "
        "the coordinators it starts use HTTP instead of TLS with the mounted ca.crt",
    )
    parser.add_argument("--log-format", choices=["text", "json"], default="text", help="log line format")
    parser.add_argument("--verbose", "-v", action="store_true", help="log each API call kopf makes")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from trainjob_operator.client import CommandError
    from trainjob_operator.controller import running
    from trainjob_operator.in_cluster import InClusterError

    kopf.configure(
        verbose=args.verbose,
        log_format=kopf.LogFormat.JSON if args.log_format == "json" else kopf.LogFormat.FULL,
    )
    if not args.verbose:
        # kopf logs every handler call per object; the operator logs what it decides.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    try:
        running.run(
            running.OperatorOptions(
                kubeconfig=args.kubeconfig,
                namespaces=tuple(args.namespace),
                peering=args.peering,
                priority=args.priority if args.priority is not None else secrets.randbelow(2**31 - 1) + 1,
                liveness_port=args.liveness_port,
                metrics_port=args.metrics_port,
                settings=OperatorSettings(
                    coordinator_image=args.coordinator_image,
                    default_storage_endpoint=args.default_storage_endpoint,
                    per_job_master_port=args.per_job_master_port,
                    api_plain_http=args.api_plain_http,
                ),
            )
        )
    except InClusterError as error:
        raise CommandError(str(error)) from None
    return 0
