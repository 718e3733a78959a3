"""The metric history: one JSON line per job iteration, in ``metrics/attempt-<a>/part-<n>.jsonl``.

The TrainJob status holds only the latest metrics (an object in etcd has a size limit), so the
full history goes to storage. Object stores cannot append, so lines are buffered and each flush
writes the next part; a restarted coordinator continues with the part after the last one.
A line is rank 0's metrics at an iteration every rank has reached::

    {"iteration": 12, "attempt": 0, "time": "2025-01-01T00:00:00.000Z", "metrics": {"loss": 0.3}}
"""

from __future__ import annotations

import json
import logging
import re
from collections import deque
from dataclasses import dataclass
from typing import Any

from trainjob_operator.coordinator.committing import rfc3339
from worker_sdk.protocol import MetricValue, job_prefix, metrics_part_key
from worker_sdk.storage import Storage, join_key

log = logging.getLogger(__name__)

_PART_NAME = re.compile(r"^part-(\d+)\.jsonl$")


def history_dir(namespace: str, job: str, attempt: int) -> str:
    return join_key(job_prefix(namespace, job), "metrics", f"attempt-{attempt}")


def part_number(key: str) -> int | None:
    match = _PART_NAME.match(key.rsplit("/", 1)[-1])
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class HistoryPart:
    key: str
    lines: tuple[str, ...]


class MetricHistory:
    """A bounded buffer of history lines and the number of the next part to write.

    A flush takes the buffered lines as one part (:meth:`take_part`) and writes it; if writing
    fails, :meth:`put_back` returns them so nothing is lost while storage is down. Past
    ``max_buffered_lines`` the oldest lines are dropped (and counted): memory stays bounded.
    """

    def __init__(
        self,
        namespace: str,
        job: str,
        attempt: int,
        *,
        next_part: int = 0,
        lines_per_part: int = 1000,
        max_buffered_lines: int = 100_000,
    ) -> None:
        self.namespace = namespace
        self.job = job
        self.attempt = attempt
        self.next_part = next_part
        self.lines_per_part = lines_per_part
        self._buffer: deque[str] = deque(maxlen=max_buffered_lines)
        self.dropped_lines = 0

    def add(self, iteration: int, time: float, metrics: dict[str, MetricValue]) -> None:
        if len(self._buffer) == self._buffer.maxlen:
            self.dropped_lines += 1
        line: dict[str, Any] = {
            "iteration": iteration,
            "attempt": self.attempt,
            "time": rfc3339(time),
            "metrics": metrics,
        }
        self._buffer.append(json.dumps(line, separators=(",", ":")))

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    @property
    def part_is_full(self) -> bool:
        return len(self._buffer) >= self.lines_per_part

    def take_part(self) -> HistoryPart | None:
        if not self._buffer:
            return None
        count = min(len(self._buffer), self.lines_per_part)
        lines = tuple(self._buffer.popleft() for _ in range(count))
        part = HistoryPart(metrics_part_key(self.namespace, self.job, self.attempt, self.next_part), lines)
        self.next_part += 1
        return part

    def put_back(self, part: HistoryPart) -> None:
        """A part that could not be written: its lines go back to the front, its number is reused."""
        self._buffer.extendleft(reversed(part.lines))
        self.next_part -= 1


def write_part(storage: Storage, part: HistoryPart) -> None:
    storage.put_bytes(part.key, ("\n".join(part.lines) + "\n").encode())


def read_last_line(storage: Storage, key: str) -> dict[str, Any] | None:
    """The last history line of a part, or None when it is empty or unreadable."""
    data = storage.get_bytes(key)
    if not data:
        return None
    for raw in reversed(data.decode(errors="replace").splitlines()):
        try:
            line = json.loads(raw)
        except json.JSONDecodeError:
            continue
        if isinstance(line, dict):
            return line
    return None
