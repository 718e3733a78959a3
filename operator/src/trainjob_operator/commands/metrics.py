"""`trainjob metrics JOB [--plot FILE] [--json]`: the metric history from the job's storage."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.table import Table

from trainjob_operator import views
from trainjob_operator.client import CommandError, add_cluster_arguments, connect
from trainjob_operator.job_storage import open_job_storage
from trainjob_operator.plotting import numeric_metric_names, plot_history


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "metrics",
        help="print (or plot) a TrainJob's metric history",
        description="Read the metric history the coordinator writes to the job's storage "
        "(metrics/attempt-<a>/part-<n>.jsonl: rank 0's metrics at every iteration, all attempts in "
        "order) and print it as a table, as JSON lines (--json), or plot it to a PNG (--plot). "
        "S3 credentials: AWS_* from the environment, else the job's spec.storage.credentialsSecret.",
    )
    parser.add_argument("job", metavar="JOB", help="TrainJob name")
    parser.add_argument("--plot", type=Path, metavar="FILE", help="write a PNG: one panel per metric")
    parser.add_argument("--json", action="store_true", help="print one JSON object per iteration")
    add_cluster_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.plot is not None:
        from trainjob_operator.local.extra import MATPLOTLIB, require_local_extra

        require_local_extra("metrics --plot", parts=(MATPLOTLIB,))
    kube = connect(args)
    job = kube.get_job(args.job)
    points = open_job_storage(kube, job).metric_history()
    console = views.make_console()
    if args.json:
        for point in points:
            sys.stdout.write(json.dumps(asdict(point)) + "\n")
    elif not points:
        console.print(f'TrainJob "{args.job}" has no metric history yet')
    else:
        names = numeric_metric_names(points) or list(points[-1].metrics)
        table = Table(box=None, header_style="bold", pad_edge=False)
        for column in ("ITERATION", "ATTEMPT", *(name.upper() for name in names), "TIME"):
            table.add_column(column, no_wrap=True)
        for point in points:
            table.add_row(
                str(point.iteration),
                str(point.attempt),
                *(views.format_value(point.metrics.get(name, "")) for name in names),
                point.time,
            )
        console.print(table)
    if args.plot is not None:
        if not points:
            raise CommandError(f'TrainJob "{args.job}" has no metric history to plot yet')
        try:
            plot_history(points, args.plot, title=f"TrainJob {args.job}")
        except (ValueError, OSError) as error:
            raise CommandError(f"cannot write the plot {args.plot}: {error}") from None
        print(f"wrote {args.plot}", file=sys.stderr if args.json else sys.stdout)
    return 0
