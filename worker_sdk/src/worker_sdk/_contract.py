"""The contract between the operator, the coordinator and the SDK, defined once: the names of
the environment variables the operator sets on every trainer (README.md, "The worker SDK") and
the coordinator's answers the SDK acts on.

The operator re-exports the names (`trainjob_operator.api.constants`); the SDK reads them
(`worker_sdk.context`); the coordinator builds its answers with the types below and the SDK
parses them with the same types, so neither side spells a key of the other's.
Private to the project.
"""

# Names of variables, never their values:
# ruff: noqa: S105

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

# -- the environment every trainer container gets ---------------------------------------------
ENV_JOB_NAME: Final = "TRAINJOB_NAME"
ENV_JOB_NAMESPACE: Final = "TRAINJOB_NAMESPACE"
ENV_ATTEMPT: Final = "TRAINJOB_ATTEMPT"
ENV_WORLD_SIZE: Final = "WORLD_SIZE"
ENV_RANK: Final = "RANK"
ENV_LOCAL_RANK: Final = "LOCAL_RANK"
ENV_LOCAL_WORLD_SIZE: Final = "LOCAL_WORLD_SIZE"
ENV_NODE_RANK: Final = "NODE_RANK"
ENV_MASTER_ADDR: Final = "MASTER_ADDR"
ENV_MASTER_PORT: Final = "MASTER_PORT"
ENV_COORDINATOR_URL: Final = "TRAINJOB_COORDINATOR_URL"
ENV_REPORT_TOKEN: Final = "TRAINJOB_REPORT_TOKEN"
ENV_STORAGE_URI: Final = "TRAINJOB_STORAGE_URI"
ENV_S3_ENDPOINT: Final = "AWS_ENDPOINT_URL_S3"
ENV_RESUME_CHECKPOINT: Final = "TRAINJOB_RESUME_CHECKPOINT"
ENV_CONFIG: Final = "TRAINJOB_CONFIG"
ENV_STORAGE_RETRY_SECONDS: Final = "TRAINJOB_STORAGE_RETRY_SECONDS"
# The pod's terminationGracePeriodSeconds: how long a rank told to stop may still checkpoint.
ENV_TERMINATION_GRACE_SECONDS: Final = "TRAINJOB_TERMINATION_GRACE_SECONDS"
# The SDK's knobs (worker_sdk.context.Settings); the operator sets none of them.
ENV_FINAL_WAIT_SECONDS: Final = "TRAINJOB_FINAL_WAIT_SECONDS"
ENV_UPLOAD_QUEUE: Final = "TRAINJOB_UPLOAD_QUEUE"
ENV_REPORT_BUFFER: Final = "TRAINJOB_REPORT_BUFFER"
ENV_HTTP_TIMEOUT_SECONDS: Final = "TRAINJOB_HTTP_TIMEOUT_SECONDS"
ENV_STAGING_DIR: Final = "TRAINJOB_STAGING_DIR"
# The SDK's retry budget when spec.storage.retryBudgetSeconds is unset.
DEFAULT_STORAGE_RETRY_SECONDS: Final = 120

# Only the operator sets these: any of them means "this is a worker of a TrainJob".
JOB_MARKERS: Final = (ENV_COORDINATOR_URL, ENV_REPORT_TOKEN, ENV_ATTEMPT)
# What a worker of a TrainJob cannot do without.
JOB_REQUIRED: Final = (
    ENV_JOB_NAME,
    ENV_JOB_NAMESPACE,
    ENV_ATTEMPT,
    ENV_WORLD_SIZE,
    ENV_RANK,
    ENV_LOCAL_RANK,
    ENV_LOCAL_WORLD_SIZE,
    ENV_NODE_RANK,
    ENV_COORDINATOR_URL,
    ENV_REPORT_TOKEN,
    ENV_STORAGE_URI,
)


# -- the coordinator's answers ------------------------------------------------------------------
@dataclass(frozen=True)
class LatestCheckpoint:
    """The part of ``latestCheckpoint`` the SDK acts on (resume from it; stop re-sending
    reports at or below its iteration)."""

    uri: str
    iteration: int

    @classmethod
    def from_json(cls, data: object) -> LatestCheckpoint | None:
        if not isinstance(data, dict):
            return None
        uri, iteration = data.get("uri"), data.get("iteration")
        if not isinstance(uri, str) or isinstance(iteration, bool) or not isinstance(iteration, int):
            return None
        return cls(uri, iteration)


@dataclass(frozen=True)
class ReportAnswer:
    """``POST /v1/reports`` accepted."""

    coordinator_id: str
    iteration: int
    duplicate: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "accepted": True,
            "duplicate": self.duplicate,
            "coordinatorId": self.coordinator_id,
            "iteration": self.iteration,
        }


@dataclass(frozen=True)
class FinalizeAnswer:
    """``POST /v1/finalize`` accepted."""

    coordinator_id: str
    iteration: int
    settled: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "accepted": True,
            "coordinatorId": self.coordinator_id,
            "iteration": self.iteration,
            "settled": self.settled,
        }


@dataclass(frozen=True)
class CoordinatorChanged:
    """``409`` to a batch or finalize addressed to another coordinator (``coordinatorId``): this
    one (``coordinator_id``) restarted since the sender last heard from ``addressed_to``, and
    recorded nothing. The sender re-sends what the old one did not commit, then the request."""

    coordinator_id: str
    addressed_to: str

    def to_json(self) -> dict[str, Any]:
        return {
            "error": f"this request was sent to coordinator {self.addressed_to}, which is gone; this is "
            f"coordinator {self.coordinator_id}: send again the checkpoint reports it did not commit, "
            "then this request",
            "coordinatorId": self.coordinator_id,
            "addressedTo": self.addressed_to,
        }

    @classmethod
    def from_json(cls, data: object) -> CoordinatorChanged | None:
        """The refusal, or None for any other answer."""
        body = data if isinstance(data, dict) else {}
        current, addressed = body.get("coordinatorId"), body.get("addressedTo")
        if not isinstance(current, str) or not isinstance(addressed, str):
            return None
        return cls(current, addressed)


@dataclass(frozen=True)
class CoordinatorState:
    """The fields of ``GET /v1/state`` the SDK acts on (the answer holds more, for people)."""

    coordinator_id: str | None
    # False until the coordinator has read the committed checkpoints from storage: until then
    # its latestCheckpoint is not the one to resume from.
    recovered: bool
    settled: bool
    latest_checkpoint: LatestCheckpoint | None

    def to_json(self) -> dict[str, Any]:
        # latestCheckpoint is left to the coordinator, which sends the whole status shape.
        return {
            "coordinatorId": self.coordinator_id,
            "recovered": self.recovered,
            "settled": self.settled,
        }

    @classmethod
    def from_json(cls, data: object) -> CoordinatorState:
        """Lenient: an answer without a field reads as "not known" (an older coordinator)."""
        body = data if isinstance(data, dict) else {}
        coordinator_id = body.get("coordinatorId")
        return cls(
            coordinator_id=coordinator_id if isinstance(coordinator_id, str) else None,
            recovered=body.get("recovered") is not False,
            settled=body.get("settled") is True,
            latest_checkpoint=LatestCheckpoint.from_json(body.get("latestCheckpoint")),
        )
