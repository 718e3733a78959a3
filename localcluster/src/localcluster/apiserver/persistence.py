"""State file: every object, the resourceVersion counter and the server's keys, written atomically
(temporary file + rename) and debounced, so a restart keeps the cluster."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .store import Obj, StorageKey, Store, WatchEvent

FORMAT = 1


@dataclass
class State:
    rv: int
    objects: list[tuple[StorageKey, Obj]]
    signing_key: bytes
    admin_token: str


def load(path: Path) -> State | None:
    if not path.exists():
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    objects = [((o["group"], o["resource"]), o["object"]) for o in data.get("objects", [])]
    return State(
        rv=int(data["resourceVersion"]),
        objects=objects,
        signing_key=base64.b64decode(data["signingKey"]),
        admin_token=data["adminToken"],
    )


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
    """Writes the state file at most every `delay` seconds after a change, and once at stop."""

    def __init__(
        self, path: Path, store: Store, signing_key: bytes, admin_token: str, delay: float = 0.2
    ) -> None:
        self.path = path
        self.store = store
        self.signing_key = signing_key
        self.admin_token = admin_token
        self.delay = delay
        self._pending: asyncio.TimerHandle | None = None
        self._dirty = False
        store.listeners.append(self._on_event)

    def _on_event(self, event: WatchEvent) -> None:
        self._dirty = True
        if self._pending is None:
            loop = asyncio.get_running_loop()
            self._pending = loop.call_later(self.delay, self._flush)

    def _flush(self) -> None:
        self._pending = None
        self._dirty = False
        save(self.path, self.store, self.signing_key, self.admin_token)

    def flush(self) -> None:
        """Write now if anything changed (and drop a pending debounced write)."""
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
