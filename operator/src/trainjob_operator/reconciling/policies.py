"""Small policy objects behind the restart decisions (in the spirit of Ray Train v2's FailurePolicy).

A `RetryPolicy` says whether one worker failure may be retried at all; `decide_after_failure`
combines it with the restart budget; `ExponentialBackoff` says how long to wait before the next
attempt. The reconcile function only asks them, so each rule is stated and tested once.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from trainjob_operator.api.types import RestartPolicy

# Exit codes from 128 up are "killed by signal 128+n" (SIGKILL from the OOM killer is 137).
SIGNAL_EXIT_CODE_MIN = 128
MAX_BACKOFF_SECONDS = 300.0
# How much of a failed trainer's termination message (its log's last lines) the job's message
# and event carry: enough for the exception line, short enough for `kubectl get` and describe.
FAILURE_TAIL_CHARS = 240
FAILURE_TAIL_LINES = 3


@dataclass(frozen=True)
class WorkerFailure:
    """Why an attempt ended badly. `exit_code` is None when the pod failed without the trainer
    exiting (eviction, node loss, deletion by someone else) or the gang stalled."""

    rank: int
    pod_name: str
    exit_code: int | None
    reason: str
    # The trainer's state.terminated.message: with FallbackToLogsOnError, its log's last lines.
    message: str | None = None

    def describe(self) -> str:
        if self.exit_code is not None:
            text = f"rank {self.rank} (pod {self.pod_name}) exited with code {self.exit_code} ({self.reason})"
            tail = last_lines(self.message or "")
            return f"{text}: {tail}" if tail else text
        return f"rank {self.rank} (pod {self.pod_name}) failed: {self.reason}"


@dataclass(frozen=True)
class Disruption:
    """A pod the cluster takes away (a lost node, an eviction, a preemption): not the program's
    failure, so it restarts the gang without counting against failurePolicy.maxRestarts."""

    rank: int
    pod_name: str
    reason: str
    message: str

    def describe(self) -> str:
        return f"rank {self.rank} (pod {self.pod_name}) disrupted: {self.reason}" + (
            f": {self.message}" if self.message else ""
        )


def last_lines(text: str, lines: int = FAILURE_TAIL_LINES, chars: int = FAILURE_TAIL_CHARS) -> str:
    """The last non-blank lines of `text` joined with " / ", at most about `chars` long; the end is
    kept (a dying program's last line is the one that says why) and "... " marks what was cut."""
    every = [line.strip() for line in text.splitlines() if line.strip()]
    kept = every[-lines:]
    while len(kept) > 1 and len(" / ".join(kept)) > chars:
        kept = kept[1:]
    out = " / ".join(kept)
    if len(out) > chars:
        return "... " + out[-chars:]
    return "... " + out if len(kept) < len(every) else out


class RetryPolicy(Protocol):
    def is_retryable(self, failure: WorkerFailure) -> bool: ...


class RetryAnyFailure:
    """OnFailure: every failure is worth another attempt."""

    def is_retryable(self, failure: WorkerFailure) -> bool:
        return True


class RetrySignalsAndInfrastructure:
    """ExitCode: codes 1-127 are the program's own verdict (a bug, bad config) and fail the job at
    once; signals and OOM kills (>= 128) and failures without an exit code (eviction, node loss,
    stall) are the environment's, so they are retried."""

    def is_retryable(self, failure: WorkerFailure) -> bool:
        return failure.exit_code is None or failure.exit_code >= SIGNAL_EXIT_CODE_MIN


class RetryNothing:
    """Never: the first failure fails the job."""

    def is_retryable(self, failure: WorkerFailure) -> bool:
        return False


RETRY_POLICIES: dict[RestartPolicy, RetryPolicy] = {
    RestartPolicy.ON_FAILURE: RetryAnyFailure(),
    RestartPolicy.EXIT_CODE: RetrySignalsAndInfrastructure(),
    RestartPolicy.NEVER: RetryNothing(),
}


class FailureOutcome(enum.StrEnum):
    RESTART = "restart"
    FAIL = "fail"


@dataclass(frozen=True)
class FailureVerdict:
    outcome: FailureOutcome
    # The failure that decided it: the first one not retryable, else the lowest rank.
    cause: WorkerFailure
    message: str


def decide_after_failure(
    failures: Sequence[WorkerFailure], policy: RestartPolicy, restarts_so_far: int, max_restarts: int
) -> FailureVerdict:
    """Restart or fail after the given failures of one attempt (at least one)."""
    if not failures:
        raise ValueError("decide_after_failure needs at least one failure")
    retry = RETRY_POLICIES[policy]
    ordered = sorted(failures, key=lambda f: f.rank)
    not_retryable = [f for f in ordered if not retry.is_retryable(f)]
    if not_retryable:
        cause = not_retryable[0]
        return FailureVerdict(
            FailureOutcome.FAIL, cause, f"{cause.describe()}; restartPolicy {policy} does not retry it"
        )
    cause = ordered[0]
    if restarts_so_far >= max_restarts:
        return FailureVerdict(
            FailureOutcome.FAIL,
            cause,
            f"{cause.describe()}; all {max_restarts} restarts (failurePolicy.maxRestarts) are spent",
        )
    return FailureVerdict(
        FailureOutcome.RESTART,
        cause,
        f"{cause.describe()}; restart {restarts_so_far + 1} of {max_restarts}",
    )


@dataclass(frozen=True)
class ExponentialBackoff:
    """Wait `base * 2^(n-1)` seconds before restart n (n >= 1), capped."""

    base_seconds: float
    max_seconds: float = MAX_BACKOFF_SECONDS

    def delay(self, restart_number: int) -> float:
        if restart_number < 1:
            return 0.0
        # Cap the exponent too, so a large restart count never builds a huge integer.
        return float(min(self.base_seconds * 2 ** min(restart_number - 1, 32), self.max_seconds))
