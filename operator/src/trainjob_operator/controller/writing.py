"""The operator's write threads: a fixed set of threads taking queued API writes by lane.

When many jobs arrive at once, every write thread is busy and the writes queue. A first-come
queue (a ``ThreadPoolExecutor``'s) interleaves the first jobs' later steps (gate removals,
status patches) with the creation of the last jobs' pods, and each of those steps sets off more
work for the same API server (the scheduler's bindings, the kubelets' statuses), so the last gang
waits for the progress of the first. Here creations go first: measured at 1000 jobs x 8 workers
submitted at once (``bench/RESULTS.md``, goal 2, "Round six"), every pod existed 30-48% sooner
(28-42 s instead of 53-73 s); the time until every job was done did not move measurably.

Not strictly first: while gate removals and status patches wait, one write in every
``progress_share`` goes to them, so a steady stream of new jobs cannot hold the running ones back
indefinitely (as the API server's Priority and Fairness keeps one flow from starving another).

The standard library has no executor with priorities (``concurrent.futures`` serves first come,
first served), hence this small one.
"""

from __future__ import annotations

import enum
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

_T = TypeVar("_T")

# While progress waits, one write in this many goes to it. Measured at 1000 x 8 (goal 2, "Round
# six"): with 8, every pod existed after 49.5-56.1 s against 67.2-73.3 s first come, first
# served, in the same hour; with 64, after 28.0-32.0 s, as with creations strictly first.
PROGRESS_SHARE = 64


class Lane(enum.Enum):
    """Which queued writes go out first while every write thread is busy."""

    # What brings a gang into existence: its children, its pods, and the status patch of a pass
    # that creates them (it records what the creations are about to do).
    CREATE = "create"
    # What moves the gangs that exist along: gate removals, deletions, status patches, annotations.
    PROGRESS = "progress"


_Item = tuple[Callable[[], Any], "Future[Any]"]


class LanedWriter:
    """``threads`` threads taking calls creations first, oldest first within a lane."""

    def __init__(self, threads: int, name: str, progress_share: int = PROGRESS_SHARE) -> None:
        if threads < 1:
            raise ValueError("threads must be >= 1")
        if progress_share < 1:
            raise ValueError("progress_share must be >= 1")
        self._share = progress_share
        self._lanes: dict[Lane, deque[_Item]] = {lane: deque() for lane in Lane}
        self._ready = threading.Condition(threading.Lock())
        # Creations taken in a row while progress waited.
        self._creations_ahead = 0
        self._closing = False
        for index in range(threads):
            threading.Thread(target=self._work, name=f"{name}-{index}", daemon=True).start()

    def submit(self, lane: Lane, call: Callable[[], _T]) -> Future[_T]:
        """Queue ``call`` in ``lane``; its future gets its result or its exception."""
        future: Future[_T] = Future()
        with self._ready:
            if self._closing:
                raise RuntimeError("cannot queue a write after shutdown")
            self._lanes[lane].append((call, future))
            self._ready.notify()
        return future

    def queued(self) -> dict[Lane, int]:
        """How many calls wait in each lane (a snapshot)."""
        with self._ready:
            return {lane: len(items) for lane, items in self._lanes.items()}

    def shutdown(self) -> None:
        """End each thread once nothing is queued. Does not wait for that: a write to an API
        server that does not answer would hold the caller (the operator's exit) up. The threads
        are daemons, so an exit does not wait for them either."""
        with self._ready:
            self._closing = True
            self._ready.notify_all()

    def _next(self) -> _Item | None:
        """The next call to make; None once shut down and nothing is left."""
        creations, progress = self._lanes[Lane.CREATE], self._lanes[Lane.PROGRESS]
        with self._ready:
            while not creations and not progress:
                if self._closing:
                    return None
                self._ready.wait()
            if progress and (not creations or self._creations_ahead >= self._share - 1):
                self._creations_ahead = 0
                return progress.popleft()
            if progress:
                self._creations_ahead += 1
            return creations.popleft()

    def _work(self) -> None:
        while (item := self._next()) is not None:
            call, future = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = call()
            except BaseException as error:  # handed to the awaiting coroutine, as an executor does
                future.set_exception(error)
            else:
                future.set_result(result)
