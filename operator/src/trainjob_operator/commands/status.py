"""`trainjob status JOB`: everything the TrainJob's status says, with its recent events."""

from __future__ import annotations

import argparse
from typing import Any

from rich.table import Table
from rich.text import Text

from trainjob_operator import views
from trainjob_operator.client import add_cluster_arguments, connect, event_time

RECENT_EVENTS = 10


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "status",
        help="show a TrainJob's phase, progress, checkpoints, conditions and events",
        description="Show a TrainJob: phase, attempt and restarts, workers, iteration and metrics, the "
        "latest and best committed checkpoints, conditions and its most recent events.",
    )
    parser.add_argument("job", metavar="JOB", help="TrainJob name")
    add_cluster_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    kube = connect(args)
    job = kube.get_job(args.job)
    events = kube.job_events(args.job)
    console = views.make_console()
    status = views.status_of(job)
    spec = job.get("spec") or {}

    overview = Table.grid(padding=(0, 2))
    overview.add_column(style="bold")
    overview.add_column()
    overview.add_row("Name", f"{views.job_name(job)} (namespace {job['metadata']['namespace']})")
    overview.add_row("Phase", views.phase_text(status.get("phase")))
    if status.get("message"):
        overview.add_row("Message", str(status["message"]))
    if status.get("coordinatorMessage"):
        overview.add_row("Coordinator", str(status["coordinatorMessage"]))
    max_restarts = (spec.get("failurePolicy") or {}).get("maxRestarts", "-")
    overview.add_row("Attempt", str(status.get("attempt", 0)))
    overview.add_row("Restarts", f"{status.get('restarts', 0)} of at most {max_restarts}")
    counts = status.get("workers") or {}
    overview.add_row(
        "Workers",
        f"{spec.get('workers', 1)} wanted: {counts.get('active', 0)} active, {counts.get('ready', 0)} ready, "
        f"{counts.get('succeeded', 0)} succeeded, {counts.get('failed', 0)} failed",
    )
    overview.add_row("Iteration", views.iteration_text(job))
    overview.add_row("Progress", views.progress_text(job) or "-")
    overview.add_row("Metrics", views.compact_metrics(status.get("metrics"), limit=20) or "-")
    if status.get("lastReportTime"):
        overview.add_row(
            "Last report", f"{status['lastReportTime']} ({views.age(status['lastReportTime'])} ago)"
        )
    overview.add_row("Started", str(status.get("startTime") or "-"))
    if status.get("completionTime"):
        overview.add_row("Completed", str(status["completionTime"]))
    overview.add_row("Storage", str((spec.get("storage") or {}).get("uri", "-")))
    for label, key in (("Latest checkpoint", "latestCheckpoint"), ("Best checkpoint", "bestCheckpoint")):
        overview.add_row(label, checkpoint_text(status.get(key)))
    console.print(overview)

    console.print(Text("\nConditions", style="bold"))
    conditions = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("TYPE", "STATUS", "REASON", "AGE", "MESSAGE"):
        conditions.add_column(column)
    for condition in status.get("conditions") or []:
        conditions.add_row(
            condition.get("type", ""),
            condition.get("status", ""),
            condition.get("reason") or "",
            views.age(condition.get("lastTransitionTime")),
            condition.get("message") or "",
        )
    console.print(conditions if status.get("conditions") else "  none")

    console.print(Text("\nEvents", style="bold"))
    if not events:
        console.print("  none")
        return 0
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("AGE", "TYPE", "REASON", "MESSAGE"):
        table.add_column(column)
    for event in events[-RECENT_EVENTS:]:
        table.add_row(views.age(event_time(event)), event.type or "", event.reason or "", event.message or "")
    console.print(table)
    return 0


def checkpoint_text(checkpoint: dict[str, Any] | None) -> str:
    if not checkpoint:
        return "-"
    details = [f"iteration {checkpoint.get('iteration')}"]
    if checkpoint.get("metrics"):
        details.append(views.compact_metrics(checkpoint["metrics"]))
    if checkpoint.get("sizeBytes") is not None:
        details.append(views.human_size(checkpoint["sizeBytes"]))
    return f"{checkpoint['uri']} ({', '.join(details)})"
