"""The bounded FIFO between ``report()`` and the sending thread, built so that the training loop
and the sender disturb each other as little as the GIL allows.

``report()`` runs in the training loop and must return in microseconds; the sender needs the GIL
for every step of its work (encoding, HTTP), and each time it wakes while the loop computes it
takes the GIL from the loop. So:

- putting a report is an append to a deque: no lock, no wake-up, unless the sender is idle (then
  one ``Event.set``), the item is urgent (a checkpoint report, the finalize), or the outbox is
  filling up;
- the sender, once woken, lingers (``Event.wait(linger)``, the GIL released) and then takes
  everything that accumulated in one go: one request per linger period, however often the loop
  reports, instead of one per report.

Full (``capacity`` items): ``put`` blocks until the sender takes some, as ``queue.Queue`` would.
One producer at a time is assumed for the ordering guarantee (the session's lock provides it);
one consumer (the sending thread).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class OutboxFull(Exception):
    """``put`` with a timeout found the outbox still full when it expired."""


class Outbox(Generic[T]):
    def __init__(self, capacity: int, *, on_full: Callable[[], None] = lambda: None) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self._on_full = on_full  # called before a put waits for room (to say why it waits)
        self._items: deque[T] = deque()
        self._wake = threading.Event()
        # Set by the sender while it waits for the first item: the next put wakes it.
        self._idle = False
        # Set by a put that should not wait out the linger (urgent, or the outbox half full).
        self._flush_now = False
        self._room = threading.Condition(threading.Lock())
        self._waiting_for_room = 0

    def __len__(self) -> int:
        return len(self._items)

    def snapshot(self) -> list[T]:
        """The items waiting, oldest first (a copy)."""
        return list(self._items)

    def put(self, item: T, *, urgent: bool = False, timeout: float | None = None) -> None:
        """Append ``item``; blocks while the outbox is full (``OutboxFull`` after ``timeout``)."""
        if len(self._items) >= self.capacity:
            self._on_full()
            self._wait_for_room(timeout)
        self._items.append(item)
        if urgent or len(self._items) * 2 >= self.capacity:
            # Set already while the sender is busy: it looks at the flag before lingering. An
            # idle sender is woken whatever the flag says: an urgent put between its reset of
            # the flag and its taking of the items leaves the flag set with nothing to take.
            if self._idle or not self._flush_now:
                self._flush_now = True
                self._wake.set()
        elif self._idle:
            self._wake.set()

    def _wait_for_room(self, timeout: float | None) -> None:
        with self._room:
            self._waiting_for_room += 1
            try:
                self._flush_now = True
                self._wake.set()
                if not self._room.wait_for(lambda: len(self._items) < self.capacity, timeout):
                    raise OutboxFull(f"{len(self._items)} items are waiting to be sent")
            finally:
                self._waiting_for_room -= 1

    def take(self, linger: float, limit: int) -> list[T]:
        """The sender's side: wait for at least one item, then up to ``linger`` seconds more
        (less when a put asks to flush now), and return up to ``limit`` items, oldest first."""
        self._wake.clear()
        self._idle = True
        while not self._items:
            self._wake.wait()
            self._wake.clear()
        self._idle = False
        if linger > 0 and not self._flush_now:
            self._wake.clear()
            if not self._flush_now:
                self._wake.wait(linger)
        self._flush_now = False
        taken = [self._items.popleft() for _ in range(min(limit, len(self._items)))]
        if self._items:
            self._flush_now = True  # more than one batch waits: no linger before the next
        if self._waiting_for_room:
            with self._room:
                self._room.notify_all()
        return taken
