"""The API types: camelCase on the wire, snake_case in Python, defaults, and round trips."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from trainjob_operator.api import constants
from trainjob_operator.api.types import (
    COORDINATOR_STATUS_FIELDS,
    OPERATOR_STATUS_FIELDS,
    Phase,
    RestartPolicy,
    ScoreOrder,
    TrainJob,
    TrainJobSpec,
    TrainJobStatus,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "examples" / "digits.yaml"


def test_parse_an_example_manifest() -> None:
    job = TrainJob.from_wire(yaml.safe_load(EXAMPLE.read_text()))
    assert job.metadata.name == "digits" and job.metadata.namespace == "default"
    spec = job.spec
    assert spec.workers == 2 and spec.procs_per_worker == 1
    assert spec.storage.credentials_secret == "trainjob-s3"
    assert spec.checkpoints.num_to_keep == 3 and spec.checkpoints.score_order is ScoreOrder.MIN
    assert spec.failure_policy.restart_policy is RestartPolicy.ON_FAILURE
    assert spec.config == {"epochs": 20, "lr": 0.05}
    assert job.status == TrainJobStatus()


def test_defaults() -> None:
    spec = TrainJobSpec.from_wire({"template": {}, "storage": {"uri": "file:///ckpt"}})
    assert spec.workers == 1 and spec.procs_per_worker == 1 and spec.suspend is False
    assert spec.failure_policy.max_restarts == 3
    assert spec.failure_policy.restart_policy is RestartPolicy.ON_FAILURE
    assert spec.failure_policy.backoff_seconds == 10
    assert spec.checkpoints.num_to_keep is None and spec.checkpoints.score_order is ScoreOrder.MAX
    assert spec.active_deadline_seconds is None and spec.resume_from is None and spec.config is None


def test_round_trip_uses_camel_case_and_leaves_unset_fields_out() -> None:
    wire = {
        "workers": 3,
        "procsPerWorker": 2,
        "template": {"spec": {"containers": [{"name": "trainer", "image": "x"}]}},
        "config": {"nested": {"a": [1, 2]}},
        "storage": {"uri": "s3://b/p", "endpoint": "http://s3:8333", "credentialsSecret": "creds"},
        "checkpoints": {"numToKeep": 2, "scoreAttribute": "acc", "scoreOrder": "max"},
        "failurePolicy": {
            "maxRestarts": 1,
            "restartPolicy": "ExitCode",
            "backoffSeconds": 1,
            "nodeLossSeconds": 30,
            "maxDisruptions": 5,
        },
        "preemption": {"gracePeriodSeconds": 45},
        "startupPolicy": {
            "podsReadyTimeoutSeconds": 600,
            "unschedulableTimeoutSeconds": 300,
            "failFastReasons": ["InvalidImageName"],
            "failFastGraceSeconds": 10,
            "onTimeout": "Fail",
        },
        "resumeFrom": "s3://b/other",
        "suspend": True,
        "activeDeadlineSeconds": 10,
        "ttlSecondsAfterFinished": 0,
        "stallTimeoutSeconds": 30,
    }
    spec = TrainJobSpec.from_wire(wire)
    assert spec.ttl_seconds_after_finished == 0 and spec.storage.endpoint == "http://s3:8333"
    assert spec.to_wire() == wire
    minimal = TrainJobSpec.from_wire({"template": {}, "storage": {"uri": "s3://b"}}).to_wire()
    assert "resumeFrom" not in minimal and "config" not in minimal


def test_snake_case_names_work_in_python_too() -> None:
    spec = TrainJobSpec(template={}, storage={"uri": "s3://b"}, procs_per_worker=4)  # type: ignore[arg-type]  # plain dicts, on purpose
    assert spec.to_wire()["procsPerWorker"] == 4


def test_unknown_fields_are_dropped_like_the_api_server_prunes_them() -> None:
    spec = TrainJobSpec.from_wire({"template": {}, "storage": {"uri": "s3://b"}, "replicas": 4})
    assert "replicas" not in spec.to_wire()


def test_models_are_frozen() -> None:
    spec = TrainJobSpec.from_wire({"template": {}, "storage": {"uri": "s3://b"}})
    with pytest.raises(ValidationError):
        spec.workers = 5


def test_status_timestamps_parse_and_serialise_as_rfc3339() -> None:
    status = TrainJobStatus.from_wire(
        {"phase": "Running", "startTime": "2026-01-01T00:00:00Z", "slowestRank": {"rank": 1}}
    )
    assert status.phase is Phase.RUNNING
    assert status.start_time == datetime(2026, 1, 1, tzinfo=UTC)
    assert status.to_wire()["startTime"] == "2026-01-01T00:00:00Z"


def test_lenient_status_parse_drops_only_bad_fields() -> None:
    status = TrainJobStatus.from_wire_lenient(
        {
            "phase": "Nope",
            "attempt": 2,
            "latestCheckpoint": {"uri": "s3://b/c", "iteration": 4},
            "workers": "x",
        }
    )
    assert status.phase is None and status.workers is None
    assert status.attempt == 2 and status.latest_checkpoint is not None
    assert TrainJobStatus.from_wire_lenient(None) == TrainJobStatus()
    assert TrainJobStatus.from_wire_lenient("garbage") == TrainJobStatus()


def test_status_fields_have_exactly_one_owner() -> None:
    assert not set(OPERATOR_STATUS_FIELDS) & set(COORDINATOR_STATUS_FIELDS)
    assert set(OPERATOR_STATUS_FIELDS) | set(COORDINATOR_STATUS_FIELDS) == set(TrainJobStatus.model_fields)
    wire_names = {TrainJobStatus.model_fields[f].alias for f in COORDINATOR_STATUS_FIELDS}
    assert wire_names == {
        "iteration",
        "metrics",
        "lastReportTime",
        "latestCheckpoint",
        "bestCheckpoint",
        "checkpoints",
        "slowestRank",
        "storage",
        "stopAt",
        "noticeIgnored",
        "lastCommitTime",
        "reportCountMismatch",
        "coordinatorMessage",
        "progress",
    }
    assert "message" in {TrainJobStatus.model_fields[f].alias for f in OPERATOR_STATUS_FIELDS}


def test_constants() -> None:
    assert constants.API_VERSION == "trainjob.dev/v1alpha1"
    assert constants.CRD_NAME == "trainjobs.trainjob.dev"
    assert (constants.LABEL_NAME, constants.LABEL_ATTEMPT, constants.LABEL_RANK) == (
        "trainjob.dev/name",
        "trainjob.dev/attempt",
        "trainjob.dev/rank",
    )
    assert constants.COORDINATOR_PORT == 8470 and constants.MASTER_PORT == 29500


def test_the_env_contract_is_the_sdks() -> None:
    """The operator sets exactly the names the SDK reads: re-exported, never spelled twice."""
    from worker_sdk import _contract

    for name in dir(_contract):
        if name.startswith("ENV_"):
            assert getattr(constants, name, getattr(_contract, name)) is getattr(_contract, name), name
    assert constants.ENV_JOB_NAME is _contract.ENV_JOB_NAME
    assert constants.DEFAULT_STORAGE_RETRY_SECONDS == _contract.DEFAULT_STORAGE_RETRY_SECONDS
