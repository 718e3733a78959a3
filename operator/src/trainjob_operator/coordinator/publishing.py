"""Coalescing status publisher: reports change the status many times a second, the API server
gets at most about one patch per second per job, and none when nothing changed
(docs/architecture.md, "From `report()` to the status patch").

Ordinary changes (a report moved the iteration) are published ``interval`` seconds after the
later of the last publish and the change, so a burst of reports becomes one patch. Urgent
changes (a checkpoint was committed, something went wrong) go out as soon as ``interval`` has
passed since the last publish: immediately when the publisher was idle, coalesced otherwise.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from trainjob_operator.coordinator.sinks import StatusSink

log = logging.getLogger(__name__)


def merge_patch_between(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The RFC 7386 merge patch that turns ``old`` into ``new`` (``None`` values count as absent)."""
    patch: dict[str, Any] = {}
    for key, value in new.items():
        before = old.get(key)
        if value is None:
            if before is not None:
                patch[key] = None
        elif isinstance(value, dict) and isinstance(before, dict):
            nested = merge_patch_between(before, value)
            if nested:
                patch[key] = nested
        elif value != before:
            patch[key] = value
    for key, before in old.items():
        if key not in new and before is not None:
            patch[key] = None
    return patch


class StatusPublisher:
    def __init__(
        self,
        sink: StatusSink,
        build_status: Callable[[], dict[str, Any]],
        *,
        interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        observe: Callable[[dict[str, Any] | None], None] | None = None,
        cleared_at_start: tuple[str, ...] = (),
    ) -> None:
        self.sink = sink
        self.build_status = build_status
        # Given the job's whole status as a publish's answer brought it (the operator's notice).
        self.observe = observe
        self.last_seen_at = float("-inf")
        self.interval = interval
        self.clock = clock
        # What the API server has of our fields, as far as this process knows. A field in
        # `cleared_at_start` is taken to be there (an earlier coordinator's, of an earlier
        # attempt): the first publish deletes it unless this process has a value for it by then,
        # so that a stale estimate never outlives the process that made it.
        self.published: dict[str, Any] = {name: {} for name in cleared_at_start}
        self.publishes = 0
        self.last_error: str | None = None
        self._last_publish = float("-inf")
        self._dirty_since: float | None = None
        self._urgent = False
        self._wakeup = asyncio.Event()
        self._lock = asyncio.Lock()

    def changed(self, *, urgent: bool = False) -> None:
        # Called for every report: wake the loop only when the due time moves (clean -> dirty,
        # or ordinary -> urgent). A further ordinary change leaves it where it is, and waking
        # the loop for it would cost a timer and a task per report.
        if self._dirty_since is None:
            self._dirty_since = self.clock()
        elif self._urgent or not urgent:
            return
        self._urgent = self._urgent or urgent
        self._wakeup.set()

    @property
    def up_to_date(self) -> bool:
        return self._dirty_since is None and not self._lock.locked()

    def _due(self) -> float:
        assert self._dirty_since is not None
        if self._urgent:
            return self._last_publish + self.interval
        return max(self._last_publish, self._dirty_since) + self.interval

    async def run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._dirty_since is not None:
                wait = self._due() - self.clock()
                if wait > 0:
                    try:
                        # asyncio.timeout, not wait_for: on Python 3.11 wait_for returns the
                        # result and drops a cancellation that arrives as the event is set,
                        # and this loop would then never stop.
                        async with asyncio.timeout(wait):
                            await self._wakeup.wait()
                        self._wakeup.clear()
                        continue  # something changed (maybe urgent): recompute when due
                    except TimeoutError:
                        pass
                await self.publish_now()

    async def publish_now(self) -> None:
        """Publish what changed since the last publish, now (also used at shutdown)."""
        async with self._lock:
            self._dirty_since = None
            self._urgent = False
            status = self.build_status()
            patch = merge_patch_between(self.published, status)
            self._last_publish = self.clock()
            if not patch:
                return
            try:
                seen = await self.sink.publish(patch)
            except Exception as exc:
                # Kept dirty: retried after the interval, with whatever changed meanwhile.
                self.last_error = f"publishing the status failed: {exc}"
                log.warning("%s", self.last_error)
                self.changed()
                return
            self.last_error = None
            self.published = status
            self.publishes += 1
            if seen is not None and self.observe is not None:
                self.last_seen_at = self.clock()
                self.observe(seen)
