"""`trainjob dashboard` as a user starts it, for the browser and RBAC tests."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from tests.support.processes import stop_process, wait_until


@contextlib.contextmanager
def serving_dashboard(directory: Path, *args: str) -> Iterator[str]:
    """`trainjob dashboard ARGS` on a free port; yields its URL once it serves; stopped by pid
    (its log stays in `directory/dashboard.log`)."""
    ready = directory / "dashboard-url"
    log_path = directory / "dashboard.log"
    command = [sys.executable, "-m", "trainjob_operator", "dashboard", *args, "--port", "0"]
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [*command, "--ready-file", str(ready)], stdout=log, stderr=subprocess.STDOUT
        )
    try:
        yield wait_until(
            "the dashboard to serve",
            lambda: ready.read_text().strip() if ready.exists() else None,
            60,
            log_path.read_text,
        )
    finally:
        stop_process(process, timeout=15)
