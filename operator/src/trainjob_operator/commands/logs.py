"""`trainjob logs JOB [--rank N] [--attempt A] [-f]`: the trainer's log of one rank's pod."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from trainjob_operator.api import constants
from trainjob_operator.client import REQUEST_TIMEOUT, CommandError, add_cluster_arguments, connect


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "logs",
        help="print (or stream) the trainer log of one rank's pod",
        description="Print the log of the 'trainer' container in the pod of one rank (default 0) of one "
        "attempt (default: the current one). Pods of earlier attempts are deleted when the gang "
        "restarts, so their logs are gone with them.",
    )
    parser.add_argument("job", metavar="JOB", help="TrainJob name")
    parser.add_argument("--rank", "-r", type=int, default=0, help="worker rank (pod) (default: %(default)s)")
    parser.add_argument("--attempt", "-a", type=int, help="attempt (default: the job's current attempt)")
    parser.add_argument(
        "--follow", "-f", action="store_true", help="stream the log until the container exits"
    )
    add_cluster_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    kube = connect(args)
    job = kube.get_job(args.job)
    attempt = args.attempt if args.attempt is not None else int((job.get("status") or {}).get("attempt") or 0)
    pods = kube.job_pods(args.job, attempt=attempt, rank=args.rank)
    if not pods:
        raise CommandError(
            f'TrainJob "{args.job}" has no pod for rank {args.rank} of attempt {attempt} '
            f"(it has {(job.get('spec') or {}).get('workers', 1)} workers; "
            "pods of finished attempts are deleted)"
        )
    pod = str(pods[0].metadata.name if pods[0].metadata else "")
    with kube.calling(f"cannot read the log of pod {pod!r}"):
        # Not preloaded, the client returns the raw urllib3 response (its stubs say str).
        response: Any = kube.core.read_namespaced_pod_log(
            pod,
            kube.namespace,
            container=constants.TRAINER_CONTAINER,
            follow=args.follow,
            _preload_content=False,
            # Streaming waits as long as the container runs; a plain read is bounded.
            _request_timeout=None if args.follow else REQUEST_TIMEOUT,
        )
        try:
            for chunk in response.stream(4096):
                sys.stdout.buffer.write(chunk)
                sys.stdout.buffer.flush()
        finally:
            response.release_conn()
    return 0
