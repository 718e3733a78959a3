"""Prometheus metrics of one coordinator, in a registry of its own (several coordinators can
live in one test process). ``GET /metrics`` serves them without a token: nothing here is secret."""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "CoordinatorMetrics"]


class CoordinatorMetrics:
    def __init__(self, last_report_time: Callable[[], float | None]) -> None:
        self.registry = CollectorRegistry()
        self.iteration = Gauge(
            "trainjob_coordinator_iteration",
            "Highest iteration every rank of this attempt has reported",
            registry=self.registry,
        )
        self.seconds_since_last_report = Gauge(
            "trainjob_coordinator_seconds_since_last_report",
            "Seconds since any rank last reported (0 before the first report)",
            registry=self.registry,
        )

        def since_last() -> float:
            last = last_report_time()
            return 0.0 if last is None else max(0.0, time.time() - last)

        self.seconds_since_last_report.set_function(since_last)
        self.rank_iteration = Gauge(
            "trainjob_coordinator_rank_iteration",
            "Last iteration each rank reported",
            ["rank"],
            registry=self.registry,
        )
        self.checkpoints_committed = Counter(
            "trainjob_coordinator_checkpoints_committed",
            "Checkpoints this coordinator committed",
            registry=self.registry,
        )
        self.checkpoint_bytes_committed = Counter(
            "trainjob_coordinator_checkpoint_bytes_committed",
            "Bytes of the checkpoints this coordinator committed",
            registry=self.registry,
        )
        self.checkpoints_retained = Gauge(
            "trainjob_coordinator_checkpoints_retained",
            "Committed checkpoints currently kept in storage",
            registry=self.registry,
        )
        self.reports_accepted = Counter(
            "trainjob_coordinator_reports_accepted",
            "Reports accepted (duplicates included)",
            registry=self.registry,
        )
        self.reports_refused = Counter(
            "trainjob_coordinator_reports_refused",
            "Requests refused, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.commit_duration = Histogram(
            "trainjob_coordinator_commit_duration_seconds",
            "Time to verify a checkpoint's files and write its manifest",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=self.registry,
        )
        self.storage_available = Gauge(
            "trainjob_coordinator_storage_available",
            "1 when the last storage operation succeeded, 0 while storage is unavailable",
            registry=self.registry,
        )
        self.storage_available.set(1)

    def render(self) -> bytes:
        return generate_latest(self.registry)
