"""A list-then-watch cache of one kind, in a thread, that wakes asyncio subscribers on change.

The dashboard shows what the API server holds, live, to any number of open pages; one watch per
kind serves them all (the pages never poll the API). This is the informer pattern of client-go
in its smallest useful form: list (remembering the resourceVersion), watch from it, apply each
event, and list again when the watch expires (410 Gone) or breaks. The kubernetes client's own
`Watch` streams the events; what it lacks is the relist and the cache, which are all this adds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import Callable
from typing import Any

from kubernetes import watch
from kubernetes.client.exceptions import ApiException

from trainjob_operator.client import api_error_message

log = logging.getLogger(__name__)

JSON = dict[str, Any]
# The server ends each watch after this long and the informer resumes from the last version: a
# stop request is noticed within it.
WATCH_SECONDS = 5
RETRY_SECONDS = 2.0

# list(resource_version=..., watch=..., timeout_seconds=...) as the kubernetes client's list calls take it.
Lister = Callable[..., Any]


class Informer:
    """The objects of one list call, kept current by a watch.

    `lister` is a kubernetes-client list function with its arguments bound (namespace, label
    selector): it is called with `watch`, `resource_version` and `timeout_seconds` as a
    `Watch().stream` target, and with `_preload_content=False` to list. `error` is the last API
    error (a 403 under a role that lacks the rule), shown on the page instead of silence.
    """

    def __init__(self, name: str, lister: Lister) -> None:
        self.name = name
        self._lister = lister
        self._objects: dict[str, JSON] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._subscribers: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self.version = 0
        self.synced = threading.Event()
        self.error: str | None = None

    # ---- reading ---------------------------------------------------------------------------

    def objects(self) -> list[JSON]:
        with self._lock:
            return list(self._objects.values())

    def subscribe(self) -> asyncio.Event:
        """An event set (in the caller's loop) after every change; the caller clears it."""
        changed = asyncio.Event()
        with self._lock:
            self._subscribers.add((asyncio.get_running_loop(), changed))
        return changed

    def unsubscribe(self, changed: asyncio.Event) -> None:
        with self._lock:
            self._subscribers = {entry for entry in self._subscribers if entry[1] is not changed}

    # ---- running ---------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"informer-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=WATCH_SECONDS + 5)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                version = self._list()
                while not self._stopping.is_set():
                    version = self._watch(version)
            except ApiException as error:
                if error.status != 410:  # 410 Gone: the version expired, relist
                    self._failed(f"{self.name}: {api_error_message(error)}")
            except Exception as error:  # the connection broke: say so, relist after a pause
                self._failed(f"{self.name}: {error}")

    def _failed(self, message: str) -> None:
        if message != self.error:
            log.warning("cannot watch %s", message)
        self.error = message
        self._notify()
        self._stopping.wait(RETRY_SECONDS)

    def _list(self) -> str:
        # Raw JSON, as the server sent it (timestamps and all): what the page renders.
        response = self._lister(_preload_content=False, _request_timeout=30)
        listed = json.loads(response.data)
        objects = {_key(item): item for item in listed.get("items") or []}
        with self._lock:
            self._objects = objects
        self.error = None
        self.synced.set()
        self._notify()
        return str((listed.get("metadata") or {}).get("resourceVersion") or "")

    def _watch(self, version: str) -> str:
        stream = watch.Watch().stream(
            self._lister,
            resource_version=version,
            timeout_seconds=WATCH_SECONDS,
            _request_timeout=WATCH_SECONDS + 10,
        )
        for event in stream:
            raw = event.get("raw_object") or {}
            if event.get("type") == "ERROR":
                if raw.get("code") == 410:
                    raise ApiException(status=410, reason="Gone")
                raise RuntimeError(raw.get("message") or "watch error")
            key = _key(raw)
            with self._lock:
                if event["type"] == "DELETED":
                    self._objects.pop(key, None)
                else:
                    self._objects[key] = raw
            version = str((raw.get("metadata") or {}).get("resourceVersion") or version)
            self._notify()
            if self._stopping.is_set():
                with contextlib.suppress(Exception):
                    stream.close()
                break
        return version

    def _notify(self) -> None:
        self.version += 1
        with self._lock:
            subscribers = list(self._subscribers)
        for loop, changed in subscribers:
            with contextlib.suppress(RuntimeError):  # that loop has closed
                loop.call_soon_threadsafe(changed.set)


def _key(obj: JSON) -> str:
    metadata = obj.get("metadata") or {}
    return f"{metadata.get('namespace', '')}/{metadata.get('name', '')}"
