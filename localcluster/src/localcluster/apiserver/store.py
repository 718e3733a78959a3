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
        # The same objects by namespace (kind -> namespace -> name -> object), kept in step with
        # `objects` by every write: a namespaced list, watch or controller pass reads one
        # namespace's objects instead of scanning every object of the kind (at 1000 namespaces of
        # 8 pods, a scan per namespaced request was most of a list's cost).
        self._by_namespace: dict[StorageKey, dict[str, dict[str, Obj]]] = {}
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
        """Copies of the objects of a kind (in one namespace, or all), in (namespace, name) order."""
        return [copy.deepcopy(o) for o in self.scan(storage, namespace)]

    def scan(self, storage: StorageKey, namespace: str | None = None) -> list[Obj]:
        """`select` without the copies, for a reader that only reads or serializes them: the
        stored objects themselves, which callers must not change (a write stores a new object)."""
        if namespace is None:
            items = self.objects.get(storage, {})
            return [items[k] for k in sorted(items)]
        named = self._by_namespace.get(storage, {}).get(namespace, {})
        return [named[n] for n in sorted(named)]

    def namespace_objects(self, storage: StorageKey, namespace: str) -> dict[str, Obj]:
        """One namespace's objects of a kind by name, unordered and not copied (callers must not
        change them); empty when there are none."""
        return self._by_namespace.get(storage, {}).get(namespace, {})

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
        """Store `obj` itself (create or replace) under a fresh resourceVersion and return it.

        The store takes the object over, without a copy: the caller built it for this write and
        neither it nor anyone else changes it (or any part of it) afterwards. Stored objects are
        immutable values: a later write stores a new object, which may share unchanged parts with
        the old one (a watch event's `old`, a list being serialized and the scheduler's and
        controllers' indices hold them). Every writer goes through `ObjectAPI.create`/`commit`,
        `deletion.delete` or `scheduler.bind_pod`, each of which writes a freshly built object;
        a deep copy here was the largest single cost of a write at 8000 pods."""
        meta = obj["metadata"]
        key = (meta.get("namespace", ""), meta["name"])
        items = self.objects.setdefault(storage, {})
        old = items.get(key)
        rv = self.next_rv()
        meta["resourceVersion"] = str(rv)
        stored = obj
        items[key] = stored
        self._by_namespace.setdefault(storage, {}).setdefault(key[0], {})[key[1]] = stored
        self.uids[meta["uid"]] = (storage, key)
        self._emit(WatchEvent(rv, "ADDED" if old is None else "MODIFIED", storage, stored, old))
        return stored

    def remove(self, storage: StorageKey, namespace: str, name: str) -> Obj | None:
        items = self.objects.get(storage, {})
        old = items.pop((namespace, name), None)
        if old is None:
            return None
        spaces = self._by_namespace[storage]
        del spaces[namespace][name]
        if not spaces[namespace]:
            del spaces[namespace]
        self.uids.pop(old["metadata"].get("uid", ""), None)
        rv = self.next_rv()
        # The last state under the deletion's resourceVersion: a new top level and metadata over
        # the old object's (immutable) parts, not a deep copy.
        gone = {**old, "metadata": {**old["metadata"], "resourceVersion": str(rv)}}
        self._emit(WatchEvent(rv, "DELETED", storage, gone, old))
        return gone

    def drop_storage(self, storage: StorageKey) -> None:
        """Forget a whole kind (its CRD went away), with DELETED events for its objects."""
        for ns, name in list(self.objects.get(storage, {})):
            self.remove(storage, ns, name)
        self.objects.pop(storage, None)
        self._by_namespace.pop(storage, None)

    def load(self, rv: int, objects: list[tuple[StorageKey, Obj]]) -> None:
        """Replace the contents (from a state file); no history survives a restart."""
        self.objects = {}
        self._by_namespace = {}
        self.uids = {}
        for storage, obj in objects:
            meta = obj["metadata"]
            key = (meta.get("namespace", ""), meta["name"])
            self.objects.setdefault(storage, {})[key] = obj
            self._by_namespace.setdefault(storage, {}).setdefault(key[0], {})[key[1]] = obj
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
