"""The `trainjob.dev/v1alpha1` TrainJob API (README.md, "The TrainJob"): the single source of truth.

The CRD's OpenAPI schema is generated from these models (`api.crd`), the way kubebuilder
generates it from Go types, and the operator parses what the API server sends into them.

Why pydantic v2 and not dataclasses: one declaration gives the wire names (camelCase through an
alias generator, snake_case in Python), the constraints (`ge`, `min_length`, `Literal` enums) that
become both Python-side validation and the CRD schema's `minimum`/`enum`/`required`, and
descriptions that end up in `kubectl explain`. With dataclasses we would write the parser, the
serialiser and the schema generator ourselves, three places to keep in step.

Models ignore unknown keys (like the API server, which prunes them) and are frozen: the
reconcile logic derives new status values, it never mutates what it observed.

Status fields have two owners, and each writes only its own with a merge patch:
`OPERATOR_STATUS_FIELDS` (lifecycle) and `COORDINATOR_STATUS_FIELDS` (progress, checkpoints,
what the coordinator finds wrong). These two lists are the only definition of who owns what: the
operator's patch and the coordinator's published status are both checked against them. When the
operator must act on something the coordinator sees (storage down, ranks that reported different
numbers of times) the coordinator publishes a typed field and the pure reconcile turns it into a
condition and an event; neither ever reads the other's prose.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated, Any, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    SerializerFunctionWrapHandler,
    ValidationError,
    model_serializer,
)
from pydantic.alias_generators import to_camel

# Re-exported: spec.checkpoints.scoreOrder is the order of the SDK contract, defined once there.
from worker_sdk._layout import ScoreOrder as ScoreOrder

from . import constants


class WireModel(BaseModel):
    """Base of every API type: camelCase on the wire, snake_case in Python, unknown keys dropped."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        extra="ignore",
        frozen=True,
        use_attribute_docstrings=False,
    )

    def to_wire(self) -> dict[str, Any]:
        """The JSON-ready dict the API server stores (camelCase, unset optionals left out)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    @classmethod
    def from_wire(cls, data: Any) -> Self:
        """Parse a dict as the API server returns it; raises `pydantic.ValidationError`."""
        return cls.model_validate(data)


# A free JSON object: `x-kubernetes-preserve-unknown-fields` in the CRD.
FreeObject = dict[str, Any]
NonNegativeInt = Annotated[int, Field(ge=0)]


class RestartPolicy(enum.StrEnum):
    """When a failed attempt is retried (docs/architecture.md, "The lifecycle")."""

    ON_FAILURE = "OnFailure"
    EXIT_CODE = "ExitCode"
    NEVER = "Never"


class Phase(enum.StrEnum):
    """The lifecycle phase; `reconciling.lifecycle` holds the allowed transitions."""

    PENDING = "Pending"
    RUNNING = "Running"
    RESTARTING = "Restarting"
    SUSPENDED = "Suspended"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class ConditionType(enum.StrEnum):
    """The conditions of the lifecycle (docs/architecture.md), plus SpecChangeRefused."""

    CREATED = "Created"
    RUNNING = "Running"
    RESTARTING = "Restarting"
    SUSPENDED = "Suspended"
    STALLED = "Stalled"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    # True while a change to a field that cannot change on an accepted job is being refused.
    SPEC_CHANGE_REFUSED = "SpecChangeRefused"
    # True while the coordinator cannot reach checkpoint storage (status.storage); left out until
    # the first outage, False once storage is reachable again.
    STORAGE_UNAVAILABLE = "StorageUnavailable"
    # Whether every pod of the current attempt runs; False names the pod and the scheduler's or
    # kubelet's reason (Unschedulable, ImagePullBackOff, ContainerCreating...).
    PODS_READY = "PodsReady"
    # True once the ranks of the current attempt finalized after different numbers of reports
    # (status.reportCountMismatch); left out otherwise.
    REPORT_COUNT_MISMATCH = "ReportCountMismatch"


class ConditionStatus(enum.StrEnum):
    """As in every Kubernetes condition."""

    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


# --------------------------------------------------------------------------------------------
# spec


class StorageSpec(WireModel):
    """Where checkpoints and the metric history are written."""

    uri: str = Field(
        min_length=1,
        description="Base URI of checkpoints: s3://bucket/prefix or file:///path (the template mounts "
        "the path). Checkpoints go under <uri>/<namespace>/<job>/.",
    )
    endpoint: str | None = Field(
        default=None, description="S3 endpoint URL for S3-compatible stores (AWS_ENDPOINT_URL_S3)."
    )
    credentials_secret: str | None = Field(
        default=None,
        description="Secret in the job's namespace with keys AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.",
    )
    retry_budget_seconds: int | None = Field(
        default=None,
        ge=1,
        description="How long the workers retry each storage operation (a checkpoint upload, the resume "
        "lookup) before giving up (TRAINJOB_STORAGE_RETRY_SECONDS; unset: the SDK's 120). A longer "
        "outage fails the attempt, which restarts from the latest committed checkpoint (failurePolicy).",
    )


class CheckpointSpec(WireModel):
    """Which committed checkpoints the coordinator keeps."""

    num_to_keep: int | None = Field(
        default=None, ge=1, description="Committed checkpoints to keep; unset keeps all of them."
    )
    score_attribute: str | None = Field(
        default=None,
        description="Metric that ranks checkpoints for retention and bestCheckpoint; unset ranks by "
        "iteration (the newest are kept).",
    )
    score_order: ScoreOrder = Field(
        default=ScoreOrder.MAX, description="Whether a higher (max) or lower (min) score is better."
    )


class FailurePolicySpec(WireModel):
    """How the gang is restarted when a worker fails."""

    max_restarts: int = Field(
        default=3,
        ge=0,
        description="Restarts after failures before the job fails (suspend/resume is not one).",
    )
    restart_policy: RestartPolicy = Field(
        default=RestartPolicy.ON_FAILURE,
        description="OnFailure: restart on any failure. ExitCode: restart on exit codes >= 128 (signals, "
        "OOM) and infrastructure failures, fail at once on 1-127. Never: fail at once.",
    )
    backoff_seconds: int = Field(
        default=10,
        ge=0,
        description="Wait before restart n is backoffSeconds * 2^(n-1), at most 300 seconds.",
    )
    node_loss_seconds: int = Field(
        default=60,
        ge=1,
        description="A pod whose node is not Ready (NotReady or Unknown) this long is lost: the gang "
        "restarts from the latest committed checkpoint without it, counted in status.disruptions. "
        "Well under Kubernetes' 300 s eviction; a lost pod stuck Terminating is force-deleted.",
    )
    max_disruptions: int | None = Field(
        default=None,
        ge=0,
        description="Restarts after disruptions (lost nodes, evictions, preemptions) before the job fails; "
        "unset: no bound. They never count against maxRestarts.",
    )


class StartupTimeoutAction(enum.StrEnum):
    """What a startup deadline does to the attempt."""

    RESTART = "Restart"
    FAIL = "Fail"


# Waiting reasons of the kubelet that do not fix themselves: an image that does not exist or
# cannot be named, a Secret or ConfigMap key that is missing.
DEFAULT_FAIL_FAST_REASONS: tuple[str, ...] = (
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CreateContainerConfigError",
)


class StartupPolicySpec(WireModel):
    """How long a gang may take to start, and which reasons end it at once (after Kueue's
    waitForPodsReady, per job)."""

    pods_ready_timeout_seconds: int | None = Field(
        default=None,
        ge=1,
        description="Every pod of an attempt must be running this long after the attempt started; "
        "else onTimeout. Unset: no deadline.",
    )
    unschedulable_timeout_seconds: int | None = Field(
        default=None,
        ge=1,
        description="A pod the scheduler cannot place this long ends the attempt (onTimeout). Unset: "
        "wait, as a queue or an autoscaler may still bring the capacity.",
    )
    fail_fast_reasons: list[str] = Field(
        default_factory=lambda: list(DEFAULT_FAIL_FAST_REASONS),
        json_schema_extra={"default": list(DEFAULT_FAIL_FAST_REASONS)},
        description="Container waiting reasons that fail the job, without a restart, once a pod has "
        "shown one for failFastGraceSeconds: they do not fix themselves.",
    )
    fail_fast_grace_seconds: int = Field(
        default=30,
        ge=0,
        description="How long a fail-fast reason may persist (a registry's passing hiccup) first.",
    )
    on_timeout: StartupTimeoutAction = Field(
        default=StartupTimeoutAction.RESTART,
        description="Restart: a new attempt (counted in restarts, bounded by maxRestarts). Fail: the job "
        "fails.",
    )


class PreemptionSpec(WireModel):
    """What a disruption notice buys the job: time to commit a checkpoint before its pods go."""

    grace_period_seconds: int = Field(
        default=30,
        ge=0,
        description="After a disruption notice (an eviction, a drain, a preemption, a pod deleted by "
        "someone else, suspend) the gang keeps running this long for a checkpoint at or after the "
        "notice's iteration to commit (worker_sdk.should_stop() tells the program); then its pods go "
        "and the next attempt resumes from that commit. 0: stop at once. Keep it within the pods' "
        "terminationGracePeriodSeconds.",
    )


# ---- elastic gangs (README.md, "Elastic gangs") ------------------------------------------


class ElasticSpec(WireModel):
    """An elastic gang: spec.workers is the most it runs with, minWorkers the fewest. Each attempt
    starts with the largest world size that fits the cluster; below spec.workers the operator
    looks for room every resizeIntervalSeconds and scales up through a notice (commit, restart)."""

    min_workers: int = Field(
        ge=1,
        description="The fewest pods the gang runs with (at most spec.workers). An attempt never "
        "starts smaller; with less room it waits, as a fixed gang does.",
    )
    resize_interval_seconds: int = Field(
        default=60,
        ge=1,
        description="Below spec.workers, how often the operator checks whether more workers fit and "
        "scales up (a notice: commit, then a restart with the bigger world, counted in disruptions). "
        "Also how long a pod may be unschedulable before the gang shrinks to the pods that were "
        "scheduled, unless startupPolicy.unschedulableTimeoutSeconds says otherwise.",
    )


# A CEL rule for API servers that evaluate them (the schema alone cannot compare two fields); the
# operator checks the same before the first attempt (`reconciling.validation`).
ELASTIC_MIN_WORKERS_RULE: dict[str, JsonValue] = {
    "rule": "!has(self.elastic) || self.elastic.minWorkers <= self.workers",
    "message": "spec.elastic.minWorkers must be at most spec.workers",
    "fieldPath": ".elastic.minWorkers",
}


class TrainJobSpec(WireModel):
    """A gang of worker pods running one distributed training program."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [ELASTIC_MIN_WORKERS_RULE]})

    workers: int = Field(
        default=1, ge=1, description="Pods in the gang (with elastic: the most it runs with)."
    )
    procs_per_worker: int = Field(
        default=1, ge=1, description="Processes per pod (torchrun --nproc-per-node); WORLD_SIZE counts them."
    )
    template: FreeObject = Field(
        description="PodTemplateSpec of every worker; its container named 'trainer' runs the training "
        "program and receives the TrainJob env contract."
    )
    config: FreeObject | None = Field(
        default=None,
        description="Free JSON handed to the program (TRAINJOB_CONFIG, get_context().get_config()).",
    )
    storage: StorageSpec = Field(description="Checkpoint storage.")
    checkpoints: CheckpointSpec = Field(
        default_factory=CheckpointSpec,
        json_schema_extra={"default": {}},
        description="Checkpoint retention.",
    )
    failure_policy: FailurePolicySpec = Field(
        default_factory=FailurePolicySpec,
        json_schema_extra={"default": {}},
        description="Restarts after failures.",
    )
    preemption: PreemptionSpec = Field(
        default_factory=PreemptionSpec,
        json_schema_extra={"default": {}},
        description="Disruption notices: time to checkpoint before the gang is stopped.",
    )
    startup_policy: StartupPolicySpec = Field(
        default_factory=StartupPolicySpec,
        json_schema_extra={"default": {}},
        description="Deadlines for a gang to start, and reasons that fail it at once.",
    )
    elastic: ElasticSpec | None = Field(
        default=None,
        description="Run with fewer workers (at least minWorkers) when the cluster has no room for "
        "spec.workers, and scale back up when it has.",
    )
    resume_from: str | None = Field(
        default=None,
        description="Checkpoint URI to start from (e.g. another job's) until this job commits its own.",
    )
    suspend: bool = Field(
        default=False,
        description="Deletes the pods gracefully and keeps the status; unsetting it resumes from the "
        "latest checkpoint without counting a restart.",
    )
    active_deadline_seconds: int | None = Field(
        default=None,
        ge=1,
        description="Fail the job (DeadlineExceeded) this long after it started or resumed.",
    )
    ttl_seconds_after_finished: int | None = Field(
        default=None, ge=0, description="Delete the job this long after it succeeded or failed."
    )
    stall_timeout_seconds: int | None = Field(
        default=None,
        ge=1,
        description="No report from the slowest rank for this long: condition Stalled, then a restart "
        "counted as a failure.",
    )


# --------------------------------------------------------------------------------------------
# status


class Condition(WireModel):
    """One aspect of the job's state, as in every Kubernetes object's status."""

    type: ConditionType
    status: ConditionStatus
    reason: str | None = None
    message: str | None = None
    last_transition_time: datetime | None = None


class WorkerCounts(WireModel):
    """Worker pods of the current attempt."""

    active: NonNegativeInt = Field(default=0, description="Pending or running, not being deleted.")
    ready: NonNegativeInt = Field(default=0, description="Running with every container ready.")
    succeeded: NonNegativeInt = Field(default=0, description="Trainer exited 0.")
    failed: NonNegativeInt = Field(default=0, description="Trainer exited non-zero or the pod failed.")
    # Elastic gangs only (spec.elastic): the world size asked for and the one this attempt runs.
    desired: int | None = Field(default=None, description="Elastic gangs: spec.workers, the most it runs.")
    current: int | None = Field(
        default=None,
        description="Elastic gangs: the pods of the current attempt's world (while Restarting, of the next).",
    )

    @model_serializer(mode="wrap")
    def _without_unset_sizes(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """A fixed gang's counts stay the four numbers they always were (no nulls in patches)."""
        data: dict[str, Any] = handler(self)
        return {
            key: value
            for key, value in data.items()
            if key not in ("desired", "current") or value is not None
        }


class CheckpointSummary(WireModel):
    """status.latestCheckpoint / bestCheckpoint: a committed checkpoint (`worker_sdk._layout`)
    as the status shows it."""

    uri: str
    iteration: int | None = None
    attempt: int | None = None
    metrics: FreeObject | None = None
    size_bytes: int | None = None
    committed_at: datetime | None = None


class RetainedCheckpoint(WireModel):
    """A committed checkpoint that retention keeps."""

    uri: str
    iteration: int | None = None
    score: float | None = None


class SlowestRank(WireModel):
    """The rank whose latest report is the oldest: what stall detection watches."""

    rank: int | None = None
    iteration: int | None = None
    last_report_time: datetime | None = None


class StorageState(WireModel):
    """Whether the coordinator reaches checkpoint storage (it also probes it while idle). Every
    field is always set: a merge patch then replaces what an earlier coordinator wrote."""

    available: bool
    since: datetime | None = Field(
        default=None, description="When the coordinator saw storage become (un)available."
    )
    message: str | None = Field(default=None, description="The last storage error, or that it is reachable.")


class Notice(WireModel):
    """A disruption notice to the gang: the coordinator tells every rank (should_stop()) and the
    operator waits until `deadline` for a commit at or after the coordinator's stopIteration."""

    reason: str = Field(description="EvictionByEvictionAPI, PreemptionByScheduler, PodDeleted, Suspended...")
    message: str | None = None
    ranks: list[int] | None = Field(default=None, description="The ranks whose pods are being taken.")
    nodes: dict[str, list[int]] | None = Field(
        default=None, description="Their nodes, with the ranks on each."
    )
    attempt: int = Field(description="The attempt the notice is for.")
    since: datetime
    deadline: datetime = Field(description="When the gang is stopped whether or not a checkpoint committed.")


class StopAt(WireModel):
    """The coordinator's answer to a notice: every rank of `attempt` stops after `iteration`."""

    attempt: int
    iteration: int


class NoticeIgnored(WireModel):
    """The coordinator's finding that the gang of `attempt` will not act on the notice (no rank
    asked should_stop()): the operator stops it at once instead of waiting out the grace."""

    attempt: int
    message: str


class StartupState(WireModel):
    """Why the current attempt's pods are not all running yet, and since when that has been so."""

    reason: str
    since: datetime


class ReportCountMismatch(WireModel):
    """Ranks of one attempt finalized after different numbers of reports: the iterations only
    some ranks reported never complete (their checkpoints are given up). Typed, so that the
    operator reads the fields and never parses the coordinator's prose."""

    attempt: int = Field(description="The attempt whose ranks disagree (a later attempt ignores it).")
    short_ranks: list[int] = Field(description="The ranks that reported the fewest times.")
    reports: int = Field(description="How many times the short ranks reported.")
    longest_rank: int = Field(description="The lowest rank that reported the most times.")
    most_reports: int = Field(description="How many times that rank reported.")
    message: str = Field(description="The same, for people.")


# -- status.progress: progress and ETA ------------------------------------------------------------
class Progress(WireModel):
    """How far the job is, when its program told its total number of iterations
    (`worker_sdk.set_total_iterations`); the coordinator publishes it (`coordinator.progress`
    says how the estimate is made). Kubeflow Trainer's `trainerStatus` has the same two numbers
    as progressPercentage and estimatedRemainingSeconds."""

    total_iterations: int = Field(
        ge=1, description="Iterations (report() calls, counted across attempts) the program said it runs."
    )
    percentage: int = Field(
        ge=0, le=100, description="status.iteration over totalIterations, in percent, rounded down."
    )
    iterations_per_second: float | None = Field(
        default=None,
        ge=0,
        description="The recent rate: over the job's advances of the last two minutes of this attempt "
        "(at least its last two). Absent until the attempt has advanced twice.",
    )
    estimated_remaining_seconds: int | None = Field(
        default=None,
        ge=0,
        description="The iterations left at the recent rate, as of the latest iteration; 0 once every "
        "rank's function returned. Absent while the rate is not known.",
    )
    eta: str | None = Field(
        default=None, description="estimatedRemainingSeconds for people (5m12s, 3h4m): the ETA column."
    )


# -- end of status.progress --------------------------------------------------------------------


class TrainJobStatus(WireModel):
    """Observed state. Lifecycle fields are the operator's, progress fields the coordinator's."""

    # Operator-owned.
    phase: Phase | None = Field(default=None, description="Lifecycle phase.")
    conditions: list[Condition] | None = Field(
        default=None,
        description="Created, PodsReady, Running, Restarting, Suspended, Stalled, Succeeded, Failed, "
        "SpecChangeRefused, StorageUnavailable, ReportCountMismatch.",
    )
    observed_generation: int | None = Field(default=None, description="The generation last reconciled.")
    attempt: int | None = Field(
        default=None,
        description="Current attempt, from 0; pods are named <job>-<attempt>-<rank>. Each restart and "
        "each resume after a suspension starts a new attempt.",
    )
    restarts: int | None = Field(
        default=None, description="Restarts after failures so far, bounded by failurePolicy.maxRestarts."
    )
    workers: WorkerCounts | None = Field(default=None, description="Worker pods of the current attempt.")
    start_time: datetime | None = Field(
        default=None,
        description="When the job started or last resumed; activeDeadlineSeconds counts from it.",
    )
    completion_time: datetime | None = Field(default=None, description="When the job succeeded or failed.")
    attempt_start_time: datetime | None = Field(default=None, description="When the current attempt started.")
    restart_after: datetime | None = Field(
        default=None, description="When the backoff of the pending restart ends."
    )
    message: str | None = Field(default=None, description="What the job is doing, or why it failed.")
    reason: str | None = Field(
        default=None,
        description="Why the job is in its phase, in one CamelCase word (ImagePullBackOff, Unschedulable, "
        "WorkerFailed, NodeLost...): the Reason column of kubectl get tj.",
    )
    disruptions: int | None = Field(
        default=None,
        description="Restarts after disruptions (lost nodes, evictions, preemptions): not the program's "
        "failures, so not counted in restarts.",
    )
    startup: StartupState | None = Field(
        default=None, description="Why the current attempt's pods are not all running, since when."
    )
    notice: Notice | None = Field(
        default=None,
        description="The disruption notice the gang is acting on (should_stop()), until its pods stop.",
    )
    accepted_spec: FreeObject | None = Field(
        default=None,
        description="The spec fields fixed when the first attempt started (all but suspend, "
        "activeDeadlineSeconds, ttlSecondsAfterFinished, stallTimeoutSeconds, failurePolicy.maxRestarts); "
        "later changes to them are refused.",
    )
    # Coordinator-owned.
    iteration: int | None = Field(default=None, description="Highest iteration reported by every rank.")
    metrics: FreeObject | None = Field(default=None, description="Rank 0's metrics at that iteration.")
    last_report_time: datetime | None = Field(
        default=None, description="When the coordinator last got a report."
    )
    latest_checkpoint: CheckpointSummary | None = Field(
        default=None, description="The newest committed checkpoint: what a restart resumes from."
    )
    best_checkpoint: CheckpointSummary | None = Field(
        default=None, description="The committed checkpoint with the best checkpoints.scoreAttribute."
    )
    checkpoints: list[RetainedCheckpoint] | None = Field(
        default=None, description="The retained committed checkpoints, at most checkpoints.numToKeep."
    )
    slowest_rank: SlowestRank | None = Field(
        default=None, description="The rank whose latest report is the oldest (stall detection)."
    )
    storage: StorageState | None = Field(
        default=None,
        description="Whether the coordinator reaches checkpoint storage (condition StorageUnavailable).",
    )
    stop_at: StopAt | None = Field(
        default=None,
        description="Under a notice: the iteration from which every rank's should_stop() is True.",
    )
    notice_ignored: NoticeIgnored | None = Field(
        default=None,
        description="Under a notice: set when the program does not act on it (no rank asked "
        "should_stop()), so the gang stops at once instead of after preemption.gracePeriodSeconds.",
    )
    last_commit_time: datetime | None = Field(
        default=None,
        description="When the latest checkpoint was committed (a preemption victim that just saved "
        "loses least).",
    )
    report_count_mismatch: ReportCountMismatch | None = Field(
        default=None,
        description="Set once every rank finalized after different numbers of reports (condition "
        "ReportCountMismatch).",
    )
    coordinator_message: str | None = Field(
        default=None,
        description="What the coordinator finds wrong now, for people (conflicting reports, checkpoints "
        "that cannot commit yet, metric history lost in an outage); absent when nothing is.",
    )
    progress: Progress | None = Field(
        default=None,
        description="Percentage done and estimated time remaining, once the program told its total "
        "number of iterations (worker_sdk.set_total_iterations).",
    )

    @classmethod
    def from_wire_lenient(cls, data: Any) -> TrainJobStatus:
        """Parse a status, dropping fields that do not validate instead of failing.

        A status is what we and the coordinator wrote; one malformed field (a hand edit, an older
        coordinator) must not stop the job's reconciliation.
        """
        if not isinstance(data, dict):
            return cls()
        remaining = dict(data)
        while True:
            try:
                return cls.model_validate(remaining)
            except ValidationError as error:
                bad_keys = {str(err["loc"][0]) for err in error.errors() if err["loc"]}
                if not bad_keys & remaining.keys():
                    return cls()
                for key in bad_keys:
                    remaining.pop(key, None)


OPERATOR_STATUS_FIELDS: tuple[str, ...] = (
    "phase",
    "conditions",
    "observed_generation",
    "attempt",
    "restarts",
    "workers",
    "start_time",
    "completion_time",
    "attempt_start_time",
    "restart_after",
    "message",
    "reason",
    "disruptions",
    "startup",
    "notice",
    "accepted_spec",
)
COORDINATOR_STATUS_FIELDS: tuple[str, ...] = (
    "iteration",
    "metrics",
    "last_report_time",
    "latest_checkpoint",
    "best_checkpoint",
    "checkpoints",
    "slowest_rank",
    "storage",
    "stop_at",
    "notice_ignored",
    "last_commit_time",
    "report_count_mismatch",
    "coordinator_message",
    "progress",
)


# --------------------------------------------------------------------------------------------
# the object


class JobMetadata(WireModel):
    """The part of ObjectMeta the operator reads."""

    name: str
    namespace: str = "default"
    uid: str = ""
    generation: int | None = None
    creation_timestamp: datetime | None = None
    deletion_timestamp: datetime | None = None
    labels: dict[str, str] | None = None


class TrainJob(WireModel):
    """A whole TrainJob object. Use `TrainJob.from_wire(obj)` on what the API server returns."""

    api_version: str = constants.API_VERSION
    kind: str = constants.KIND
    metadata: JobMetadata
    spec: TrainJobSpec
    status: TrainJobStatus = Field(default_factory=TrainJobStatus)
