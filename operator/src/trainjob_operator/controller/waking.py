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


class JobsOnNodes:
    """Which jobs have a pod bound to each node, kept from the pod events, so that a Node's
    event wakes those jobs without a walk over every pod of every job (at 8000 pods on 80 nodes,
    each reporting its status every few seconds, that walk was the operator's largest own cost)."""

    def __init__(self) -> None:
        self._where: dict[tuple[str, str], tuple[str, JobKey]] = {}  # (namespace, pod) -> (node, job)
        self._jobs: dict[str, dict[JobKey, int]] = {}  # node -> job -> how many of its pods are there

    def pod_event(self, namespace: str, pod: str, job: JobKey, node: str | None, gone: bool) -> None:
        """A pod's latest state: bound to `node` (None: not bound), or `gone` (deleted)."""
        key = (namespace, pod)
        place = None if gone or not node else (node, job)
        before = self._where.get(key)
        if before == place:
            return
        if before is not None:
            counts = self._jobs[before[0]]
            counts[before[1]] -= 1
            if not counts[before[1]]:
                del counts[before[1]]
            if not counts:
                del self._jobs[before[0]]
            del self._where[key]
        if place is not None:
            self._where[key] = place
            counts = self._jobs.setdefault(place[0], {})
            counts[place[1]] = counts.get(place[1], 0) + 1

    def jobs_on(self, node: str) -> list[JobKey]:
        return sorted(self._jobs.get(node, {}))
