"""Run the dashboard until interrupted: start the informers, serve the app, stop both."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from pathlib import Path

from aiohttp import web

from trainjob_operator.client import CommandError, Kube
from trainjob_operator.dashboard.app import Dashboard, build_app

# How long start-up waits for the first list of every kind before serving anyway (the page then
# fills as the lists arrive, or shows what the API refused).
SYNC_SECONDS = 10.0


def serve(kube: Kube, *, host: str, port: int, namespace: str | None, ready_file: str | None = None) -> None:
    """Serve on host:port until SIGINT/SIGTERM; prints the URL once the first lists are in."""
    dashboard = Dashboard(kube, namespace)
    dashboard.start()
    try:
        deadline = time.monotonic() + SYNC_SECONDS
        for informer in dashboard.informers:
            informer.synced.wait(max(0.0, deadline - time.monotonic()))
        asyncio.run(_serve(dashboard, host, port, ready_file))
    finally:
        dashboard.stop()


async def _serve(dashboard: Dashboard, host: str, port: int, ready_file: str | None) -> None:
    runner = web.AppRunner(build_app(dashboard), handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as error:
        await runner.cleanup()
        raise CommandError(
            f"cannot serve the dashboard on {host}:{port}: {error.strerror or error}"
        ) from None
    bound = runner.addresses[0][1] if runner.addresses else port
    url = f"http://{host if ':' not in host else f'[{host}]'}:{bound}/"
    print(f"dashboard: {url}", flush=True)
    for problem in dashboard.errors():
        print(f"warning: cannot watch {problem}", file=sys.stderr, flush=True)
    if ready_file:
        await asyncio.to_thread(Path(ready_file).write_text, url + "\n")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
