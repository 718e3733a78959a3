"""How the CLI shows TrainJobs: tables, the status view and the live progress display (rich)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

PHASE_STYLES = {
    "Succeeded": "bold green",
    "Failed": "bold red",
    "Running": "cyan",
    "Restarting": "yellow",
    "Suspended": "magenta",
    "Pending": "dim",
}
# Output that is not a terminal (pipes, CI logs, tests) gets wide lines instead of wrapped cells.
PIPE_WIDTH = 200


def make_console(*, stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else PIPE_WIDTH
    return Console(file=stream, width=width, highlight=False)


# ---- small formats ----------------------------------------------------------------------------


def format_value(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, float):
        return str(value)
    return f"{value:.4g}"


def compact_metrics(metrics: dict[str, Any] | None, limit: int = 4) -> str:
    items = list((metrics or {}).items())
    text = " ".join(f"{name}={format_value(value)}" for name, value in items[:limit])
    return text + (f" (+{len(items) - limit})" if len(items) > limit else "")


def parse_time(text: Any) -> datetime | None:
    if isinstance(text, datetime):
        return text if text.tzinfo else text.replace(tzinfo=UTC)
    if not isinstance(text, str) or not text:
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m{seconds % 60}s" if seconds < 600 else f"{seconds // 60}m"
    if seconds < 2 * 86400:
        return f"{seconds // 3600}h{(seconds % 3600) // 60}m"
    return f"{seconds // 86400}d"


def age(timestamp: Any, now: datetime | None = None) -> str:
    moment = parse_time(timestamp)
    if moment is None:
        return "-"
    return duration(((now or datetime.now(UTC)) - moment).total_seconds())


def human_size(size: int | None) -> str:
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def phase_text(phase: str | None) -> Text:
    return Text(phase or "Pending", style=PHASE_STYLES.get(phase or "Pending", ""))


# ---- one job ----------------------------------------------------------------------------------


def job_name(job: dict[str, Any]) -> str:
    return str(job["metadata"]["name"])


def status_of(job: dict[str, Any]) -> dict[str, Any]:
    return dict(job.get("status") or {})


def workers_text(job: dict[str, Any]) -> str:
    """Ready workers of the gang's size; an elastic gang below spec.workers also says its maximum."""
    wanted = (job.get("spec") or {}).get("workers", 1)
    counts = status_of(job).get("workers") or {}
    ready = counts.get("ready", 0)
    current = counts.get("current")
    if isinstance(current, int) and current != wanted:
        return f"{ready}/{current} (of {wanted})"
    return f"{ready}/{wanted}"


def iteration_text(job: dict[str, Any]) -> str:
    """`12`, or `12/20` when the total is known: the program told it (`status.progress`), or the
    job's config names its epochs (one report per epoch, as the examples)."""
    status = status_of(job)
    iteration = status.get("iteration")
    if iteration is None:
        return "-"
    progress = status.get("progress")
    total = progress.get("totalIterations") if isinstance(progress, dict) else None
    if not isinstance(total, int):
        total = ((job.get("spec") or {}).get("config") or {}).get("epochs")
    return f"{iteration}/{total}" if isinstance(total, int) else str(iteration)


def progress_text(job: dict[str, Any]) -> str | None:
    """`60%, ETA 5m12s` (`60%` while the rate is not known) from `status.progress`; None without."""
    progress = status_of(job).get("progress")
    if not isinstance(progress, dict) or "percentage" not in progress:
        return None
    eta = progress.get("eta")
    return f"{progress['percentage']}%" + (f", ETA {eta}" if eta else "")


def summary_line(job: dict[str, Any]) -> str:
    """One line of progress, for output that is not a terminal."""
    status = status_of(job)
    parts = [
        f"{job_name(job)}: {status.get('phase') or 'Pending'}",
        f"attempt {status.get('attempt', 0)}",
        f"restarts {status.get('restarts', 0)}",
        f"workers {workers_text(job)}",
        f"iteration {iteration_text(job)}",
    ]
    progress = progress_text(job)
    if progress:
        parts.append(f"progress {progress}")
    latest = status.get("latestCheckpoint") or {}
    if latest:
        parts.append(f"checkpoint {latest.get('iteration')}")
    metrics = compact_metrics(status.get("metrics"))
    return ", ".join(parts) + (f" | {metrics}" if metrics else "")


def jobs_table(jobs: Sequence[dict[str, Any]]) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("NAME", "PHASE", "WORKERS", "ITERATION", "RESTARTS", "METRICS", "AGE"):
        table.add_column(column, no_wrap=True)
    for job in jobs:
        status = status_of(job)
        table.add_row(
            job_name(job),
            phase_text(status.get("phase")),
            workers_text(job),
            iteration_text(job),
            str(status.get("restarts", 0)),
            compact_metrics(status.get("metrics")) or "-",
            age(job["metadata"].get("creationTimestamp")),
        )
    return table


def checkpoints_table(
    rows: Sequence[dict[str, Any]], *, latest_uri: str | None, best_uri: str | None, score_name: str | None
) -> Table:
    """Rows: {uri, iteration, score?} and, from manifests, {attempt, sizeBytes, committedAt}; the
    manifest columns are left out when no row has them (the status lists only uri/iteration/score)."""
    detailed = any("committedAt" in row for row in rows)
    table = Table(box=None, header_style="bold", pad_edge=False)
    score_column = f"SCORE ({score_name})" if score_name else "SCORE"
    numeric = ("ITERATION", "ATTEMPT", score_column, "SIZE") if detailed else ("ITERATION", score_column)
    for column in numeric:
        table.add_column(column, no_wrap=True, justify="right")
    for column in ("COMMITTED", "", "URI") if detailed else ("", "URI"):
        table.add_column(column, no_wrap=True)
    for row in rows:
        marks = [word for word, uri in (("latest", latest_uri), ("best", best_uri)) if row["uri"] == uri]
        score = row.get("score")
        cells: list[str | Text] = [str(row.get("iteration", "-"))]
        if detailed:
            cells.append(str(row.get("attempt", "-")))
        cells.append(format_value(score) if score is not None else "-")
        if detailed:
            cells += [human_size(row.get("sizeBytes")), str(row.get("committedAt") or "-")]
        cells += [Text(",".join(marks), style="bold green") if marks else "", str(row["uri"])]
        table.add_row(*cells)
    return table


def progress_view(job: dict[str, Any], *, elapsed: float | None = None, note: str = "") -> RenderableType:
    """The live display of one job: lifecycle, progress, metrics and its committed checkpoints."""
    status = status_of(job)
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    head.add_row("phase", phase_text(status.get("phase")))
    head.add_row("attempt", f"{status.get('attempt', 0)} (restarts {status.get('restarts', 0)})")
    head.add_row("workers", f"{workers_text(job)} ready")
    head.add_row("iteration", iteration_text(job))
    progress = progress_text(job)
    if progress:
        head.add_row("progress", progress)
    for name, value in (status.get("metrics") or {}).items():
        head.add_row(f"  {name}", format_value(value))
    if status.get("message"):
        head.add_row("message", str(status["message"]))
    if status.get("coordinatorMessage"):
        head.add_row("coordinator", str(status["coordinatorMessage"]))
    parts: list[RenderableType] = [head]
    retained = status.get("checkpoints") or []
    if retained:
        latest = (status.get("latestCheckpoint") or {}).get("uri")
        best = (status.get("bestCheckpoint") or {}).get("uri")
        score_name = ((job.get("spec") or {}).get("checkpoints") or {}).get("scoreAttribute")
        parts.append(Text("committed checkpoints", style="bold"))
        parts.append(checkpoints_table(retained, latest_uri=latest, best_uri=best, score_name=score_name))
    if note:
        parts.append(Text(note, style="yellow"))
    title = f"TrainJob {job_name(job)}" + (f" · {duration(elapsed)}" if elapsed is not None else "")
    return Panel(Group(*parts), title=title, title_align="left", expand=False)


class ProgressDisplay:
    """A rich Live display on a terminal; elsewhere one line per change, so logs show progress too."""

    def __init__(self, console: Console, render: Callable[[], RenderableType]) -> None:
        self.console = console
        self.render = render
        self.live = (
            Live(render(), console=console, refresh_per_second=4, get_renderable=render)
            if console.is_terminal
            else None
        )
        self.last_lines: list[str] = []

    def __enter__(self) -> Self:
        if self.live is not None:
            self.live.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.live is not None:
            self.live.stop()

    def show(self, lines: Sequence[str]) -> None:
        """Called after each poll with the one-line summaries; a terminal redraws by itself."""
        if self.live is None and list(lines) != self.last_lines:
            for line in lines:
                self.console.print(line, soft_wrap=True)
            self.last_lines = list(lines)

    def say(self, message: str) -> None:
        """A line above the live display (or in the log)."""
        self.console.print(message, soft_wrap=True)
