"""The coordinator of one job attempt: reports in; committed checkpoints, history and status out.

Reports are recorded in memory at once (the HTTP answer never waits for storage). Four
background tasks do the I/O: the committer (recovery first, then commits and retention, one at
a time, in a thread), the history writer, the storage probe and the status publisher. When
storage is down, reports keep being accepted (memory bounded: pending checkpoints and history
lines are capped), commits and history writes are retried, and the state and status say what is
wrong (`status.storage`, which the operator turns into the StorageUnavailable condition).

The probe exists because during an outage the coordinator may have nothing to write: the
workers' uploads are what fail, and their reports arrive only after the upload succeeded. So
when no storage operation succeeded for `storage_probe_seconds`, it reads one absent key, once,
without the retry budget, and so notices an outage (and its end) within seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from trainjob_operator.coordinator.aggregation import Aggregator, Metrics, ReportRejected, Verdict
from trainjob_operator.coordinator.committing import (
    Committer,
    NotCommitted,
    RetentionPolicy,
    checkpoint_status,
    rfc3339,
)
from trainjob_operator.coordinator.history import MetricHistory, write_part
from trainjob_operator.coordinator.metrics import CoordinatorMetrics
from trainjob_operator.coordinator.notice import NoticeState
from trainjob_operator.coordinator.progress import RecentRate, estimate
from trainjob_operator.coordinator.publishing import StatusPublisher
from trainjob_operator.coordinator.recovery import RecoveredState, recover
from trainjob_operator.coordinator.sinks import StatusSink
from worker_sdk import _layout
from worker_sdk._contract import CoordinatorState
from worker_sdk._layout import CommittedCheckpoint
from worker_sdk.protocol import Finalize, Report
from worker_sdk.storage import Storage, StorageError, join_key

log = logging.getLogger(__name__)

_MAX_RETRY_DELAY = 30.0


@dataclass(frozen=True)
class CoordinatorConfig:
    job: str
    namespace: str
    world_size: int
    attempt: int
    retention: RetentionPolicy = field(default_factory=RetentionPolicy)
    status_interval: float = 1.0
    history_flush_seconds: float = 30.0
    history_lines_per_part: int = 1000
    # Checkpoints reported but not committed yet; past this the oldest is given up.
    max_pending_checkpoints: int = 64
    # Probe storage when no operation succeeded for this long (see the module docstring).
    storage_probe_seconds: float = 3.0
    # Read the job's status for the operator's notice this often when no publish brought it (a
    # publish's answer is the status too, so a job that reports sees a notice within about one
    # status interval).
    notice_poll_seconds: float = 5.0


class Coordinator:
    def __init__(self, config: CoordinatorConfig, storage: Storage, sink: StatusSink) -> None:
        self.config = config
        self.id = secrets.token_hex(8)
        self.storage = storage
        self.aggregator = Aggregator(config.world_size, config.attempt)
        self.committer = Committer(storage, config.namespace, config.job, config.attempt)
        self.history = MetricHistory(
            config.namespace, config.job, config.attempt, lines_per_part=config.history_lines_per_part
        )
        self.checkpoints: list[CommittedCheckpoint] = []  # committed and retained, oldest first
        self.metrics = CoordinatorMetrics(lambda: self.aggregator.last_report_time)
        self.publisher = StatusPublisher(
            sink,
            self.status,
            interval=config.status_interval,
            observe=self.observe_job_status,
            cleared_at_start=("progress",),  # an earlier attempt's ETA is not this one's
        )
        # The job's total number of iterations, as the latest report that carried it said
        # (worker_sdk.set_total_iterations), and the recent rate: status.progress.
        self.total_iterations: int | None = None
        self._rate = RecentRate()
        self.recovered = False
        self.storage_error: str | None = None
        # When storage was last seen to become (un)available (wall clock); None: not known yet.
        self.storage_since: float | None = None
        self._storage_ok_at = time.monotonic()
        self._operation_failed_at = float("-inf")  # the last failure of a real operation
        # The probe's copy tries once: it must answer within seconds, not after the retry budget.
        self._probe_storage = copy.copy(storage)
        self._probe_storage.retry_budget_seconds = 0.0
        self.commit_problems: dict[int, str] = {}  # iteration -> why it is not committed yet
        # What the history of this attempt already holds (from a previous coordinator process).
        self._history_up_to = 0
        self._recovered_iteration = 0
        self._recovered_metrics: Metrics = {}
        self._retry_at: dict[int, float] = {}
        self._retry_delay: dict[int, float] = {}
        self._to_delete: list[CommittedCheckpoint] = []
        self._history_writes = 0  # history parts taken from the buffer and not yet stored
        self._commit_wakeup = asyncio.Event()
        self._history_wakeup = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._rank_gauges: dict[int, Any] = {}
        self.notices = NoticeState()

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._commit_loop(), name="coordinator-commits"),
            asyncio.create_task(self._history_loop(), name="coordinator-history"),
            asyncio.create_task(self._probe_loop(), name="coordinator-storage-probe"),
            asyncio.create_task(self.publisher.run(), name="coordinator-status"),
            asyncio.create_task(self._notice_loop(), name="coordinator-notices"),
        ]

    async def stop(self) -> None:
        """Stop the loops (a commit in flight finishes first), flush history and status (not the
        status once the job is at a later attempt: `_superseded`)."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if not self.recovered:
            # Stopped before recovery finished: the history needs its next part number.
            try:
                self._apply_recovered(await asyncio.to_thread(recover, self.committer))
            except (StorageError, OSError, ValueError) as exc:
                log.warning("metric history not flushed: storage unavailable: %s", exc)
        if self.recovered:
            await self._flush_history()
        if await self._superseded():
            log.info(
                "the job is at a later attempt than %d: this attempt's last status is not published",
                self.config.attempt,
            )
        else:
            await self.publisher.publish_now()
        await self.publisher.sink.close()

    async def _superseded(self) -> bool:
        """Whether the job has moved on to a later attempt. The operator sets `status.attempt`
        before it stops this attempt's pods, so at our SIGTERM a restart is already there to
        read; a last publish would then put this attempt's iteration and metrics (reported but
        never committed) under the new attempt, until its coordinator publishes the iteration it
        resumed from: an iteration that went back within an attempt. Storage, not this status,
        is what the next attempt recovers from, so nothing is lost by staying silent."""
        try:
            status = await self.publisher.sink.read()
        except Exception as exc:  # any sink, any failure: publish as before rather than lose it
            log.warning("could not read the job's status before the last publish: %s", exc)
            return False
        attempt = (status or {}).get("attempt")
        return isinstance(attempt, int) and attempt > self.config.attempt

    # -- input ------------------------------------------------------------------------------
    def accept_report(self, report: Report) -> Verdict:
        """Record one report, or raise :class:`ReportRejected` having recorded nothing."""
        outcome = self.accept_reports((report,))[0]
        if isinstance(outcome, ReportRejected):
            raise outcome
        return outcome

    def accept_reports(self, reports: Sequence[Report]) -> list[Verdict | ReportRejected]:
        """Record a batch's reports in order, each judged as if it came alone: a refused one
        records nothing and does not stop the others. The bookkeeping after them (history,
        pending limit, status wake-up) runs once per batch: that is what batching saves."""
        outcomes: list[Verdict | ReportRejected] = []
        now = time.time()
        for report in reports:
            try:
                verdict = self.aggregator.add_report(report, now)
            except ReportRejected as exc:
                self.metrics.reports_refused.labels(exc.reason).inc()
                outcomes.append(exc)
                continue
            self.metrics.reports_accepted.inc()
            if report.total_iterations is not None:
                self.total_iterations = report.total_iterations
            if verdict is Verdict.ACCEPTED:
                self._rank_gauge(report.rank).set(report.iteration)
                if not self.notices.asked and self.notices.reported(report.rank, report.iteration):
                    self._notice_ignored()
            outcomes.append(verdict)
        if len(outcomes) > sum(isinstance(o, ReportRejected) for o in outcomes):
            self._limit_pending()
            self._after_progress()
        return outcomes

    def _rank_gauge(self, rank: int) -> Any:
        gauge = self._rank_gauges.get(rank)
        if gauge is None:  # labels() costs more than the rest of recording a report: once per rank
            gauge = self._rank_gauges[rank] = self.metrics.rank_iteration.labels(str(rank))
        return gauge

    def accept_finalize(self, finalize: Finalize) -> None:
        try:
            self.aggregator.add_finalize(finalize, time.time())
        except ReportRejected as exc:
            self.metrics.reports_refused.labels(exc.reason).inc()
            raise
        self._after_progress()
        if self.aggregator.report_count_mismatch:
            log.warning("%s", self.aggregator.report_count_mismatch.message)
        if self.aggregator.all_finalized:
            self._history_wakeup.set()  # settle quickly: the SDK's rank 0 waits for it
            self.publisher.changed(urgent=True)

    def refused(self, reason: str) -> None:
        """Count a request refused before it reached the aggregator (token, body, JSON)."""
        self.metrics.reports_refused.labels(reason).inc()

    def _after_progress(self) -> None:
        for iteration, at, metrics in self.aggregator.take_completed_metrics():
            if iteration > self._history_up_to:
                self.history.add(iteration, at, metrics)
                self._history_up_to = iteration
        if self.history.part_is_full:
            self._history_wakeup.set()
        self.metrics.iteration.set(self.iteration)
        if self.aggregator.iteration:
            self._rate.observe(self.aggregator.iteration, time.monotonic())
        if self.aggregator.pending:
            self._commit_wakeup.set()
        self.publisher.changed()

    def _limit_pending(self) -> None:
        pending = self.aggregator.pending
        while len(pending) > self.config.max_pending_checkpoints:
            oldest = min(pending)
            log.warning("giving up checkpoint at iteration %d: too many checkpoints wait to commit", oldest)
            self.aggregator.drop_pending(oldest)
            self.commit_problems.pop(oldest, None)

    # -- what the job looks like --------------------------------------------------------------
    @property
    def iteration(self) -> int:
        """The job iteration; after a restart, where the last coordinator's history left off
        until every rank has reported here again."""
        return max(self.aggregator.iteration, self._recovered_iteration)

    @property
    def job_metrics(self) -> Metrics:
        if self.aggregator.iteration and self.aggregator.iteration >= self._recovered_iteration:
            return self.aggregator.metrics
        return self._recovered_metrics

    @property
    def progress(self) -> dict[str, Any] | None:
        """`status.progress` (`coordinator.progress`); None until a report told the total."""
        if self.total_iterations is None:
            return None
        return estimate(
            self.iteration,
            self.total_iterations,
            self._rate.per_second(),
            finished=self.aggregator.all_finalized,
        ).to_wire()

    @property
    def latest_checkpoint(self) -> CommittedCheckpoint | None:
        return self.checkpoints[-1] if self.checkpoints else None

    @property
    def best_checkpoint(self) -> CommittedCheckpoint | None:
        return self.config.retention.best(self.checkpoints)

    @property
    def message(self) -> str | None:
        """What is wrong, for people: None when nothing is (`GET /v1/state`)."""
        problems = []
        if self.storage_error:
            problems.append(f"storage unavailable: {self.storage_error}")
        if self.aggregator.report_count_mismatch:
            problems.append(self.aggregator.report_count_mismatch.message)
        if self.problems:
            problems.append(self.problems)
        return "; ".join(problems) if problems else None

    @property
    def problems(self) -> str | None:
        """`status.coordinatorMessage`: what is wrong that no typed field says (storage and the
        report counts have their own), for people; None when nothing is."""
        problems = list(self.aggregator.conflicts)
        problems.extend(
            reason
            for iteration, reason in sorted(self.commit_problems.items())
            if iteration in self.aggregator.pending
        )
        if self.history.dropped_lines:
            problems.append(
                f"{self.history.dropped_lines} metric history lines dropped while storage was down"
            )
        return "; ".join(problems) if problems else None

    @property
    def settled(self) -> bool:
        return (
            self.aggregator.all_finalized
            and not self.aggregator.pending
            and not self._to_delete  # retention's deletions too: the sidecar stops once settled
            and self.recovered
            and self.history.buffered == 0
            and self._history_writes == 0  # a part being written is no longer buffered
            and self.publisher.up_to_date
        )

    def _checkpoint_list(self) -> list[dict[str, Any]]:
        """The retained checkpoints; `score` only when there is one (the CRD types it a number)."""
        attribute = self.config.retention.score_attribute
        listed = []
        for checkpoint in self.checkpoints:
            entry: dict[str, Any] = {"uri": checkpoint.uri, "iteration": checkpoint.iteration}
            score = checkpoint.score(attribute)
            if score is not None:
                entry["score"] = score
            listed.append(entry)
        return listed

    # -- disruption notices ------------------------------------------------------------------
    def should_stop(self, rank: int, iteration: int) -> dict[str, Any]:
        """``POST /v1/should-stop``: whether `rank`, having reported `iteration`, stops now."""
        if not 0 <= rank < self.config.world_size:
            raise ReportRejected(
                400, "bad_rank", f"rank {rank} is not in the world of {self.config.world_size}"
            )
        before = self.notices.stop_iteration
        answer = self.notices.should_stop(iteration, rank)
        if self.notices.stop_iteration != before:
            log.info(
                "notice %s: every rank stops after iteration %d",
                self.notices.notice,
                self.notices.stop_iteration,
            )
            self.publisher.changed(urgent=True)
        return answer

    def rank_signalled(self, rank: int, deadline: str | None) -> None:
        """``POST /v1/notice``: a rank's trainer got SIGTERM; the whole gang is told to stop."""
        if not 0 <= rank < self.config.world_size:
            raise ReportRejected(
                400, "bad_rank", f"rank {rank} is not in the world of {self.config.world_size}"
            )
        if self.notices.rank_signalled(rank, deadline):
            log.warning("rank %d got SIGTERM: telling every rank to stop", rank)
        if self.notices.judge_sigterm(rank):
            self._notice_ignored()

    def _notice_ignored(self) -> None:
        """The gang will not act on the notice: the operator need not wait out the grace."""
        log.warning("the program does not act on the notice (%s): it stops now", self.notices.ignored)
        self.publisher.changed(urgent=True)

    def observe_job_status(self, status: dict[str, Any] | None) -> None:
        """The job's status as the API server has it: take the operator's notice for this attempt."""
        notice = (status or {}).get("notice")
        fresh = isinstance(notice, dict) and notice.get("attempt") == self.config.attempt
        if fresh and isinstance(notice, dict) and self.notices.raise_notice(notice):
            log.warning(
                "disruption notice from the operator: %s", notice.get("message") or notice.get("reason")
            )
            if self.notices.judge():
                self._notice_ignored()

    async def _notice_loop(self) -> None:
        sink = self.publisher.sink
        while True:
            await asyncio.sleep(self.config.notice_poll_seconds)
            if self.notices.notice is not None:
                continue
            if time.monotonic() - self.publisher.last_seen_at < self.config.notice_poll_seconds:
                continue
            try:
                self.observe_job_status(await sink.read())
            except Exception as exc:  # the next poll tries again; reports go on meanwhile
                log.info("cannot read the job's status for notices: %s", exc)

    def status(self) -> dict[str, Any]:
        """The coordinator-owned TrainJob status fields (None: absent), exactly the wire names of
        `api.types.COORDINATOR_STATUS_FIELDS`: the operator owns every other field, `message`
        included."""
        slowest = self.aggregator.slowest_rank()
        last_report = self.aggregator.last_report_time
        latest = self.latest_checkpoint
        best = self.best_checkpoint
        mismatch = self.aggregator.report_count_mismatch
        return {
            "iteration": self.iteration,
            "metrics": self.job_metrics,
            "lastReportTime": None if last_report is None else rfc3339(last_report),
            "latestCheckpoint": checkpoint_status(latest) if latest else None,
            "bestCheckpoint": checkpoint_status(best) if best else None,
            "checkpoints": self._checkpoint_list(),
            "slowestRank": None
            if slowest is None
            else {
                "rank": slowest[0],
                "iteration": slowest[1].last_iteration,
                "lastReportTime": rfc3339(slowest[1].last_report_time),
            },
            "storage": self._storage_status(),
            "stopAt": None
            if self.notices.stop_iteration is None
            else {"attempt": self.config.attempt, "iteration": self.notices.stop_iteration},
            "noticeIgnored": None
            if self.notices.ignored is None
            else {"attempt": self.config.attempt, "message": self.notices.ignored},
            "lastCommitTime": latest.manifest.committed_at if latest else None,
            "reportCountMismatch": mismatch.to_wire() if mismatch else None,
            "coordinatorMessage": self.problems,
            "progress": self.progress,
        }

    def _storage_status(self) -> dict[str, Any] | None:
        """`status.storage`; every field set, so that it replaces an earlier coordinator's."""
        if self.storage_since is None:
            return None
        return {
            "available": self.storage_error is None,
            "since": rfc3339(self.storage_since),
            "message": "reachable" if self.storage_error is None else self.storage_error,
        }

    def state(self) -> dict[str, Any]:
        """``GET /v1/state``: what the SDK acts on (`worker_sdk._contract.CoordinatorState`), and
        more for people and tests."""
        latest = self.latest_checkpoint
        best = self.best_checkpoint
        last_report = self.aggregator.last_report_time
        answer = CoordinatorState(
            coordinator_id=self.id, recovered=self.recovered, settled=self.settled, latest_checkpoint=None
        )
        return {
            **answer.to_json(),
            "notice": self.notices.notice,
            "stopIteration": self.notices.stop_iteration,
            "noticeIgnored": self.notices.ignored,
            "job": self.config.job,
            "namespace": self.config.namespace,
            "attempt": self.config.attempt,
            "worldSize": self.config.world_size,
            "iteration": self.iteration,
            "metrics": self.job_metrics,
            "progress": self.progress,
            "ranks": {str(rank): p.last_iteration for rank, p in sorted(self.aggregator.ranks.items())},
            "finalized": self.aggregator.finalized,
            "pendingCommits": len(self.aggregator.pending),
            "latestCheckpoint": checkpoint_status(latest) if latest else None,
            "bestCheckpoint": checkpoint_status(best) if best else None,
            "checkpoints": self._checkpoint_list(),
            "lastReportTime": None if last_report is None else rfc3339(last_report),
            "storageAvailable": self.storage_error is None,
            "message": self.message,
        }

    # -- storage work -------------------------------------------------------------------------
    def _storage_ok(self) -> None:
        self._storage_ok_at = time.monotonic()
        if self.storage_since is None:
            self.storage_since = time.time()
            self.publisher.changed(urgent=True)
        if self.storage_error is not None:
            log.info("storage is available again")
            self.storage_error = None
            self.storage_since = time.time()
            self.metrics.storage_available.set(1)
            self.publisher.changed(urgent=True)
            # Commits and history writes waiting out a retry delay go now.
            self._commit_wakeup.set()
            self._history_wakeup.set()

    def _storage_failed(self, exc: Exception, *, probe: bool = False) -> None:
        if not probe:
            self._operation_failed_at = time.monotonic()
        if self.storage_error is None:
            log.warning("storage unavailable: %s", exc)
            self.storage_since = time.time()
            self.publisher.changed(urgent=True)
        self.storage_error = str(exc)
        self.metrics.storage_available.set(0)

    async def _probe_loop(self) -> None:
        interval = self.config.storage_probe_seconds
        key = join_key(self.config.namespace, self.config.job, ".trainjob-storage-probe")
        while True:
            await asyncio.sleep(max(0.0, self._storage_ok_at + interval - time.monotonic()))
            if time.monotonic() - self._storage_ok_at < interval:
                continue  # another operation succeeded meanwhile: nothing to learn
            try:
                await asyncio.to_thread(self._probe_storage.get_bytes, key)
            except (StorageError, OSError) as exc:
                # The cause, not the budget's wording ("unavailable for 0s") around it.
                cause = exc.__cause__ or exc
                self._storage_failed(StorageError(f"cannot reach {self.storage.uri}: {cause}"), probe=True)
                await asyncio.sleep(interval)
                continue
            if time.monotonic() - self._operation_failed_at < 2 * interval:
                # Storage answers, yet a commit or history write failed just now (a refused
                # write, say): that stands until an operation succeeds, rather than flapping.
                await asyncio.sleep(interval)
                continue
            self._storage_ok()

    async def _recover(self) -> None:
        delay = 0.5
        while True:
            try:
                state = await asyncio.to_thread(recover, self.committer)
                break
            except (StorageError, OSError, ValueError) as exc:
                self._storage_failed(exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _MAX_RETRY_DELAY)
        self._storage_ok()
        self._apply_recovered(state)

    def _apply_recovered(self, state: RecoveredState) -> None:
        self.checkpoints = state.checkpoints
        if state.checkpoints:
            self.aggregator.mark_committed(state.checkpoints[-1].iteration)
        self.history.next_part = state.next_history_part
        self._history_up_to = max(self._history_up_to, state.iteration)
        self._recovered_iteration = state.iteration
        self._recovered_metrics = state.metrics
        latest = state.checkpoints[-1] if state.checkpoints else None
        if latest is not None and latest.iteration > state.iteration:
            # A new attempt resumes from the latest committed checkpoint: until every rank has
            # reported here, the job is at that iteration (not at 0, with no metrics).
            self._recovered_iteration = latest.iteration
            self._recovered_metrics = dict(latest.manifest.metrics)
        self.recovered = True
        self._plan_retention()
        self.metrics.checkpoints_retained.set(len(self.checkpoints))
        log.info(
            "recovered %d committed checkpoints (latest %s), history at iteration %d, next part %d",
            len(state.checkpoints),
            state.checkpoints[-1].dir_name if state.checkpoints else None,
            state.iteration,
            state.next_history_part,
        )
        self.publisher.changed(urgent=True)
        self._commit_wakeup.set()
        self._history_wakeup.set()

    async def _commit_loop(self) -> None:
        await self._recover()
        loop = asyncio.get_running_loop()
        while True:
            await self._commit_wakeup.wait()
            self._commit_wakeup.clear()
            try:
                await self._delete_unretained()
                await self._commit_ready()
            except (StorageError, OSError) as exc:
                self._storage_failed(exc)
                loop.call_later(2.0, self._commit_wakeup.set)
                continue
            if self._retry_at:
                loop.call_later(
                    max(0.05, min(self._retry_at.values()) - time.monotonic()), self._commit_wakeup.set
                )

    async def _commit_ready(self) -> None:
        for candidate in self.aggregator.ready_to_commit():
            if candidate.iteration not in self.aggregator.pending:
                continue  # given up while an older one was being committed
            if self._retry_at.get(candidate.iteration, 0.0) > time.monotonic():
                continue
            started = time.monotonic()
            outcome = await asyncio.to_thread(self.committer.commit, candidate, time.time())
            self._storage_ok()
            if isinstance(outcome, NotCommitted):
                self._not_committed(candidate.iteration, outcome)
                continue
            self.metrics.commit_duration.observe(time.monotonic() - started)
            self._committed(outcome)

    def _not_committed(self, iteration: int, outcome: NotCommitted) -> None:
        if self.commit_problems.get(iteration) != outcome.reason:
            log.warning("not committing iteration %d: %s", iteration, outcome.reason)
        self.commit_problems[iteration] = outcome.reason
        self.publisher.changed(urgent=True)
        if not outcome.retry:
            self.aggregator.drop_pending(iteration)
            self._retry_at.pop(iteration, None)
            return
        # Files may still be arriving (or listings catching up): look again, less and less often.
        delay = min(self._retry_delay.get(iteration, 0.5) * 2, _MAX_RETRY_DELAY)
        self._retry_delay[iteration] = delay
        self._retry_at[iteration] = time.monotonic() + delay

    def _committed(self, checkpoint: CommittedCheckpoint) -> None:
        log.info(
            "committed %s (iteration %d, %d files, %d bytes)",
            checkpoint.uri,
            checkpoint.iteration,
            len(checkpoint.manifest.files),
            checkpoint.manifest.size_bytes,
        )
        self.aggregator.mark_committed(checkpoint.iteration)
        for iteration in [i for i in self._retry_at if i <= checkpoint.iteration]:
            self._retry_at.pop(iteration, None)
            self._retry_delay.pop(iteration, None)
        for iteration in [i for i in self.commit_problems if i <= checkpoint.iteration]:
            del self.commit_problems[iteration]
        self.checkpoints = [c for c in self.checkpoints if c.dir_name != checkpoint.dir_name]
        self.checkpoints.append(checkpoint)
        self.checkpoints.sort(key=_layout.recency)
        self.metrics.checkpoints_committed.inc()
        self.metrics.checkpoint_bytes_committed.inc(checkpoint.manifest.size_bytes)
        self._plan_retention()
        self.metrics.checkpoints_retained.set(len(self.checkpoints))
        self.publisher.changed(urgent=True)
        self._commit_wakeup.set()  # delete what retention dropped
        # Flush the history with each checkpoint: a coordinator killed without warning loses
        # at most the lines since the latest checkpoint.
        self._history_wakeup.set()

    def _plan_retention(self) -> None:
        retained = self.config.retention.retained(self.checkpoints)
        self._to_delete.extend(c for c in self.checkpoints if c not in retained)
        self.checkpoints = retained

    async def _delete_unretained(self) -> None:
        while self._to_delete:
            checkpoint = self._to_delete[0]
            await asyncio.to_thread(self.committer.delete, checkpoint)
            log.info("deleted %s (retention)", checkpoint.uri)
            self._to_delete.pop(0)

    async def _history_loop(self) -> None:
        while not self.recovered:
            await self._history_wakeup.wait()
            if not self.recovered:
                # Once recovered, the wake-up stays set: what arrived meanwhile (every rank's
                # finalize, say) is flushed now, not after history_flush_seconds.
                self._history_wakeup.clear()
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.history_flush_seconds):
                    await self._history_wakeup.wait()
            self._history_wakeup.clear()
            await self._flush_history()

    async def _flush_history(self) -> None:
        """Write every buffered line, in parts of at most ``history_lines_per_part`` lines."""
        while (part := self.history.take_part()) is not None:
            # Taken parts are no longer buffered: until written they are in flight, and not settled.
            self._history_writes += 1
            try:
                await asyncio.to_thread(write_part, self.storage, part)
            except (StorageError, OSError) as exc:
                self.history.put_back(part)
                self._storage_failed(exc)
                return
            finally:
                self._history_writes -= 1
            self._storage_ok()
