"""Which rank reported what, and which checkpoints are ready to commit. Pure: no I/O, no clock.

Every rank reports iterations in order (1, 2, 3, ... or, after a resume, from wherever the
checkpoint left off), so a rank that reported iteration ``i`` has reported every iteration
before it. The job's ``iteration`` is therefore the lowest ``last_iteration`` over the ranks:
the highest iteration every rank has reached. It is kept with a count of ranks per last
iteration, so a report costs O(1) amortised (a new minimum is searched only among the distinct
last iterations, which are few: ranks move roughly together).

Skipping an iteration is refused, except while a rank has sent this process only reports with
checkpoints: after a coordinator restart the SDK re-sends just its uncommitted checkpoint
reports, which need not be consecutive.

A coordinator that restarts mid-attempt has seen nothing before each rank's first report to
it. From that first report on, it has seen everything of that rank (``first_iteration``); for
earlier iterations it knows only what the rank re-sends (the SDK re-sends its uncommitted
reports when it sees a new coordinator id). A checkpoint is ready once every rank has reached
its iteration; whether files nobody listed may be deleted as stale depends on whether every
rank's part of it is known (see :attr:`CommitCandidate.every_rank_known`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import Enum

from trainjob_operator.api.types import ReportCountMismatch
from worker_sdk.protocol import Finalize, MetricValue, Report

Metrics = dict[str, MetricValue]


class Verdict(Enum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"  # accepted idempotently; its checkpoint may still have been recorded


class ReportRejected(ValueError):
    """A report that does not fit this attempt; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason  # a short label for the refused-reports metric


@dataclass
class RankProgress:
    last_iteration: int
    # The first iteration this coordinator process saw from the rank, directly.
    first_iteration: int
    last_report_time: float
    finalized_at: int | None = None
    # True while every report this process got from the rank carried a checkpoint: they may be
    # re-sends after a coordinator restart (the SDK re-sends only those), which leave gaps.
    only_checkpoint_reports: bool = False


@dataclass
class PendingCheckpoint:
    """The parts of one checkpoint (one iteration) that ranks reported, merged."""

    iteration: int
    dir_name: str
    # path -> (size, rank that listed it)
    files: dict[str, tuple[int, int]] = field(default_factory=dict)
    # Ranks that re-sent this iteration after the coordinator restarted.
    resent_by: set[int] = field(default_factory=set)
    conflicts: list[str] = field(default_factory=list)
    # path -> the SHA-256 the rank computed while uploading (absent from older SDKs).
    checksums: dict[str, str] = field(default_factory=dict)

    def add_part(
        self, rank: int, dir_name: str, files: dict[str, int], checksums: dict[str, str] | None = None
    ) -> None:
        if dir_name != self.dir_name:
            self._conflict(
                f"rank {rank} put iteration {self.iteration}'s checkpoint in {dir_name!r}, "
                f"another rank in {self.dir_name!r}"
            )
            return
        # A rank re-sending its part replaces what it listed before.
        self.files = {path: entry for path, entry in self.files.items() if entry[1] != rank}
        self.checksums = {path: digest for path, digest in self.checksums.items() if path in self.files}
        for path, size in files.items():
            listed = self.files.get(path)
            if listed is not None and listed[0] == size:
                # Every rank saving the same replicated state under one name (Ray's own examples
                # do): one upload wins in storage, as in Ray, and its size is the one listed.
                continue
            if listed is not None:
                self._conflict(
                    f"ranks {listed[1]} and {rank} both listed {self.dir_name}/{path} with different sizes "
                    f"({listed[0]} and {size} bytes): sharded checkpoints need a distinct file name per rank"
                )
                continue
            self.files[path] = (size, rank)
            if checksums and path in checksums:
                self.checksums[path] = checksums[path]

    def _conflict(self, message: str) -> None:
        if message not in self.conflicts:
            self.conflicts.append(message)


@dataclass(frozen=True)
class CommitCandidate:
    iteration: int
    dir_name: str
    files: dict[str, int]  # path -> size, every rank's files merged
    metrics: Metrics  # rank 0's at this iteration
    # True when every rank's part is known; then files nobody listed are a dead attempt's
    # leftovers and may be deleted. Otherwise such a file may be the part of a rank whose
    # report went to the previous coordinator and has not been re-sent yet.
    every_rank_known: bool
    # path -> SHA-256 computed by the uploading rank; recorded in the manifest.
    checksums: dict[str, str] = field(default_factory=dict)


class Aggregator:
    def __init__(self, world_size: int, attempt: int, *, committed_up_to: int = 0) -> None:
        if world_size < 1:
            raise ValueError("world size must be >= 1")
        self.world_size = world_size
        self.attempt = attempt
        self.ranks: dict[int, RankProgress] = {}
        self._ranks_at: Counter[int] = Counter()  # last iteration -> number of ranks there
        self._min_last = 0
        # Rank 0's metrics by iteration, kept until the job iteration has passed them.
        self._rank0_metrics: dict[int, Metrics] = {}
        self._rank0_times: dict[int, float] = {}
        self.pending: dict[int, PendingCheckpoint] = {}
        # Iterations at or below this have a committed (or given up) checkpoint: never re-record.
        self.committed_up_to = committed_up_to
        self.iteration = 0
        self.metrics: Metrics = {}
        # Set once every rank has finalized, when they reported different numbers of times.
        self.report_count_mismatch: ReportCountMismatch | None = None

    # -- input ------------------------------------------------------------------------------
    def add_report(self, report: Report, now: float) -> Verdict:
        """Record one report; raise :class:`ReportRejected` for one that must be refused."""
        self._check_rank(report.rank, report.attempt)
        progress = self.ranks.get(report.rank)
        if progress is not None and report.iteration <= progress.last_iteration:
            self._record_resent_checkpoint(report)
            return Verdict.DUPLICATE
        gap = progress is not None and report.iteration > progress.last_iteration + 1
        if gap and progress is not None and not progress.only_checkpoint_reports:
            raise ReportRejected(
                409,
                "skipped_iteration",
                f"rank {report.rank} reported iteration {report.iteration} right after "
                f"{progress.last_iteration}: every rank reports every iteration, in order "
                f"(next expected: {progress.last_iteration + 1})",
            )
        if progress is not None and progress.finalized_at is not None:
            raise ReportRejected(
                409,
                "after_finalize",
                f"rank {report.rank} finalized at iteration {progress.finalized_at} and cannot report again",
            )
        if report.rank == 0:
            self._rank0_metrics[report.iteration] = report.metrics
            self._rank0_times[report.iteration] = now
        if report.checkpoint is not None and report.iteration > self.committed_up_to:
            files = {f.path: f.size for f in report.checkpoint.files}
            self._pending_at(report.iteration, report.checkpoint.dir_name).add_part(
                report.rank, report.checkpoint.dir_name, files, _checksums(report)
            )
        if progress is None:
            progress = RankProgress(report.iteration, report.iteration, now)
            progress.only_checkpoint_reports = report.checkpoint is not None
            self.ranks[report.rank] = progress
        else:
            if gap:
                # What this rank reported in between went to a previous coordinator process.
                progress.first_iteration = report.iteration
            progress.only_checkpoint_reports &= report.checkpoint is not None
            self._ranks_at[progress.last_iteration] -= 1
            if not self._ranks_at[progress.last_iteration]:
                del self._ranks_at[progress.last_iteration]
            progress.last_iteration = report.iteration
            progress.last_report_time = now
        self._ranks_at[report.iteration] += 1
        self._advance()
        return Verdict.ACCEPTED

    def add_finalize(self, finalize: Finalize, now: float) -> None:
        self._check_rank(finalize.rank, finalize.attempt)
        progress = self.ranks.get(finalize.rank)
        if progress is None:
            # Its reports went to a previous coordinator process: it reached that iteration.
            progress = RankProgress(finalize.iteration, finalize.iteration + 1, now, finalize.iteration)
            self.ranks[finalize.rank] = progress
            self._ranks_at[finalize.iteration] += 1
            self._advance()
            self._check_report_counts()
            return
        if finalize.iteration != progress.last_iteration:
            raise ReportRejected(
                409,
                "finalize_mismatch",
                f"rank {finalize.rank} finalized after {finalize.iteration} reports, but its last "
                f"report here is iteration {progress.last_iteration}: send every report before finalizing",
            )
        progress.finalized_at = finalize.iteration
        self._check_report_counts()

    def _check_report_counts(self) -> None:
        """Every rank must report the same number of times. Once all have finalized, the
        iterations only some ranks reported can never complete: say which ranks stopped short and
        which iterations, and give those iterations up, so the attempt settles at once instead of
        rank 0 waiting out TRAINJOB_FINAL_WAIT_SECONDS. Documented outcome: the job ends as its
        workers do (Succeeded when they exit 0) with this in status.reportCountMismatch (which the
        operator turns into a condition, an event and a note in its message); status.iteration
        stays at the last iteration every rank reported, and its checkpoint is the latest."""
        if self.report_count_mismatch is not None or not self.all_finalized:
            return
        counts = {rank: p.finalized_at or 0 for rank, p in self.ranks.items()}
        lowest, highest = min(counts.values()), max(counts.values())
        if lowest == highest:
            return
        short = sorted(rank for rank, count in counts.items() if count == lowest)
        longest = min(rank for rank, count in counts.items() if count == highest)
        who = f"rank {short[0]}" if len(short) == 1 else "ranks " + ", ".join(map(str, short))
        what = (
            f"iteration {highest} was" if highest == lowest + 1 else f"iterations {lowest + 1}-{highest} were"
        )
        self.report_count_mismatch = ReportCountMismatch(
            attempt=self.attempt,
            short_ranks=short,
            reports=lowest,
            longest_rank=longest,
            most_reports=highest,
            message=f"{who} finalized after {lowest} reports but rank {longest} after {highest}: "
            f"{what} not reported by every rank",
        )
        for iteration in [i for i in self.pending if i > lowest]:
            self.drop_pending(iteration)

    def _check_rank(self, rank: int, attempt: int) -> None:
        if attempt != self.attempt:
            raise ReportRejected(
                409,
                "wrong_attempt",
                f"attempt {attempt} is over or unknown: this coordinator serves attempt {self.attempt}",
            )
        if rank >= self.world_size:
            raise ReportRejected(
                422, "unknown_rank", f"rank {rank} is out of range: the world size is {self.world_size}"
            )

    def _record_resent_checkpoint(self, report: Report) -> None:
        """A duplicate still matters for a checkpoint not committed yet: it adds the rank's part
        (or tells that the rank has none)."""
        if report.iteration <= self.committed_up_to:
            return
        if report.checkpoint is not None:
            pending = self._pending_at(report.iteration, report.checkpoint.dir_name)
            files = {f.path: f.size for f in report.checkpoint.files}
            pending.add_part(report.rank, report.checkpoint.dir_name, files, _checksums(report))
        elif report.iteration in self.pending:
            pending = self.pending[report.iteration]
        else:
            return
        pending.resent_by.add(report.rank)
        if report.rank == 0:
            self._rank0_metrics.setdefault(report.iteration, report.metrics)

    def _pending_at(self, iteration: int, dir_name: str) -> PendingCheckpoint:
        pending = self.pending.get(iteration)
        if pending is None:
            pending = self.pending[iteration] = PendingCheckpoint(iteration, dir_name)
        return pending

    def _advance(self) -> None:
        if len(self.ranks) < self.world_size:
            return
        if self._ranks_at.get(self._min_last, 0) == 0:
            self._min_last = min(self._ranks_at)
        if self._min_last > self.iteration:
            self.iteration = self._min_last
            # Rank 0's metrics at the job iteration; the last ones it re-sent if it never sent them here.
            self.metrics = self._rank0_metrics.get(self.iteration, self.metrics)

    # -- output -----------------------------------------------------------------------------
    def take_completed_metrics(self) -> list[tuple[int, float, Metrics]]:
        """Rank 0's (iteration, time, metrics) for every iteration all ranks have now reached,
        oldest first, each returned once: the metric history."""
        done = sorted(i for i in self._rank0_metrics if i <= self.iteration)
        completed = [(i, self._rank0_times.get(i, 0.0), self._rank0_metrics[i]) for i in done]
        for i in done:
            # Keep what a pending checkpoint's manifest still needs.
            if i not in self.pending:
                del self._rank0_metrics[i]
            self._rank0_times.pop(i, None)
        return completed

    def ready_to_commit(self) -> list[CommitCandidate]:
        """Checkpoints every rank has reached without conflicting parts, oldest first."""
        ready = []
        for iteration in sorted(self.pending):
            pending = self.pending[iteration]
            if iteration > self.iteration or pending.conflicts:
                continue
            every_rank_known = all(
                progress.first_iteration <= iteration or rank in pending.resent_by
                for rank, progress in self.ranks.items()
            )
            ready.append(
                CommitCandidate(
                    iteration=iteration,
                    dir_name=pending.dir_name,
                    files={path: size for path, (size, _) in pending.files.items()},
                    metrics=self._rank0_metrics.get(iteration, {}),
                    every_rank_known=every_rank_known,
                    checksums=dict(pending.checksums),
                )
            )
        return ready

    def mark_committed(self, iteration: int) -> None:
        """The checkpoint at ``iteration`` is committed; older pending ones are given up (a
        newer one exists, so they could never be resumed from)."""
        self.committed_up_to = max(self.committed_up_to, iteration)
        for old in [i for i in self.pending if i <= iteration]:
            del self.pending[old]
            if old < self.iteration:
                self._rank0_metrics.pop(old, None)

    def drop_pending(self, iteration: int) -> None:
        self.pending.pop(iteration, None)
        if iteration < self.iteration:
            self._rank0_metrics.pop(iteration, None)

    @property
    def conflicts(self) -> list[str]:
        return [message for pending in self.pending.values() for message in pending.conflicts]

    @property
    def finalized(self) -> list[int]:
        return sorted(rank for rank, progress in self.ranks.items() if progress.finalized_at is not None)

    @property
    def all_finalized(self) -> bool:
        return len(self.finalized) == self.world_size

    def slowest_rank(self) -> tuple[int, RankProgress] | None:
        """The rank furthest behind; among equals, the one that reported least recently."""
        if not self.ranks:
            return None
        rank, progress = min(
            self.ranks.items(), key=lambda item: (item[1].last_iteration, item[1].last_report_time)
        )
        return rank, progress

    @property
    def last_report_time(self) -> float | None:
        return max((p.last_report_time for p in self.ranks.values()), default=None)


def _checksums(report: Report) -> dict[str, str]:
    assert report.checkpoint is not None
    return {f.path: f.sha256 for f in report.checkpoint.files if f.sha256 is not None}
