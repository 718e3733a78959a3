"""LIST and WATCH: paging with continue tokens, and watches that replay the store's history from
a resourceVersion (410 Gone once compacted), filter by selectors, send bookmarks and the
initial-events-end bookmark of `sendInitialEvents`."""

from __future__ import annotations

import asyncio
import base64
import json
import random
import time
from typing import Any

import aiohttp
from aiohttp import web

from .errors import APIError, bad_request, gone
from .objects import ObjectAPI
from .resources import ResourceInfo
from .selectors import (
    check_field_selector,
    fields_match,
    labels_match,
    parse_field_selector,
    parse_label_selector,
)
from .store import Obj, WatchEvent
from .tables import to_table
from .wire import JSON, dumps, json_response, partial, truthy, wants_metadata, wants_table


def list_response(
    api: ObjectAPI, request: web.Request, info: ResourceInfo, namespace: str | None
) -> web.Response:
    """A list, paged with `limit`/`continue` (the token carries the position and the revision)."""
    q = request.query
    items = api.list_objects(info, namespace, q.get("labelSelector"), q.get("fieldSelector"))
    rv = str(api.store.rv)
    meta: dict[str, Any] = {"resourceVersion": rv}
    token = q.get("continue")
    if token:
        try:
            state = json.loads(base64.urlsafe_b64decode(token.encode()))
            start = tuple(state["start"])
        except (ValueError, KeyError, TypeError) as exc:
            raise bad_request(f"continue key is not valid: {exc}") from exc
        if int(state.get("rv", 0)) < api.store.compacted:
            raise APIError(
                410,
                "Expired",
                "The provided continue parameter is too old to display a consistent list result. "
                "You can start a new list without the continue parameter.",
            )
        items = [i for i in items if (i["metadata"].get("namespace", ""), i["metadata"]["name"]) > start]
    limit = int(q.get("limit", "0") or 0)
    if limit > 0 and len(items) > limit:
        last = items[limit - 1]["metadata"]
        meta["continue"] = base64.urlsafe_b64encode(
            dumps({"rv": api.store.rv, "start": [last.get("namespace", ""), last["name"]]}).encode()
        ).decode()
        meta["remainingItemCount"] = len(items) - limit
        items = items[:limit]
    out = [api.view(info, i) for i in items]
    if wants_table(request):
        return json_response(to_table(info, out, q.get("includeObject", "Metadata"), meta))
    if wants_metadata(request):
        return json_response(
            {
                "kind": "PartialObjectMetadataList",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": meta,
                "items": [partial(o) for o in out],
            }
        )
    return json_response(
        {"kind": info.list_kind, "apiVersion": info.api_version, "metadata": meta, "items": out}
    )


async def watch_response(
    api: ObjectAPI,
    request: web.Request,
    info: ResourceInfo,
    namespace: str | None,
    name: str | None,
    bookmark_interval: float,
) -> web.StreamResponse:
    """Changes as a stream of watch events from `resourceVersion` on (or the current objects first),
    with bookmarks, until the timeout or the client leaves."""
    q = request.query
    labels = parse_label_selector(q.get("labelSelector"))
    fields = parse_field_selector(q.get("fieldSelector"))
    check_field_selector(fields, info.kind)
    if name:
        fields.append(parse_field_selector(f"metadata.name={name}")[0])
    ns_filter = namespace if info.namespaced else None
    timeout = float(q["timeoutSeconds"]) if q.get("timeoutSeconds") else 1800.0 * (1 + random.random())
    bookmarks = truthy(q.get("allowWatchBookmarks")) if "allowWatchBookmarks" in q else False
    send_initial = q.get("sendInitialEvents", "").lower() == "true"
    table = wants_table(request)
    metadata_only = wants_metadata(request)
    include = q.get("includeObject", "Metadata")
    rv_param = q.get("resourceVersion", "")

    def matches(obj: Obj | None) -> bool:
        if obj is None:
            return False
        meta = obj["metadata"]
        if ns_filter is not None and meta.get("namespace", "") != ns_filter:
            return False
        if not labels_match(labels, meta.get("labels")):
            return False
        view = api.output(info, obj) if info.group == "events.k8s.io" else obj
        return fields_match(fields, view)

    queue = api.store.subscribe(info.storage)
    try:
        # The snapshot and the subscription happen with no await in between: no change is lost.
        initial: list[tuple[str, Obj]] = []
        expired = False
        if rv_param in ("", "0") or send_initial:
            for obj in api.store.scan(info.storage, ns_filter):
                if matches(obj):
                    initial.append(("ADDED", obj))
        else:
            try:
                since = int(rv_param)
            except ValueError as exc:
                raise bad_request(f"invalid resource version: {rv_param}") from exc
            events = api.store.events_since(since)
            if events is None:
                expired = True
            else:
                for ev in events:
                    initial += _translate(ev, info, matches)
        initial_rv = api.store.rv
        resp = web.StreamResponse(status=200, headers={"Content-Type": JSON, "Cache-Control": "no-cache"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        first_table = [True]

        def line(kind: str, obj: Obj, shared: bool = True) -> bytes:
            """One watch event as its JSON line. The plain JSON shapes are encoded once per
            event and shape and shared by every watcher (the stored object is never changed
            in place: a write stores a new one), so N watchers of one kind cost one encoding."""
            if kind in ("ERROR", "BOOKMARK"):
                return (dumps({"type": kind, "object": obj}) + "\n").encode()
            if table:
                out = api.output(info, obj)
                payload = to_table(
                    info,
                    [out],
                    include,
                    {"resourceVersion": out["metadata"].get("resourceVersion", "")},
                )
                if not first_table[0]:
                    payload["columnDefinitions"] = []
                first_table[0] = False
                return (dumps({"type": kind, "object": payload}) + "\n").encode()
            key = (id(obj), kind, info.api_version, info.kind, metadata_only)
            cached = _ENCODED.get(key) if shared else None
            if cached is not None and cached[0] is obj:
                return cached[1]
            if info.group == "events.k8s.io":
                out = api.output(info, obj)
            else:
                out = {**obj, "apiVersion": info.api_version, "kind": info.kind}
            payload = partial(out) if metadata_only else out
            encoded = (dumps({"type": kind, "object": payload}) + "\n").encode()
            if shared:
                _remember_bound()
                _ENCODED[key] = (obj, encoded)
            return encoded

        async def send(kind: str, obj: Obj) -> None:
            await resp.write(line(kind, obj))

        async def send_all(lines: list[bytes]) -> None:
            """A burst of events in one write (one chunk, one syscall), not one write each."""
            if lines:
                await resp.write(b"".join(lines))

        if expired:
            err = gone(f"too old resource version: {rv_param} ({api.store.compacted + 1})")
            await send("ERROR", err.status())
            return resp
        for start in range(0, len(initial), _BURST):
            # The initial objects are the stored ones (read, not copied), encoded for this watch
            # alone: a replay's encodings would only push the live events' out of the cache.
            await send_all([line(kind, obj, shared=False) for kind, obj in initial[start : start + _BURST]])
        if send_initial and bookmarks:
            await send("BOOKMARK", _bookmark(info, initial_rv, initial_end=True))
        deadline = time.monotonic() + timeout
        next_bookmark = time.monotonic() + bookmark_interval
        while True:
            now = time.monotonic()
            if now >= deadline:
                break
            wait = min(deadline, next_bookmark) - now if bookmarks else deadline - now
            try:
                # wake at least every few seconds to notice a client that went away
                async with asyncio.timeout(max(min(wait, 5.0), 0.001)):
                    ev = await queue.get()
            except TimeoutError:
                if request.transport is None or request.transport.is_closing():
                    break
                if bookmarks and time.monotonic() >= next_bookmark and queue.empty():
                    await send("BOOKMARK", _bookmark(info, api.store.rv))
                    next_bookmark = time.monotonic() + bookmark_interval
                continue
            # Everything already queued goes out with it, in resourceVersion order.
            burst = [ev]
            while len(burst) < _BURST and not queue.empty():
                burst.append(queue.get_nowait())
            lines = []
            for event in burst:
                if event.storage == info.storage:
                    lines += [line(kind, obj) for kind, obj in _translate(event, info, matches)]
            await send_all(lines)
        return resp
    except (ConnectionResetError, aiohttp.ClientConnectionResetError):
        return web.Response(status=200)
    finally:
        api.store.unsubscribe(queue)


# At most this many events in one write: a client far behind still gets them in steady pieces.
_BURST = 500

# (id of the stored object, event type, apiVersion, kind, metadata only) -> (the object, its
# encoded line). Holding the object keeps its id from being reused while the entry lives; the
# cache is bounded and cleared when full (every watcher of an event encodes it within the burst
# it arrives in, so older entries are rarely asked for again).
_ENCODED: dict[tuple[int, str, str, str, bool], tuple[Obj, bytes]] = {}
_ENCODED_MAX = 20000


def _remember_bound() -> None:
    if len(_ENCODED) > _ENCODED_MAX:
        _ENCODED.clear()


def _translate(ev: WatchEvent, info: ResourceInfo, matches: Any) -> list[tuple[str, Obj]]:
    """A stored change as the watcher sees it through its selectors."""
    if ev.storage != info.storage:
        return []
    new_ok = matches(ev.obj)
    if ev.type == "ADDED":
        return [("ADDED", ev.obj)] if new_ok else []
    if ev.type == "DELETED":
        return [("DELETED", ev.obj)] if new_ok else []
    old_ok = matches(ev.old)
    if old_ok and new_ok:
        return [("MODIFIED", ev.obj)]
    if new_ok:
        return [("ADDED", ev.obj)]
    if old_ok:
        return [("DELETED", ev.obj)]
    return []


def _bookmark(info: ResourceInfo, rv: int, initial_end: bool = False) -> Obj:
    meta: dict[str, Any] = {"resourceVersion": str(rv)}
    if initial_end:
        meta["annotations"] = {"k8s.io/initial-events-end": "true"}
    return {"kind": info.kind, "apiVersion": info.api_version, "metadata": meta}
