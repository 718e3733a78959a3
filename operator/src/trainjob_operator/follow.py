"""Watch TrainJobs until they finish, showing their progress (`submit --follow`, `demo`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from rich.console import Console, Group, RenderableType

from trainjob_operator import views
from trainjob_operator.client import FINISHED_PHASES, Kube

POLL_SECONDS = 1.0


def follow_jobs(
    kube: Kube,
    names: Sequence[tuple[str, str]],
    console: Console,
    *,
    timeout: float | None = None,
    on_poll: Callable[[dict[str, Any], views.ProgressDisplay], str | None] | None = None,
) -> dict[str, dict[str, Any]]:
    """Poll the jobs (namespace, name) until every one has finished (or `timeout` passed); returns
    the last read of each, by name. `on_poll(job, display)` may act on each read and return a note
    to show under the job."""
    started = time.monotonic()
    jobs: dict[str, dict[str, Any]] = {}
    notes: dict[str, str] = {}

    def render() -> RenderableType:
        elapsed = time.monotonic() - started
        return Group(
            *(
                views.progress_view(job, elapsed=elapsed, note=notes.get(name, ""))
                for name, job in jobs.items()
            )
        )

    for namespace, name in names:
        jobs[name] = kube.get_job(name, namespace)
    with views.ProgressDisplay(console, render) as display:
        while True:
            for namespace, name in names:
                jobs[name] = kube.get_job(name, namespace)
            display.show([views.summary_line(job) for job in jobs.values()])
            for name, job in jobs.items():
                note = on_poll(job, display) if on_poll is not None else None
                if note:
                    notes[name] = note
            finished = all(views.status_of(job).get("phase") in FINISHED_PHASES for job in jobs.values())
            if finished or (timeout is not None and time.monotonic() - started > timeout):
                return jobs
            time.sleep(POLL_SECONDS)
