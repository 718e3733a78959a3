"""Per-job wake-up signals: a watch event on a job or one of its pods wakes that job's daemon."""

from __future__ import annotations

import asyncio
import contextlib

JobKey = tuple[str, str]  # (namespace, name)


class Wakers:
    """One asyncio.Event per job; `wait` returns on a wake-up or when the timeout passes."""

    def __init__(self) -> None:
        self._events: dict[JobKey, asyncio.Event] = {}

    def _event(self, key: JobKey) -> asyncio.Event:
        return self._events.setdefault(key, asyncio.Event())

    def wake(self, key: JobKey) -> None:
        self._event(key).set()

    async def wait(self, key: JobKey, seconds: float | None) -> None:
        """Until the job is woken, or `seconds` pass (None: only a wake-up ends the wait)."""
        event = self._event(key)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await event.wait()
        event.clear()

    def forget(self, key: JobKey) -> None:
        self._events.pop(key, None)
