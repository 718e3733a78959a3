"""The dashboard's web app: pages, JSON, and server-sent event streams (aiohttp).

Read-only by construction: the app holds informers (list + watch) of TrainJobs, their pods and
events, reads a job's metric history and checkpoints from its storage, and streams a pod's log;
it never writes to the API or to storage. Pages get live updates over server-sent events, which
need no library on the page and reconnect by themselves.

Routes:
    /                               every TrainJob (HTML)
    /jobs/{namespace}/{name}        one TrainJob (HTML)
    /api/jobs                       the job list rows (JSON)
    /api/jobs/stream                the job list rows, pushed on every change (SSE `jobs`)
    /api/jobs/{ns}/{name}           one job: row, conditions, pods, events, checkpoints, history
    /api/jobs/{ns}/{name}/stream    the same, pushed: `job`, `pods`, `events`, `point`, `history`
    /api/jobs/{ns}/{name}/log       one rank's trainer log, followed (SSE `line`, `end`)
    /static/...                     the page's assets, all served by the app (works offline)
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from importlib import resources
from typing import Any

from aiohttp import web

from trainjob_operator.api import constants
from trainjob_operator.client import CommandError, Kube
from trainjob_operator.dashboard import rows
from trainjob_operator.dashboard.informer import Informer

log = logging.getLogger(__name__)

JSON = dict[str, Any]
# Changes closer together than this go to the page as one update.
COALESCE_SECONDS = 0.2
# A page's stream gets a comment this often, so proxies keep it open and a closed tab is noticed.
KEEPALIVE_SECONDS = 15.0
# The metric history is re-read from storage at most this often per open job page.
HISTORY_SECONDS = 3.0
LOG_TAIL_LINES = 500

_STATIC = resources.files("trainjob_operator.dashboard") / "static"
_CONTENT_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html", ".txt": "text/plain"}


class Dashboard:
    """The informers behind every page, for one namespace or (namespace None) all of them."""

    def __init__(self, kube: Kube, namespace: str | None) -> None:
        self.kube = kube
        self.namespace = namespace
        custom, core = kube.custom, kube.core
        selector = constants.LABEL_NAME
        if namespace is None:
            jobs: Callable[..., Any] = functools.partial(
                custom.list_cluster_custom_object, constants.GROUP, constants.VERSION, constants.PLURAL
            )
            pods: Callable[..., Any] = functools.partial(
                core.list_pod_for_all_namespaces, label_selector=selector
            )
            events: Callable[..., Any] = core.list_event_for_all_namespaces
        else:
            jobs = functools.partial(
                custom.list_namespaced_custom_object,
                constants.GROUP,
                constants.VERSION,
                namespace,
                constants.PLURAL,
            )
            pods = functools.partial(core.list_namespaced_pod, namespace, label_selector=selector)
            events = functools.partial(core.list_namespaced_event, namespace)
        self.jobs = Informer("trainjobs", jobs)
        self.pods = Informer("pods", pods)
        self.events = Informer("events", events)
        self.informers = (self.jobs, self.pods, self.events)

    def start(self) -> None:
        for informer in self.informers:
            informer.start()

    def stop(self) -> None:
        for informer in self.informers:
            informer.stop()

    # ---- views --------------------------------------------------------------------------------

    def errors(self) -> list[str]:
        return [informer.error for informer in self.informers if informer.error]

    def pods_of(self, namespace: str, name: str) -> list[JSON]:
        return [
            pod
            for pod in self.pods.objects()
            if pod["metadata"].get("namespace") == namespace
            and (pod["metadata"].get("labels") or {}).get(constants.LABEL_NAME) == name
        ]

    def job_rows(self) -> JSON:
        jobs = sorted(self.jobs.objects(), key=rows.job_key)
        return {
            "jobs": [
                rows.job_row(job, self.pods_of(job["metadata"]["namespace"], job["metadata"]["name"]))
                for job in jobs
            ],
            "errors": self.errors(),
            "namespace": self.namespace,
        }

    def find_job(self, namespace: str, name: str) -> JSON | None:
        return next(
            (
                job
                for job in self.jobs.objects()
                if job["metadata"].get("namespace") == namespace and job["metadata"]["name"] == name
            ),
            None,
        )

    def job_view(self, namespace: str, name: str) -> JSON | None:
        """Everything the job page shows that the API holds (storage comes separately)."""
        job = self.find_job(namespace, name)
        if job is None:
            return None
        pods = self.pods_of(namespace, name)
        pod_names = {pod["metadata"]["name"] for pod in pods}
        events = [
            rows.event_row(event)
            for event in self.events.objects()
            if event["metadata"].get("namespace") == namespace
            and (
                (
                    (event.get("involvedObject") or {}).get("kind") == constants.KIND
                    and (event.get("involvedObject") or {}).get("name") == name
                )
                or (
                    (event.get("involvedObject") or {}).get("kind") == "Pod"
                    and (event.get("involvedObject") or {}).get("name") in pod_names
                )
            )
        ]
        status = job.get("status") or {}
        return {
            "row": rows.job_row(job, pods),
            "spec": {
                "workers": (job.get("spec") or {}).get("workers", 1),
                "scoreAttribute": ((job.get("spec") or {}).get("checkpoints") or {}).get("scoreAttribute"),
                "storage": ((job.get("spec") or {}).get("storage") or {}).get("uri"),
            },
            "conditions": rows.condition_rows(job),
            "pods": sorted(
                (rows.pod_row(pod) for pod in pods), key=lambda p: (str(p["attempt"]), str(p["rank"]))
            ),
            "events": sorted(events, key=lambda e: str(e["time"] or "")),
            "latestCheckpoint": status.get("latestCheckpoint"),
            "bestCheckpoint": status.get("bestCheckpoint"),
            "message": status.get("message"),
            "errors": self.errors(),
        }

    def storage_view(self, namespace: str, name: str) -> JSON:
        """The metric history and the committed checkpoints, read from the job's storage (blocking:
        call it in a thread). A storage that cannot be read is said, not raised."""
        from trainjob_operator.job_storage import open_job_storage

        job = self.find_job(namespace, name)
        if job is None:
            return {
                "history": [],
                "checkpoints": [],
                "storageError": f"TrainJob {namespace}/{name} not found",
            }
        kube = Kube(self.kube.api_client, namespace, self.kube.stack_info)
        try:
            storage = open_job_storage(kube, job)
            history = [asdict(point) for point in storage.metric_history()]
            stored = storage.committed_checkpoints()
            attribute = ((job.get("spec") or {}).get("checkpoints") or {}).get("scoreAttribute")
            checkpoints = [
                {
                    "uri": checkpoint.uri,
                    "iteration": checkpoint.iteration,
                    "attempt": checkpoint.manifest.attempt,
                    "score": checkpoint.score(attribute),
                    "sizeBytes": checkpoint.manifest.size_bytes,
                    "committedAt": checkpoint.manifest.committed_at,
                }
                for checkpoint in stored
            ]
            return {
                "history": history,
                "checkpoints": rows.checkpoint_rows(job, checkpoints),
                "storageError": None,
            }
        except CommandError as error:
            return {"history": [], "checkpoints": rows.checkpoint_rows(job, None), "storageError": str(error)}


# ---- HTTP ----------------------------------------------------------------------------------------


def build_app(dashboard: Dashboard) -> web.Application:
    app = web.Application()
    app["dashboard"] = dashboard
    app.add_routes(
        [
            web.get("/", _page("index.html")),
            web.get("/jobs/{namespace}/{name}", _page("job.html")),
            web.get("/api/jobs", _jobs),
            web.get("/api/jobs/stream", _jobs_stream),
            web.get("/api/jobs/{namespace}/{name}", _job),
            web.get("/api/jobs/{namespace}/{name}/stream", _job_stream),
            web.get("/api/jobs/{namespace}/{name}/log", _log_stream),
            web.get("/static/{file}", _static),
            web.get("/healthz", _healthz),
        ]
    )
    return app


def _page(file: str) -> Callable[[web.Request], Any]:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(text=(_STATIC / file).read_text(), content_type="text/html")

    return handler


async def _static(request: web.Request) -> web.Response:
    file = request.match_info["file"]
    suffix = "." + file.rsplit(".", 1)[-1] if "." in file else ""
    resource = _STATIC / file
    if "/" in file or file.startswith(".") or suffix not in _CONTENT_TYPES or not resource.is_file():
        raise web.HTTPNotFound(text=f"no asset {file}")
    return web.Response(
        body=resource.read_bytes(),
        content_type=_CONTENT_TYPES[suffix],
        headers={"Cache-Control": "max-age=300"},
    )


async def _healthz(request: web.Request) -> web.Response:
    dashboard: Dashboard = request.app["dashboard"]
    synced = all(informer.synced.is_set() for informer in dashboard.informers)
    return web.json_response({"synced": synced, "errors": dashboard.errors()}, status=200 if synced else 503)


async def _jobs(request: web.Request) -> web.Response:
    dashboard: Dashboard = request.app["dashboard"]
    return web.json_response(dashboard.job_rows())


async def _job(request: web.Request) -> web.Response:
    dashboard: Dashboard = request.app["dashboard"]
    namespace, name = request.match_info["namespace"], request.match_info["name"]
    view = dashboard.job_view(namespace, name)
    if view is None:
        raise web.HTTPNotFound(text=f'TrainJob "{name}" not found in namespace "{namespace}"')
    view.update(await asyncio.to_thread(dashboard.storage_view, namespace, name))
    return web.json_response(view)


class _EventStream:
    """A server-sent event stream: `event: NAME` and one JSON `data:` line per message."""

    def __init__(self) -> None:
        self.response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )

    async def open(self, request: web.Request) -> None:
        await self.response.prepare(request)

    async def send(self, event: str, data: Any) -> None:
        payload = json.dumps(data, separators=(",", ":"), default=str)
        await self.response.write(f"event: {event}\ndata: {payload}\n\n".encode())


async def _wait_any(changed: list[asyncio.Event], seconds: float) -> None:
    """Until one of `changed` is set or `seconds` pass; then a short pause gathers what else changes."""
    waiters = [asyncio.ensure_future(event.wait()) for event in changed]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
    await asyncio.sleep(COALESCE_SECONDS)
    for event in changed:
        event.clear()


async def _jobs_stream(request: web.Request) -> web.StreamResponse:
    dashboard: Dashboard = request.app["dashboard"]
    informers = (dashboard.jobs, dashboard.pods)
    changed = [informer.subscribe() for informer in informers]
    last: JSON | None = None
    stream = _EventStream()
    send = stream.send
    try:
        await stream.open(request)
        while True:
            current = dashboard.job_rows()
            if current != last:
                await send("jobs", current)
                last = current
            else:
                await send("ping", {})
            await _wait_any(changed, KEEPALIVE_SECONDS)
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        for informer, waker in zip(informers, changed, strict=True):
            informer.unsubscribe(waker)
    return stream.response


async def _job_stream(request: web.Request) -> web.StreamResponse:
    """`job` (row, conditions, checkpoint pointers), `pods`, `events` when they change; `point`
    for each new iteration the status shows (live, between the coordinator's history flushes);
    `history` and `checkpoints` from storage on connect and after each commit or phase change."""
    dashboard: Dashboard = request.app["dashboard"]
    namespace, name = request.match_info["namespace"], request.match_info["name"]
    changed = [informer.subscribe() for informer in dashboard.informers]
    sent: dict[str, Any] = {}
    storage_marker: Any = object()
    storage_read_at = 0.0
    stream = _EventStream()
    send = stream.send
    try:
        await stream.open(request)
        while True:
            view = dashboard.job_view(namespace, name)
            if view is None:
                await send("gone", {"message": f'TrainJob "{name}" not found in namespace "{namespace}"'})
            else:
                job = {k: v for k, v in view.items() if k not in ("pods", "events")}
                for event, data in (("job", job), ("pods", view["pods"]), ("events", view["events"])):
                    if sent.get(event) != data:
                        await send(event, data)
                        sent[event] = data
                row = view["row"]
                point = {"iteration": row["iteration"], "attempt": row["attempt"], "metrics": row["metrics"]}
                if row["iteration"] is not None and sent.get("point") != point:
                    await send("point", point)
                    sent["point"] = point
                marker = ((view["latestCheckpoint"] or {}).get("uri"), row["phase"], row["attempt"])
                due = time.monotonic() - storage_read_at >= HISTORY_SECONDS
                if marker != storage_marker and due:
                    stored = await asyncio.to_thread(dashboard.storage_view, namespace, name)
                    storage_read_at = time.monotonic()
                    storage_marker = marker
                    await send("history", stored)
            timeout = HISTORY_SECONDS if storage_marker is not None else KEEPALIVE_SECONDS
            await _wait_any(changed, timeout)
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        for informer, waker in zip(dashboard.informers, changed, strict=True):
            informer.unsubscribe(waker)
    return stream.response


async def _log_stream(request: web.Request) -> web.StreamResponse:
    """The trainer log of one rank (default 0) of one attempt (default: the current one), its
    last lines and then every new line while the container runs (SSE `line`, then `end`)."""
    dashboard: Dashboard = request.app["dashboard"]
    namespace, name = request.match_info["namespace"], request.match_info["name"]
    job = dashboard.find_job(namespace, name)
    if job is None:
        raise web.HTTPNotFound(text=f'TrainJob "{name}" not found in namespace "{namespace}"')
    try:
        rank = int(request.query.get("rank", "0"))
        attempt = int(request.query.get("attempt", (job.get("status") or {}).get("attempt") or 0))
    except ValueError:
        raise web.HTTPBadRequest(text="rank and attempt are numbers") from None
    pod = f"{name}-{attempt}-{rank}"
    queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
    loop = asyncio.get_running_loop()
    stop = threading.Event()

    def follow() -> None:
        response: Any = None
        try:
            response = dashboard.kube.core.read_namespaced_pod_log(
                pod,
                namespace,
                container=constants.TRAINER_CONTAINER,
                follow=True,
                tail_lines=LOG_TAIL_LINES,
                _preload_content=False,
                _request_timeout=None,  # followed as long as the container runs
            )
            buffered = b""
            for chunk in response.stream(4096, decode_content=True):
                if stop.is_set():
                    break
                buffered += chunk
                *lines, buffered = buffered.split(b"\n")
                for line in lines:
                    loop.call_soon_threadsafe(queue.put_nowait, ("line", line.decode(errors="replace")))
            if buffered:
                loop.call_soon_threadsafe(queue.put_nowait, ("line", buffered.decode(errors="replace")))
            loop.call_soon_threadsafe(queue.put_nowait, ("end", f"pod {pod}: the container's log ended"))
        except Exception as error:
            from kubernetes.client.exceptions import ApiException

            from trainjob_operator.client import api_error_message

            text = api_error_message(error) if isinstance(error, ApiException) else str(error)
            loop.call_soon_threadsafe(queue.put_nowait, ("end", f"pod {pod}: {text}"))
        finally:
            if response is not None:
                with contextlib.suppress(Exception):
                    response.release_conn()

    thread = threading.Thread(target=follow, name=f"log-{pod}", daemon=True)
    thread.start()
    stream = _EventStream()
    send = stream.send
    try:
        await stream.open(request)
        await send("pod", {"pod": pod, "rank": rank, "attempt": attempt})
        while True:
            try:
                async with asyncio.timeout(KEEPALIVE_SECONDS):
                    kind, text = await queue.get()
            except TimeoutError:
                await send("ping", {})
                continue
            await send(kind, {"text": text})
            if kind == "end":
                break
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        stop.set()
    return stream.response
