"""State file: every object, the resourceVersion counter and the server's keys, so a restart keeps
the cluster.

Two files: the snapshot (`<state file>`, rewritten atomically by temporary file + rename, at most
about once a second while things change) and its journal (`<state file>.journal`, one JSON line
per change since the snapshot, appended before the change is answered). Loading replays the
journal over the snapshot, so every write the server has answered survives its restart, SIGKILL
included. Nothing is fsynced: a power cut may lose the last writes (see the node README).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from .store import Obj, StorageKey, Store, WatchEvent

log = logging.getLogger(__name__)

FORMAT = 1


@dataclass
class State:
    rv: int
    objects: list[tuple[StorageKey, Obj]]
    signing_key: bytes
    admin_token: str


def journal_path(path: Path) -> Path:
    return path.with_name(path.name + ".journal")


def load(path: Path) -> State | None:
    if not path.exists():
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    rv = int(data["resourceVersion"])
    objects: dict[tuple[StorageKey, str, str], Obj] = {}
    for o in data.get("objects", []):
        objects[_key((o["group"], o["resource"]), o["object"])] = o["object"]
    rv = _replay(journal_path(path), rv, objects)
    return State(
        rv=rv,
        objects=[(key[0], obj) for key, obj in objects.items()],
        signing_key=base64.b64decode(data["signingKey"]),
        admin_token=data["adminToken"],
    )


def _key(storage: StorageKey, obj: Obj) -> tuple[StorageKey, str, str]:
    meta = obj["metadata"]
    return storage, meta.get("namespace", ""), meta["name"]


def _replay(journal: Path, rv: int, objects: dict[tuple[StorageKey, str, str], Obj]) -> int:
    """Apply the journal's changes newer than the snapshot (older ones are in it already: the
    server died between writing a snapshot and emptying the journal). Returns the last rv."""
    try:
        lines = journal.read_bytes().splitlines()
    except FileNotFoundError:
        return rv
    for number, line in enumerate(lines):
        try:
            entry = json.loads(line)
        except ValueError:
            # Only the last line can be torn (the process died in the middle of appending it);
            # that change was never answered.
            if number == len(lines) - 1:
                log.warning("%s: ignoring a torn last line", journal)
                break
            raise
        if int(entry["rv"]) <= rv:
            continue
        obj = entry["object"]
        key = _key((entry["group"], entry["resource"]), obj)
        if entry["type"] == "DELETED":
            objects.pop(key, None)
        else:
            objects[key] = obj
        rv = int(entry["rv"])
    return rv


def save(path: Path, store: Store, signing_key: bytes, admin_token: str) -> None:
    data = {
        "format": FORMAT,
        "resourceVersion": store.rv,
        "signingKey": base64.b64encode(signing_key).decode(),
        "adminToken": admin_token,
        "objects": [{"group": s[0], "resource": s[1], "object": o} for s, o in store.iter_all()],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    # rename is atomic: a reader (or a crash mid-write) sees the old file or the new one. No fsync:
    # it can stall the event loop for seconds on a busy disk, and a dev cluster does not need to
    # survive a power cut.
    with open(tmp, "w") as f:
        json.dump(data, f, separators=(",", ":"))
    tmp.replace(path)
    with contextlib.suppress(OSError):
        path.chmod(0o600)


class Saver:
    """Appends every change to the journal as it happens (before the request that made it is
    answered: listeners run inside the store's write), and rewrites the snapshot at most every
    `delay` seconds after a change, emptying the journal; and once at stop.

    Created when the server starts: it writes a snapshot of what the server has at that moment.
    """

    def __init__(
        self, path: Path, store: Store, signing_key: bytes, admin_token: str, delay: float = 1.0
    ) -> None:
        self.path = path
        self.store = store
        self.signing_key = signing_key
        self.admin_token = admin_token
        self.delay = delay
        self._pending: asyncio.TimerHandle | None = None
        self._dirty = False
        save(path, store, signing_key, admin_token)
        # Unbuffered: each change is one write(2), in the kernel before the response goes out, so
        # it survives the process being killed.
        self._journal: IO[bytes] | None = open(journal_path(path), "wb", buffering=0)  # noqa: SIM115
        with contextlib.suppress(OSError):
            journal_path(path).chmod(0o600)
        store.listeners.append(self._on_event)

    def _on_event(self, event: WatchEvent) -> None:
        if self._journal is not None:
            entry = {
                "rv": event.rv,
                "type": event.type,
                "group": event.storage[0],
                "resource": event.storage[1],
                "object": event.obj,
            }
            self._journal.write(json.dumps(entry, separators=(",", ":")).encode() + b"\n")
        self._dirty = True
        if self._pending is None:
            loop = asyncio.get_running_loop()
            self._pending = loop.call_later(self.delay, self._flush)

    def _flush(self) -> None:
        self._pending = None
        self._dirty = False
        save(self.path, self.store, self.signing_key, self.admin_token)
        # After the snapshot's rename: dying in between leaves entries the snapshot already has,
        # which loading skips by their resourceVersion.
        if self._journal is not None:
            self._journal.truncate(0)
            self._journal.seek(0)

    def flush(self) -> None:
        """Write the snapshot now if anything changed (and drop a pending debounced write)."""
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        if self._dirty:
            self._flush()

    def close(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        if self._on_event in self.store.listeners:
            self.store.listeners.remove(self._on_event)
        if self._dirty:
            self._flush()
        if self._journal is not None:
            self._journal.close()
            self._journal = None
