"""`trainjob list`: the namespace's TrainJobs, one row each."""

from __future__ import annotations

import argparse
from typing import Any

from trainjob_operator import views
from trainjob_operator.client import add_cluster_arguments, connect


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "list",
        help="list TrainJobs with phase, progress and latest metrics",
        description="List the namespace's TrainJobs: name, phase, ready/wanted workers, iteration "
        "(of config.epochs where the job names them), restarts, latest metrics and age.",
    )
    add_cluster_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    kube = connect(args)
    jobs = kube.list_jobs()
    console = views.make_console()
    if not jobs:
        console.print(f'no TrainJobs in namespace "{kube.namespace}"')
        return 0
    console.print(views.jobs_table(jobs))
    return 0
