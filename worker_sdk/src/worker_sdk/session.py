"""The per-process session behind ``report``/``get_checkpoint``/``get_context``.

How a ``report()`` travels:

1. the caller's thread validates it and numbers it (the n-th report of this attempt); a
   checkpoint is uploaded right there (``upload="sync"``) or copied to a staging directory and
   handed to the single upload thread through a bounded set of slots (``upload="async"``; a full
   set blocks ``report`` rather than dropping anything);
2. the report goes into the outbox, a bounded FIFO (full: ``report`` blocks, with a warning);
   appending wakes nobody while the sender is busy (``worker_sdk._outbox``);
3. the sending thread takes what accumulated every ``_LINGER_SECONDS`` (at once for a checkpoint
   report or the finalize), in order, waits for each checkpoint's upload, turns each number into
   an iteration (resume iteration + n) and delivers them: POSTs them to the coordinator as one
   batch on a kept-alive connection (retrying while it is unreachable), or, standalone, commits
   each checkpoint by writing its manifest.

So ``report`` without a checkpoint never touches the network and costs the training loop an
append; the sender wakes a few times a second, not per report, so it seldom takes the GIL from
the loop. A rank's reports reach the coordinator in iteration order, each after its checkpoint's
files are in storage. Failures of the
background threads are raised from the next ``report`` call, or make the process exit non-zero.

At exit (also on SIGTERM, which becomes ``SystemExit(143)`` so that the flush runs; the hooks are in
``worker_sdk._exit``) pending uploads and reports are flushed, the rank finalizes, and rank 0 waits
(bounded) until the coordinator has committed everything: it runs as a sidecar that is stopped once
the main container exits.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from math import isfinite
from pathlib import Path
from typing import Any, Literal, NamedTuple

from worker_sdk import _exit, _layout
from worker_sdk._contract import CoordinatorState
from worker_sdk._outbox import Outbox, OutboxFull
from worker_sdk.checkpoint import (
    Checkpoint,
    LocalFile,
    StagedDirectory,
    committed_checkpoint,
    empty_directory,
    list_checkpoint_files,
    snapshot_checkpoint,
    take_checkpoint,
)
from worker_sdk.context import JobEnvironment, TrainContext
from worker_sdk.coordinator import CoordinatorLink
from worker_sdk.errors import CheckpointCorruptError, CheckpointUploadError, CoordinatorError
from worker_sdk.preemption import PreemptionInfo, StopSignal, termination_grace_seconds
from worker_sdk.protocol import (
    MANIFEST_NAME,
    PLAIN_METRIC_TYPES,
    CheckpointFile,
    CheckpointManifest,
    Finalize,
    Report,
    ReportedCheckpoint,
    attempt_data_dir,
    check_dir_name,
    check_metrics,
    check_total_iterations,
    checkpoint_dir_name,
    job_prefix,
)
from worker_sdk.storage import StorageError, join_key, open_storage

log = logging.getLogger("worker_sdk")

UploadMode = Literal["sync", "async"]
# How long the sender lets reports accumulate before it sends them as one request: each wake-up
# takes the GIL from the training loop, and each request costs the coordinator about as much as
# the reports in it (1024 ranks reporting 10 times a second fit one core only in batches of a
# few), so a few requests a second rather than one per report. Status is published about once a
# second, so this adds little to what anyone sees.
_LINGER_SECONDS = 0.25
# The most reports the sender takes at once (one request, or a few when the bodies are large).
_BATCH_LIMIT = 500


@dataclass(frozen=True)
class ResumePoint:
    """What this attempt continues from: the committed checkpoint, and its iteration (0 if none)."""

    checkpoint: Checkpoint | None
    iteration: int


class _Outgoing(NamedTuple):  # a tuple: made in the training loop, the cheapest to build
    number: int  # the n-th report of this attempt: iteration = resume iteration + n
    metrics: dict[str, int | float | str | bool | None]
    time: float
    # Done when the checkpoint's files are in storage; None without a checkpoint.
    checkpoint: Future[ReportedCheckpoint] | None
    # The total number of iterations the program had told when it reported (None: not told).
    total: int | None


@dataclass(frozen=True)
class _Finish:
    reports: int


class Session:
    def __init__(self, env: JobEnvironment) -> None:
        self.env = env
        self.context: TrainContext = env.context
        settings = env.settings
        self._storage = open_storage(
            self.context.get_storage_uri(), retry_budget_seconds=settings.storage_retry_seconds
        )
        self._job_prefix = job_prefix(self.context.get_namespace(), self.context.get_job_name())
        self._link = (
            None
            if env.coordinator_url is None
            else CoordinatorLink(
                env.coordinator_url, env.report_token or "", timeout_seconds=settings.http_timeout_seconds
            )
        )
        self._lock = threading.RLock()  # re-entrant: a SIGTERM may interrupt report() mid-way
        self._resume_lock = threading.Lock()
        self._resume: ResumePoint | None = None
        self._reports = 0
        self._total_iterations: int | None = None
        self._closed = False
        self._failures: list[Exception] = []
        self._failures_lock = threading.Lock()
        self._outbox: Outbox[_Outgoing | _Finish] = Outbox(settings.report_buffer, on_full=self._outbox_full)
        self._in_flight = 0  # reports the sender has taken and not delivered yet
        self._upload_slots = threading.BoundedSemaphore(settings.upload_queue)
        self._uploader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trainjob-upload")
        self.stop_signal = StopSignal()
        self._sender = threading.Thread(target=self._send_loop, name="trainjob-reports", daemon=True)
        self._sender.start()

    # -- the public API's implementation ----------------------------------------------------
    def get_checkpoint(self) -> Checkpoint | None:
        return self.resume_point().checkpoint

    def report_metrics(self, metrics: object) -> None:
        """``report(metrics)``: no checkpoint, the call a training loop makes every step.

        Kept to what must happen in the caller's thread (copy, check, number, enqueue) and to as
        few Python calls as possible, because right after a training step that code is cold:
        measured on this project's 2-core benchmark machine after 5 ms of computing, each Python
        frame, keyword-argument call or lock on this path cost 4-18 us (cache misses), where the
        same code run 0.2 ms after the last call took a tenth of that (``bench/RESULTS.md``, goal
        1). So ``worker_sdk.report`` comes here with one positional call, the usual metrics are
        checked inline (anything but plain values goes to ``check_metrics``, which decides), and
        the report is built as a bare tuple.
        """
        if self._failures:
            self._raise_failure()
        # A copy (the caller may reuse its dict); any mapping will do.
        copied: dict[str, Any] = (
            metrics.copy()
            if type(metrics) is dict
            else dict(metrics)
            if isinstance(metrics, Mapping)
            else check_metrics(metrics)  # raises: not a mapping
        )
        for name, value in copied.items():
            kind = type(value)
            if not (
                type(name) is str
                and name
                and (kind in PLAIN_METRIC_TYPES or (kind is float and isfinite(value)))
            ):
                check_metrics(copied)  # raises, or accepts a value such as a float subclass
                break
        called_at = time.time()
        with self._lock:
            if self._closed:
                raise RuntimeError("report() called after the trainjob session was closed (process exit)")
            self._reports = number = self._reports + 1
            # _Outgoing(...) without its generated __new__ (a Python frame): the same object.
            item = tuple.__new__(_Outgoing, (number, copied, called_at, None, self._total_iterations))
            self._outbox.put(item)

    def report(
        self,
        metrics: object,
        *,
        checkpoint: Checkpoint | None,
        checkpoint_dir_name: str | None,
        upload: str,
        delete_local_checkpoint_after_upload: bool | None = None,
    ) -> None:
        if self._failures:
            self._raise_failure()
        # A copy (the caller may reuse its dict); any mapping will do.
        copied = (
            metrics.copy()
            if type(metrics) is dict
            else dict(metrics)
            if isinstance(metrics, Mapping)
            else metrics
        )
        checked = check_metrics(copied)
        if upload not in ("sync", "async"):
            raise ValueError(f"upload must be 'sync' or 'async', got {upload!r}")
        if checkpoint is not None and not isinstance(checkpoint, Checkpoint):
            raise TypeError(
                "checkpoint must be a worker_sdk.Checkpoint (Checkpoint.from_directory(path)), "
                f"got {type(checkpoint).__name__}"
            )
        if checkpoint_dir_name is not None:
            if checkpoint is None:
                raise ValueError("checkpoint_dir_name is only used together with a checkpoint")
            check_dir_name(checkpoint_dir_name)
        if delete_local_checkpoint_after_upload not in (None, True, False):
            raise TypeError(
                "delete_local_checkpoint_after_upload must be True, False or None, got "
                f"{delete_local_checkpoint_after_upload!r}"
            )
        if checkpoint is None:
            self.report_metrics(checked)
            return
        if checkpoint.staged is not None:
            self._report_staged(checked, checkpoint.staged, checkpoint_dir_name, upload)
            return
        files: list[LocalFile] | None = None
        if checkpoint is not None:
            if checkpoint.path is None:
                raise ValueError(
                    f"{checkpoint!r} is already in storage; report() takes a local directory: "
                    "Checkpoint.from_directory(path)"
                )
            files = list_checkpoint_files(checkpoint.path)
        # The directory the caller gives up (its files removed once stored), if it does.
        given_up = checkpoint.path if checkpoint and delete_local_checkpoint_after_upload else None
        called_at = time.time()
        with self._lock:
            if self._closed:
                raise RuntimeError("report() called after the trainjob session was closed (process exit)")
            number = self._reports + 1
            ready: Future[ReportedCheckpoint] | None = None
            if files is not None:
                if upload == "sync":
                    ready = Future()
                    ready.set_result(self._upload(files, number, checkpoint_dir_name, upload))
                    if given_up is not None:
                        empty_directory(given_up)
                else:
                    ready = self._upload_in_background(files, number, checkpoint_dir_name, given_up)
            self._reports = number
            # Under the lock: reports enter the outbox in the order of their numbers.
            self._outbox.put(
                _Outgoing(number, checked, called_at, ready, self._total_iterations), urgent=ready is not None
            )

    def _report_staged(
        self,
        metrics: dict[str, int | float | str | bool | None],
        staged: StagedDirectory,
        custom_dir_name: str | None,
        upload: str,
    ) -> None:
        """A checkpoint the SDK writes itself (``worker_sdk.torch.StateStager``): its directory
        is claimed, uploaded once written (here, or in the background) and then removed."""
        called_at = time.time()
        with self._lock:
            if self._closed:
                raise RuntimeError("report() called after the trainjob session was closed (process exit)")
            written = staged.claim()
            number = self._reports + 1
            ready: Future[ReportedCheckpoint]
            if upload == "sync":
                ready = Future()
                ready.set_result(
                    self._upload_staged(written, staged.directory, number, custom_dir_name, "sync")
                )
            else:
                ready = self._upload_staged_in_background(written, staged.directory, number, custom_dir_name)
            self._reports = number
            self._outbox.put(
                _Outgoing(number, metrics, called_at, ready, self._total_iterations), urgent=True
            )

    def set_total_iterations(self, total: int) -> None:
        """Carried by every later report (``worker_sdk.set_total_iterations``)."""
        if isinstance(total, bool) or not isinstance(total, int):
            raise TypeError(
                f"total_iterations must be an int (how many times report() is called in all), got "
                f"{type(total).__name__}"
            )
        check_total_iterations(total)
        self._total_iterations = total

    # -- disruption notices (worker_sdk.preemption) ------------------------------------------
    def should_stop(self) -> bool:
        """True from the iteration the coordinator picked for every rank, once there is a notice."""
        if self.stop_signal.stop:
            return True
        if self._link is None:
            return self.stop_signal.sigterm  # standalone: a SIGTERM is the only notice
        answer = self._ask_should_stop()
        return self.stop_signal.answered(answer) if answer is not None else self.stop_signal.sigterm

    def preemption_info(self) -> PreemptionInfo | None:
        if self.stop_signal.info is None and self._link is not None:
            answer = self._ask_should_stop()
            if answer is not None:
                self.stop_signal.answered(answer)
        return self.stop_signal.info

    def _ask_should_stop(self) -> dict[str, Any] | None:
        assert self._link is not None
        iteration = self.resume_point().iteration + self._reports
        try:
            return self._link.ask_should_stop(self.context.get_world_rank(), iteration)
        except CoordinatorError as exc:
            # Training goes on: a coordinator that cannot answer now is asked again next time.
            log.info("should_stop(): %s", exc)
            return None

    def sigterm(self) -> bool:
        """This trainer got SIGTERM (its pod is being deleted): tell the coordinator, which tells
        every rank. True when the program has asked should_stop() before (it acts on notices)."""
        self.stop_signal.sigterm = True
        if self._link is not None:
            deadline = time.time() + termination_grace_seconds()
            rank = self.context.get_world_rank()
            link = self._link
            threading.Thread(
                target=link.announce_sigterm, args=(rank, deadline), name="trainjob-notice", daemon=True
            ).start()
        return self.stop_signal.asked

    # -- checkpoints ------------------------------------------------------------------------
    def resume_point(self) -> ResumePoint:
        """Found once per process: the latest committed checkpoint to continue from."""
        with self._resume_lock:
            if self._resume is None:
                self._resume = self._find_resume_point()
            return self._resume

    def _find_resume_point(self) -> ResumePoint:
        candidates: list[tuple[str, str]] = []
        if self._link is not None:
            latest = self._coordinator_state_after_recovery().latest_checkpoint
            if latest is not None:
                candidates.append(("the coordinator's latest checkpoint", latest.uri))
        else:
            own = self._latest_own_checkpoint()
            if own is not None:
                candidates.append(("this job's latest checkpoint", own))
        if self.env.resume_checkpoint_uri:
            candidates.append(("TRAINJOB_RESUME_CHECKPOINT", self.env.resume_checkpoint_uri))
        for source, uri in candidates:
            found = committed_checkpoint(uri, retry_budget_seconds=self.env.settings.storage_retry_seconds)
            if found is None:
                log.warning(
                    "%s %s has no %s: not a committed checkpoint, ignored", source, uri, MANIFEST_NAME
                )
                continue
            verified = self._verified(found)
            if verified is not None:
                iteration = int(verified.get_metadata()["iteration"])
                log.info("resuming from %s at iteration %d (%s)", verified.uri, iteration, source)
                return ResumePoint(verified, iteration)
        return ResumePoint(None, 0)

    def _verified(self, checkpoint: Checkpoint) -> Checkpoint | None:
        """``checkpoint`` downloaded and verified against its manifest; when it does not match,
        the job's previous committed checkpoints, newest first, until one does (None if none
        does). Each refusal is logged: the run says which checkpoint it did not load and why."""
        budget = self.env.settings.storage_retry_seconds
        attempt: Checkpoint | None = checkpoint
        older: list[_layout.CommittedCheckpoint] | None = None
        while attempt is not None:
            copy = Path(tempfile.mkdtemp(prefix="trainjob-resume-", dir=self.env.settings.staging_dir))
            atexit.register(shutil.rmtree, copy, True)
            try:
                attempt.to_directory(copy)
            except CheckpointCorruptError as exc:
                shutil.rmtree(copy, ignore_errors=True)
                if older is None:
                    older = self._committed_before(attempt)
                fallback = older.pop() if older else None
                log.error(
                    "%s; falling back to %s",
                    exc,
                    f"the previous committed checkpoint {fallback.uri}" if fallback else "no checkpoint",
                )
                attempt = (
                    None
                    if fallback is None
                    else committed_checkpoint(fallback.uri, retry_budget_seconds=budget)
                )
                continue
            return Checkpoint(path=None, uri=attempt.uri, manifest=attempt.manifest, verified=copy)
        return None

    def _committed_before(self, checkpoint: Checkpoint) -> list[_layout.CommittedCheckpoint]:
        """This job's committed checkpoints older than ``checkpoint`` (oldest first), when it is
        one of this job's; another job's (resumeFrom) has no fallback here."""
        own = _layout.read_committed(self._storage, self._job_prefix)
        position = next((i for i, c in enumerate(own) if c.uri == checkpoint.uri), None)
        return [] if position is None else own[:position]

    def _coordinator_state_after_recovery(self) -> CoordinatorState:
        """The coordinator's state once it has read the committed checkpoints from storage (a
        coordinator that just started may not have yet), or as it is when that takes too long."""
        assert self._link is not None
        state = CoordinatorState.from_json(self._link.get_state())
        give_up_at = time.monotonic() + self.env.settings.storage_retry_seconds
        delay = 0.05
        while not state.recovered:
            if time.monotonic() + delay > give_up_at:
                log.warning("the coordinator has not recovered its checkpoints from storage yet: %s", state)
                break
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
            state = CoordinatorState.from_json(self._link.get_state())
        return state

    def _latest_own_checkpoint(self) -> str | None:
        """Standalone: this job's latest committed checkpoint (the contract of `_layout`), if any."""
        found = _layout.latest(_layout.read_committed(self._storage, self._job_prefix))
        return None if found is None else found.uri

    def _upload(
        self, files: list[LocalFile], number: int, custom_dir_name: str | None, mode: str
    ) -> ReportedCheckpoint:
        iteration = self.resume_point().iteration + number
        dir_name = custom_dir_name or checkpoint_dir_name(iteration)
        # Attempt-scoped: this process may outlive its attempt (README.md, "Checkpoints in storage").
        prefix = join_key(self._job_prefix, dir_name, attempt_data_dir(self.context.get_attempt()))
        try:
            digests = self._storage.upload_files(
                (file.source, join_key(prefix, file.relative)) for file in files
            )
        except (StorageError, OSError) as exc:
            raise CheckpointUploadError(
                f"the checkpoint of iteration {iteration} ({mode} upload) could not be stored at "
                f"{self._storage.uri_for(prefix)}: {exc}. Its report was not sent, so this checkpoint "
                "is never committed"
            ) from exc
        return ReportedCheckpoint(
            dir_name,
            tuple(
                CheckpointFile(file.relative, file.size, digests[join_key(prefix, file.relative)])
                for file in files
            ),
        )

    def _take_upload_slot(self) -> None:
        if not self._upload_slots.acquire(blocking=False):
            log.warning(
                "%d async checkpoint uploads are pending (TRAINJOB_UPLOAD_QUEUE): report() waits for one "
                "to finish",
                self.env.settings.upload_queue,
            )
            self._upload_slots.acquire()

    def _upload_in_background(
        self, files: list[LocalFile], number: int, custom_dir_name: str | None, given_up: Path | None
    ) -> Future[ReportedCheckpoint]:
        """Stage the files (a copy; or, for a directory the caller gave up, the directory itself,
        moved aside) and upload them in the background."""
        self._take_upload_slot()
        try:
            if given_up is None:
                staging, staged = snapshot_checkpoint(files, self.env.settings.staging_dir)
            else:
                staging, staged = take_checkpoint(given_up, files, self.env.settings.staging_dir)
        except BaseException:
            self._upload_slots.release()
            raise

        def upload() -> ReportedCheckpoint:
            stored = False
            try:
                reported = self._upload(staged, number, custom_dir_name, "async")
                stored = True
                return reported
            finally:
                if stored or given_up is None:
                    shutil.rmtree(staging, ignore_errors=True)
                else:
                    # The caller's directory is gone: its files stay here rather than be lost.
                    log.error(
                        "the checkpoint of report %d was not stored; its files are kept in %s",
                        number,
                        staging,
                    )
                self._upload_slots.release()

        return self._uploader.submit(upload)

    def _upload_staged(
        self, written: Future[Path], directory: Path, number: int, custom_dir_name: str | None, mode: str
    ) -> ReportedCheckpoint:
        """Upload a staged directory once written; removed once stored, kept (and said where)
        when its upload fails."""
        try:
            written.result()
        except Exception as exc:
            raise CheckpointUploadError(
                f"the staged checkpoint of report {number} could not be written to {directory}: {exc}. "
                "Its report was not sent, so this checkpoint is never committed"
            ) from exc
        stored = False
        try:
            reported = self._upload(list_checkpoint_files(directory), number, custom_dir_name, mode)
            stored = True
            return reported
        finally:
            if stored:
                shutil.rmtree(directory, ignore_errors=True)
            else:
                log.error(
                    "the checkpoint of report %d was not stored; its files are kept in %s", number, directory
                )

    def _upload_staged_in_background(
        self, written: Future[Path], directory: Path, number: int, custom_dir_name: str | None
    ) -> Future[ReportedCheckpoint]:
        """Queue a staged directory's upload (the same slots as copied directories: back-pressure)."""
        self._take_upload_slot()

        def upload() -> ReportedCheckpoint:
            try:
                return self._upload_staged(written, directory, number, custom_dir_name, "async")
            finally:
                self._upload_slots.release()

        return self._uploader.submit(upload)

    # -- delivery -----------------------------------------------------------------------------
    def _outbox_full(self) -> None:
        log.warning(
            "%d reports are waiting to be sent (TRAINJOB_REPORT_BUFFER): the coordinator at %s is slow "
            "or unreachable; report() waits until it catches up",
            self._outbox.capacity,
            self.env.coordinator_url,
        )

    def _send_loop(self) -> None:
        while True:
            items = self._outbox.take(_LINGER_SECONDS, _BATCH_LIMIT)
            self._in_flight = sum(isinstance(item, _Outgoing) for item in items)
            try:
                finished = self._send(items)
            except Exception as exc:  # never let the sending thread die with reports waiting
                self._fail(exc)
                finished = any(isinstance(item, _Finish) for item in items)
            finally:
                self._in_flight = 0
            if finished:
                return

    def _send(self, items: list[_Outgoing | _Finish]) -> bool:
        """Deliver ``items`` in order; True once the finalize was among them (sent or failed)."""
        reports: list[Report] = []
        for item in items:
            if isinstance(item, _Finish):
                self._deliver(reports)
                try:
                    self._finalize(item)
                except Exception as exc:
                    self._fail(exc)
                return True
            if item.checkpoint is not None and not item.checkpoint.done():
                self._deliver(reports)  # what came before need not wait for this upload
                reports = []
            report = self._prepare(item)
            if report is not None:
                reports.append(report)
        self._deliver(reports)
        return False

    def _prepare(self, item: _Outgoing) -> Report | None:
        """The report to send, once its checkpoint's files are stored; None (the failure recorded)
        when they could not be: a checkpoint whose files are not all stored is never reported."""
        try:
            reported = None if item.checkpoint is None else item.checkpoint.result()
            iteration = self.resume_point().iteration + item.number
        except Exception as exc:  # the upload failed, or the resume point could not be found
            self._fail(exc)
            return None
        return Report(
            rank=self.context.get_world_rank(),
            attempt=self.context.get_attempt(),
            iteration=iteration,
            metrics=item.metrics,
            checkpoint=reported,
            time=item.time,
            total_iterations=item.total,
        )

    def _finalize(self, finish: _Finish) -> None:
        if self._link is not None:
            iteration = self.resume_point().iteration + finish.reports
            rank, attempt = self.context.get_world_rank(), self.context.get_attempt()
            self._link.send_finalize(Finalize(rank, attempt, iteration))

    def _deliver(self, reports: list[Report]) -> None:
        if not reports:
            return
        try:
            if self._link is not None:
                for refused in self._link.send_reports(reports):
                    self._fail(refused)
            else:
                for report in reports:
                    if report.checkpoint is not None:
                        self._commit_standalone(report, report.checkpoint)
        except Exception as exc:
            self._fail(exc)
        finally:
            self._in_flight -= len(reports)

    def _commit_standalone(self, report: Report, reported: ReportedCheckpoint) -> None:
        """Alone, this process is every rank: its files are stored, so write the manifest (last)."""
        manifest = CheckpointManifest(
            iteration=report.iteration,
            attempt=report.attempt,
            metrics=report.metrics,
            files=reported.files,
            committed_at=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            data_dir=attempt_data_dir(report.attempt),
        )
        key = join_key(self._job_prefix, reported.dir_name, MANIFEST_NAME)
        self._storage.put_bytes(key, json.dumps(manifest.to_json(), indent=1).encode())

    # -- failures -----------------------------------------------------------------------------
    def _fail(self, exc: Exception) -> None:
        log.error("trainjob: %s", exc)
        with self._failures_lock:
            self._failures.append(exc)

    def _take_failures(self) -> list[Exception]:
        with self._failures_lock:
            failures, self._failures = self._failures, []
        return failures

    def _raise_failure(self) -> None:
        if not self._failures:  # the usual case, without the lock
            return
        failures = self._take_failures()
        if failures:
            raise failures[0]

    # -- exit -----------------------------------------------------------------------------------
    def close(self, *, wait_settled: bool = True) -> list[Exception]:
        """Flush uploads and reports, finalize, and (rank 0) wait for the coordinator to settle.

        Returns the failures not raised yet: anything here means reports or checkpoints were lost.
        """
        with self._lock:
            if self._closed:
                return []
            self._closed = True
        final_wait = self.env.settings.final_wait_seconds
        if self._link is not None:  # an upload may be waiting for the coordinator (resume point)
            self._link.give_up_at(time.monotonic() + final_wait)
        self._uploader.shutdown(wait=True)  # each upload is bounded by the storage retry budget
        deadline = time.monotonic() + final_wait
        if self._link is not None:
            self._link.give_up_at(deadline)
        with contextlib.suppress(OutboxFull):  # a stuck sender is reported just below
            self._outbox.put(
                _Finish(self._reports), urgent=True, timeout=max(0.0, deadline - time.monotonic())
            )
        self._sender.join(timeout=max(0.0, deadline - time.monotonic()))
        if self._sender.is_alive():
            waiting = sum(isinstance(item, _Outgoing) for item in self._outbox.snapshot()) + self._in_flight
            self._fail(
                CoordinatorError(
                    f"{waiting} report(s) or the finalize were not delivered to the coordinator "
                    f"at {self.env.coordinator_url} within TRAINJOB_FINAL_WAIT_SECONDS={final_wait:g}"
                )
            )
        else:
            if self._link is not None and wait_settled and self.context.get_world_rank() == 0:
                self._wait_settled(deadline)
            if self._link is not None:
                self._link.close()
        return self._take_failures()

    def _wait_settled(self, deadline: float) -> None:
        """Rank 0, whose pod runs the coordinator the other ranks report to, stays until it has
        committed everything. The wait ends TRAINJOB_FINAL_WAIT_SECONDS after the other ranks'
        last progress, and never while a rank has not been heard from at all: its pod may still
        be starting, and without this process its reports would have nowhere to go."""
        assert self._link is not None
        final_wait = self.env.settings.final_wait_seconds
        world = set(range(self.context.get_world_size()))
        last_progress: object = None
        told_unheard: set[int] = set()
        while True:
            settled, state = self._link.poll_settled()
            if settled:
                return
            now = time.monotonic()
            ranks, finalized = state.get("ranks"), state.get("finalized")
            if isinstance(ranks, dict) and isinstance(finalized, list):
                progress = (sorted(ranks.items()), sorted(finalized))
                if progress != last_progress:
                    last_progress = progress
                    deadline = max(deadline, now + final_wait)
                unheard = world - {int(rank) for rank in ranks} - {int(rank) for rank in finalized}
                if unheard:
                    deadline = max(deadline, now + final_wait)
                    if unheard != told_unheard:
                        told_unheard = unheard
                        log.warning(
                            "waiting for rank(s) %s, not heard from yet, before leaving the coordinator",
                            ", ".join(map(str, sorted(unheard))),
                        )
            if now + 0.25 > deadline:
                log.warning(
                    "the coordinator has not committed every rank's last report within "
                    "TRAINJOB_FINAL_WAIT_SECONDS=%g of the last progress; exiting anyway",
                    final_wait,
                )
                return
            time.sleep(0.25)


# -- the process's session ----------------------------------------------------------------------
# The process's session once made (read without the lock by ``worker_sdk.report``'s fast path).
live: Session | None = None
_live_lock = threading.Lock()


def current() -> Session:
    """The process's session, made on first use from the environment; the first one installs the
    exit and SIGTERM hooks that flush it (``worker_sdk._exit``)."""
    global live
    with _live_lock:
        if live is None:
            live = Session(JobEnvironment.from_env())
            _exit.install(_close_at_exit, _sigterm_at)
        return live


def shutdown(*, wait_settled: bool = True) -> list[Exception]:
    """Close the process's session (what the exit hook does); the next use makes a new one."""
    global live
    with _live_lock:
        session, live = live, None
    return [] if session is None else session.close(wait_settled=wait_settled)


def _close_at_exit(wait_settled: bool) -> list[Exception]:
    return shutdown(wait_settled=wait_settled)


def _sigterm_at() -> bool:
    """SIGTERM: raise the notice for the gang; True when the program acts on notices (so the
    exit can wait for its next report and checkpoint)."""
    with _live_lock:
        session = live
    return session is not None and session.sigterm()
