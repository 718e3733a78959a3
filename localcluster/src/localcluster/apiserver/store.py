"""Objects in memory, the global resourceVersion counter and the watch event log."""

from __future__ import annotations

import asyncio
import copy
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]
StorageKey = tuple[str, str]  # (group, resource)
ObjKey = tuple[str, str]  # (namespace or "", name)


@dataclass
class WatchEvent:
    rv: int
    type: str  # ADDED, MODIFIED, DELETED
    storage: StorageKey
    obj: Obj
    old: Obj | None


class Store:
    """Every object of every kind, one resourceVersion counter, and a bounded history of changes.

    Watches replay the history after a given resourceVersion; one older than the history is
    answered 410 Gone, as etcd compaction makes the real server answer.
    """

    def __init__(self, history: int = 10000) -> None:
        self.rv = 0
        self.compacted = 0  # every change after this rv is in `log`
        self.objects: dict[StorageKey, dict[ObjKey, Obj]] = {}
        self.log: deque[WatchEvent] = deque()
        self.history = history
        # each watch's queue, and the kind it wants (None: every kind)
        self.subscribers: dict[asyncio.Queue[WatchEvent], StorageKey | None] = {}
        self.listeners: list[Callable[[WatchEvent], None]] = []
        self.uids: dict[str, tuple[StorageKey, ObjKey]] = {}

    # -- reads ---------------------------------------------------------------
    def get(self, storage: StorageKey, namespace: str, name: str) -> Obj | None:
        obj = self.objects.get(storage, {}).get((namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    def peek(self, storage: StorageKey, namespace: str, name: str) -> Obj | None:
        """The stored object itself, not a copy: callers must not change it."""
        return self.objects.get(storage, {}).get((namespace, name))

    def select(self, storage: StorageKey, namespace: str | None = None) -> list[Obj]:
        items = self.objects.get(storage, {})
        keys = sorted(k for k in items if namespace is None or k[0] == namespace)
        return [copy.deepcopy(items[k]) for k in keys]

    def iter_all(self) -> list[tuple[StorageKey, Obj]]:
        """(storage, object) for every stored object; the objects are not copies."""
        return [(s, o) for s, items in self.objects.items() for o in items.values()]

    def by_uid(self, uid: str) -> tuple[StorageKey, Obj] | None:
        where = self.uids.get(uid)
        if where is None:
            return None
        obj = self.objects.get(where[0], {}).get(where[1])
        return (where[0], obj) if obj is not None else None

    # -- writes --------------------------------------------------------------
    def next_rv(self) -> int:
        self.rv += 1
        return self.rv

    def put(self, storage: StorageKey, obj: Obj) -> Obj:
        """Store a copy of `obj` (create or replace) under a fresh resourceVersion; returns the
        stored object itself, which callers must not change (they copy it to answer)."""
        meta = obj["metadata"]
        key = (meta.get("namespace", ""), meta["name"])
        items = self.objects.setdefault(storage, {})
        old = items.get(key)
        rv = self.next_rv()
        meta["resourceVersion"] = str(rv)
        stored = copy.deepcopy(obj)
        items[key] = stored
        self.uids[meta["uid"]] = (storage, key)
        self._emit(WatchEvent(rv, "ADDED" if old is None else "MODIFIED", storage, stored, old))
        return stored

    def remove(self, storage: StorageKey, namespace: str, name: str) -> Obj | None:
        items = self.objects.get(storage, {})
        old = items.pop((namespace, name), None)
        if old is None:
            return None
        self.uids.pop(old["metadata"].get("uid", ""), None)
        rv = self.next_rv()
        gone = copy.deepcopy(old)
        gone["metadata"]["resourceVersion"] = str(rv)
        self._emit(WatchEvent(rv, "DELETED", storage, gone, old))
        return copy.deepcopy(gone)

    def drop_storage(self, storage: StorageKey) -> None:
        """Forget a whole kind (its CRD went away), with DELETED events for its objects."""
        for ns, name in list(self.objects.get(storage, {})):
            self.remove(storage, ns, name)
        self.objects.pop(storage, None)

    def load(self, rv: int, objects: list[tuple[StorageKey, Obj]]) -> None:
        """Replace the contents (from a state file); no history survives a restart."""
        self.objects = {}
        self.uids = {}
        for storage, obj in objects:
            meta = obj["metadata"]
            key = (meta.get("namespace", ""), meta["name"])
            self.objects.setdefault(storage, {})[key] = obj
            self.uids[meta["uid"]] = (storage, key)
        self.rv = rv
        self.compacted = rv
        self.log.clear()

    # -- watch ---------------------------------------------------------------
    def _emit(self, event: WatchEvent) -> None:
        self.log.append(event)
        while len(self.log) > self.history:
            dropped = self.log.popleft()
            self.compacted = dropped.rv
        for q, storage in list(self.subscribers.items()):
            if storage is None or storage == event.storage:
                q.put_nowait(event)
        for listener in list(self.listeners):
            listener(event)

    def events_since(self, rv: int) -> list[WatchEvent] | None:
        """Events after `rv`, or None when that version is older than the history."""
        if rv < self.compacted:
            return None
        return [e for e in self.log if e.rv > rv]

    def subscribe(self, storage: StorageKey | None = None) -> asyncio.Queue[WatchEvent]:
        q: asyncio.Queue[WatchEvent] = asyncio.Queue()
        self.subscribers[q] = storage
        return q

    def unsubscribe(self, q: asyncio.Queue[WatchEvent]) -> None:
        self.subscribers.pop(q, None)
