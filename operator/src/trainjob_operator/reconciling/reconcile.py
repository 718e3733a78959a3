"""The reconcile decision: (TrainJob, observed children, now) -> Decision. Pure, no I/O.

The kopf handlers parse nothing themselves: they pass the TrainJob dict as the API server gave it,
an `Observation` of its children, and the time; then apply the decision (status merge patch,
actions in order, requeue). The same inputs always yield the same decision (the report token
comes from `settings.token_factory`), and nothing that was observed to exist is created again.

Attempts and restarts (`attempt` equals the restarts so far only until a job is first suspended):
- `status.attempt` numbers the gangs, from 0; pods are `<job>-<attempt>-<rank>`. A new attempt
  starts after each restart *and* after each resume, so a resumed gang never shares pod names
  (or a coordinator attempt id) with the pods still terminating from before the suspension.
- `status.restarts` counts restarts after failures only, and is what `failurePolicy.maxRestarts`
  bounds and the Restarts printer column shows. Suspend/resume does not count.

Deleting a TrainJob needs no finalizer: every child carries a controller ownerReference, so the
garbage collector deletes them; a job with a deletionTimestamp gets an empty decision.

Spec changes to a started job: see `validation` (`MUTABLE_FIELDS`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from trainjob_operator.api import constants
from trainjob_operator.api.types import (
    OPERATOR_STATUS_FIELDS,
    Condition,
    ConditionStatus,
    ConditionType,
    JobMetadata,
    Notice,
    Phase,
    ReportCountMismatch,
    StartupState,
    StartupTimeoutAction,
    TrainJob,
    TrainJobSpec,
    TrainJobStatus,
    WorkerCounts,
)

from . import children, elastic, lifecycle, names
from .decision import (
    Action,
    AnnotatePod,
    CreateObject,
    Decision,
    DeleteJob,
    DeletePods,
    EmitEvent,
    EventType,
    RemoveSchedulingGate,
)
from .observation import ChildKind, CreateRefusal, NodeReadiness, Observation, PodObservation, PodOutcome
from .policies import (
    Disruption,
    ExponentialBackoff,
    FailureOutcome,
    FailureVerdict,
    WorkerFailure,
    decide_after_failure,
)
from .settings import OperatorSettings
from .validation import DNS_LABEL_MAX, accepted_fields, changed_fields, effective_spec, validate_spec

# While waiting on something a pod event will also report (pods starting or terminating), look
# again after this long anyway, in case an event was missed.
POLL_SECONDS = 5.0
# A failed gang cannot make progress (a rank is gone and collectives hang), so its survivors get
# time to flush a report, not the pod's full grace period (30 s by default): restarts come sooner.
FAILED_GANG_GRACE_SECONDS = 5
# While a failure is held until the gang's nodes renew their Leases (every 10 s by a kubelet),
# look again this often: Lease renewals do not wake a job (they would, every 10 s per node).
_LEASE_POLL_SECONDS = 2.0
# Reasons of an elastic gang's resizes (status.reason, the notice, the Disrupted event).
_SCALE_UP = "ScaleUp"
_SCALE_DOWN = "ScaleDown"
# Waiting reasons that only say a pod is on its way (not a reason worth a warning).
_STARTING_REASONS = frozenset({"ContainerCreating", "PodInitializing", "SchedulingGated", "PodsStarting"})
# The reason (condition PodsReady, event, status.reason) of a pod the API server refused to
# create: Kubernetes' own, as the Job and ReplicaSet controllers report it.
_FAILED_CREATE = "FailedCreate"
# A refused creation is tried again this often: what refuses it (a quota, a missing PriorityClass,
# a policy) changes at a person's pace, and each try is a write the API server turns down.
REFUSED_CREATE_RETRY_SECONDS = 10.0

_SHARED_CHILDREN: tuple[tuple[ChildKind, Callable[[TrainJob, OperatorSettings], dict[str, Any]]], ...] = (
    (ChildKind.TOKEN_SECRET, lambda job, settings: children.token_secret(job, settings.token_factory())),
    (ChildKind.SERVICE_ACCOUNT, lambda job, _: children.coordinator_service_account(job)),
    (ChildKind.ROLE, lambda job, _: children.coordinator_role(job)),
    (ChildKind.ROLE_BINDING, lambda job, _: children.coordinator_role_binding(job)),
    (ChildKind.SERVICE, lambda job, _: children.headless_service(job)),
)


def reconcile(
    job: Mapping[str, Any],
    observed: Observation,
    now: datetime,
    settings: OperatorSettings | None = None,
) -> Decision:
    """Decide what to do about one TrainJob.

    `job` is the object as the API server returns it (metadata, spec, status); `observed` its
    children; `now` an aware datetime (naive means UTC). Never raises on a bad spec or status:
    a spec that cannot run fails the job with a message and an Event.
    """
    metadata = JobMetadata.from_wire(job.get("metadata") or {})
    if metadata.deletion_timestamp is not None:
        return Decision()
    aware_now = now if now.tzinfo is not None else now.replace(tzinfo=UTC)
    return _Reconciliation(
        metadata=metadata,
        raw_spec=job.get("spec"),
        status=TrainJobStatus.from_wire_lenient(job.get("status")),
        observed=observed,
        # Status timestamps have whole seconds, like the API server's own.
        now=aware_now.astimezone(UTC).replace(microsecond=0),
        settings=settings or OperatorSettings(),
    ).run()


class _Reconciliation:
    """One reconcile pass: a working copy of the operator-owned status and the actions so far."""

    def __init__(
        self,
        *,
        metadata: JobMetadata,
        raw_spec: Any,
        status: TrainJobStatus,
        observed: Observation,
        now: datetime,
        settings: OperatorSettings,
    ) -> None:
        self.metadata = metadata
        self.raw_spec = raw_spec
        self.original = status
        self.status = status
        self.observed = observed
        self.now = now
        self.settings = settings
        self.actions: list[Action] = []
        self.requeues: list[float] = []
        # What the job runs with (accepted fixed fields + requested mutable ones), and what was asked.
        self.spec: TrainJobSpec | None = None
        self.requested: TrainJobSpec | None = None

    # ---- results ---------------------------------------------------------------------------

    def run(self) -> Decision:
        self._update(observed_generation=self.metadata.generation)
        try:
            self.requested = TrainJobSpec.from_wire(self.raw_spec)
            accepted = self.status.accepted_spec
            self.spec = self.requested if accepted is None else effective_spec(accepted, self.requested)
        except ValidationError as error:
            if self.phase in lifecycle.TERMINAL_PHASES:
                self._finished()
            else:
                self._fail("InvalidSpec", _validation_message(error))
        else:
            self._step()
        return self._decision()

    def _decision(self) -> Decision:
        old = self.original.model_dump(mode="json", by_alias=True)
        new = self.status.model_dump(mode="json", by_alias=True)
        operator_keys = {TrainJobStatus.model_fields[name].alias or name for name in OPERATOR_STATUS_FIELDS}
        patch = {key: new[key] for key in sorted(operator_keys) if new[key] != old[key]}
        due = [seconds for seconds in self.requeues if seconds >= 0]
        return Decision(
            status_patch=patch,
            actions=tuple(self.actions),
            requeue_after=max(min(due), 1.0) if due else None,
        )

    # ---- working status --------------------------------------------------------------------

    @property
    def phase(self) -> Phase | None:
        return self.status.phase

    @property
    def conditions(self) -> list[Condition]:
        return list(self.status.conditions or [])

    @property
    def job(self) -> TrainJob:
        """The job as its children are built: an elastic gang's spec.workers is this attempt's
        world size (WORLD_SIZE, the coordinator's ranks)."""
        assert self.spec is not None
        spec = self.spec
        if spec.elastic is not None and self._gang_size() != spec.workers:
            spec = spec.model_copy(update={"workers": self._gang_size()})
        return TrainJob(metadata=self.metadata, spec=spec, status=self.status)

    def _gang_size(self) -> int:
        """The pods of the current attempt: spec.workers, or an elastic gang's current size."""
        spec = self.spec_or_fail
        current = self.status.workers.current if self.status.workers is not None else None
        if spec.elastic is None or current is None:
            return spec.workers
        return max(1, min(current, spec.workers))

    def _update(self, **fields: Any) -> None:
        self.status = self.status.model_copy(update=fields)

    def _transition(self, target: Phase, reason: str, message: str) -> None:
        lifecycle.check_transition(self.phase, target)
        conditions = lifecycle.enter_phase(self.conditions, target, reason, message, self.now)
        self._update(phase=target, conditions=conditions, message=message, reason=reason)

    def _set_condition(self, kind: ConditionType, status: ConditionStatus, reason: str, message: str) -> None:
        conditions = lifecycle.set_condition(self.conditions, kind, status, reason, message, self.now)
        self._update(conditions=conditions)

    def _event(self, reason: str, message: str, event_type: EventType = EventType.NORMAL) -> None:
        self.actions.append(EmitEvent(reason=reason, message=message, type=event_type))

    def _requeue_in(self, seconds: float) -> None:
        self.requeues.append(seconds)

    def _seconds_until(self, moment: datetime) -> float:
        return (moment - self.now).total_seconds()

    # ---- the state machine -------------------------------------------------------------------

    def _step(self) -> None:
        if self.phase in lifecycle.TERMINAL_PHASES:
            self._finished()
            return
        if self.phase is None:
            self._admit()
            if self.phase is not Phase.PENDING:
                return
        self._check_spec_changes()
        if self.phase in lifecycle.ACTIVE_PHASES:
            # Only a running coordinator keeps status.storage current; while restarting or
            # suspended it is what the last one saw, so the condition stays as it was.
            self._check_storage()
            self._check_report_counts()
        if self.phase is not Phase.SUSPENDED and self._deadline_exceeded():
            return
        if self.spec_or_fail.suspend and self.phase is not Phase.SUSPENDED:
            self._suspend()
            return
        if self.phase is Phase.RESTARTING:
            self._restarting()
        elif self.phase is Phase.SUSPENDED:
            self._suspended()
        if self.phase in lifecycle.ACTIVE_PHASES:
            self._active()

    @property
    def spec_or_fail(self) -> TrainJobSpec:
        assert self.spec is not None
        return self.spec

    def _admit(self) -> None:
        """A new job: validate it, then start attempt 0 (or wait, suspended, until resumed)."""
        self._update(restarts=0)
        if self.spec_or_fail.suspend:
            self._transition(
                Phase.SUSPENDED, "CreatedSuspended", "created suspended; unset spec.suspend to start"
            )
            self._event("Suspended", "created suspended")
            return
        self._update(start_time=self.now)
        self._start_attempt(0, "Created", "job created")

    def _start_attempt(self, attempt: int, reason: str, event_message: str) -> None:
        """Enter Pending for a new attempt; the first one validates and accepts the spec."""
        spec = self.spec_or_fail
        if self.status.accepted_spec is None:
            problems = validate_spec(self.metadata.name, spec)
            if problems:
                self._fail("InvalidSpec", "; ".join(problems))
                return
            self._update(accepted_spec=accepted_fields(spec))
            self._set_condition(ConditionType.CREATED, ConditionStatus.TRUE, "Accepted", "spec accepted")
        longest = names.pod_name(self.metadata.name, attempt, spec.workers - 1)
        if len(longest) > DNS_LABEL_MAX:
            self._fail(
                "InvalidSpec",
                f"metadata.name: attempt {attempt} would name pod {longest!r}, longer than the "
                f"{DNS_LABEL_MAX} characters of a hostname",
            )
            return
        size = spec.workers
        if spec.elastic is not None:
            size = self._elastic_start_size(attempt)
        self._update(
            attempt=attempt,
            attempt_start_time=self.now,
            restart_after=None,
            workers=WorkerCounts(desired=spec.workers, current=size)
            if spec.elastic is not None
            else WorkerCounts(),
            startup=None,
            notice=None,
        )
        self._transition(Phase.PENDING, reason, f"starting attempt {attempt} with {size} workers")
        self._event(reason, f"{event_message}: starting attempt {attempt}")

    def _check_spec_changes(self) -> None:
        """Refuse changes to fields that are fixed once the job started (see `validation`)."""
        accepted = self.status.accepted_spec
        refused = lifecycle.condition_is_true(self.conditions, ConditionType.SPEC_CHANGE_REFUSED)
        assert self.requested is not None
        changed = changed_fields(accepted, self.requested) if accepted is not None else []
        if changed:
            message = (
                f"spec fields cannot change once the job has started: {', '.join(changed)}; the job goes on "
                "with the values it started with (change them back, or delete and recreate the job)"
            )
            if refused is None or refused.message != message:
                self._set_condition(
                    ConditionType.SPEC_CHANGE_REFUSED, ConditionStatus.TRUE, "ImmutableFieldChanged", message
                )
                self._event("SpecChangeRefused", message, EventType.WARNING)
            return
        if refused is not None:
            self._set_condition(
                ConditionType.SPEC_CHANGE_REFUSED,
                ConditionStatus.FALSE,
                "SpecRestored",
                "the fixed spec fields have their accepted values again",
            )

    def _check_storage(self) -> None:
        """Turn the coordinator's status.storage into the StorageUnavailable condition, with an
        event at each change: unreachable, unreachable past the workers' retry budget (their
        uploads fail from then on and the attempt restarts), reachable again."""
        state = self.status.storage
        if state is None:
            return
        current = next((c for c in self.conditions if c.type is ConditionType.STORAGE_UNAVAILABLE), None)
        since = state.since or self.now
        if state.available:
            if current is not None and current.status is ConditionStatus.TRUE:
                message = f"checkpoint storage is reachable again since {_rfc3339(since)}"
                self._set_condition(
                    ConditionType.STORAGE_UNAVAILABLE, ConditionStatus.FALSE, "StorageReachable", message
                )
                self._event("StorageAvailable", message)
            return
        budget = self.spec_or_fail.storage.retry_budget_seconds or constants.DEFAULT_STORAGE_RETRY_SECONDS
        remaining = self._seconds_until(since + timedelta(seconds=budget))
        error = state.message or "unknown error"
        if remaining > 0:
            self._requeue_in(remaining)
            reason, event = "StorageUnreachable", "StorageUnavailable"
            message = (
                f"the coordinator cannot reach checkpoint storage since {_rfc3339(since)}: {error}; the "
                f"workers retry each upload for up to {budget}s (storage.retryBudgetSeconds)"
            )
        else:
            reason, event = "RetryBudgetExceeded", "StorageRetryBudgetExceeded"
            message = (
                f"checkpoint storage unreachable since {_rfc3339(since)}, longer than "
                f"storage.retryBudgetSeconds ({budget}s): checkpoint uploads fail and the attempt restarts "
                f"from the latest committed checkpoint (failurePolicy): {error}"
            )
        # Only a change of reason is news: the error text varies from one retry to the next.
        if current is None or current.status is not ConditionStatus.TRUE or current.reason != reason:
            self._set_condition(ConditionType.STORAGE_UNAVAILABLE, ConditionStatus.TRUE, reason, message)
            self._event(event, message, EventType.WARNING)

    def _report_count_mismatch(self) -> ReportCountMismatch | None:
        """The coordinator's status.reportCountMismatch, when it is about the current attempt
        (a coordinator publishes only what it saw, so an earlier attempt's may still be there)."""
        mismatch = self.status.report_count_mismatch
        if mismatch is None or mismatch.attempt != (self.status.attempt or 0):
            return None
        return mismatch

    def _check_report_counts(self) -> None:
        """Turn status.reportCountMismatch into the ReportCountMismatch condition, with one Warning
        event. The job goes on and ends as its workers do (see `_succeed`)."""
        mismatch = self._report_count_mismatch()
        current = lifecycle.condition_is_true(self.conditions, ConditionType.REPORT_COUNT_MISMATCH)
        if mismatch is None:
            if current is not None:  # an earlier attempt's: this one has not finalized unequally
                self._set_condition(
                    ConditionType.REPORT_COUNT_MISMATCH,
                    ConditionStatus.FALSE,
                    "NewAttempt",
                    f"attempt {self.status.attempt or 0} has not seen ranks report unequally",
                )
            return
        if current is not None and current.message == mismatch.message:
            return
        kind = ConditionType.REPORT_COUNT_MISMATCH
        self._set_condition(kind, ConditionStatus.TRUE, "RanksReportedUnequally", mismatch.message)
        self._event("ReportCountMismatch", mismatch.message, EventType.WARNING)

    def _deadline_exceeded(self) -> bool:
        deadline = self.spec_or_fail.active_deadline_seconds
        start = self.status.start_time
        if deadline is None or start is None:
            return False
        remaining = self._seconds_until(start + timedelta(seconds=deadline))
        if remaining > 0:
            self._requeue_in(remaining)
            return False
        self._fail("DeadlineExceeded", f"the job ran longer than activeDeadlineSeconds ({deadline}s)")
        return True

    def _active(self) -> None:
        """Pending or Running: make the children, then judge the attempt's pods."""
        spec = self.spec_or_fail
        attempt = self.status.attempt or 0
        pods = self.observed.pods_of(attempt)
        older = self.observed.pods_not_of(attempt)
        self._delete_pods(older)
        self._count_workers(pods)
        self._annotate_last_commit(pods)

        if self._noticed(pods):
            return
        failures = self._failures(pods)
        if failures:
            on_lost_nodes = self._on_nodes_not_ready(pods)
            if on_lost_nodes:
                # A rank's node is already gone: the others' failures are its doing (a crash fails
                # their collectives at once), so the attempt ends as a disruption.
                self._after_disruption(
                    [Disruption(pod.rank, pod.name, "NodeLost", why) for pod, why in on_lost_nodes]
                )
                return
            verdict = self._verdict(failures)
            if self._held_for_node_leases(pods, verdict):
                return
            self._end_after_failure(verdict)
            return
        size = self._gang_size()
        if len(pods) == size and all(p.outcome is PodOutcome.SUCCEEDED for p in pods.values()):
            self._succeed()
            return

        for kind, build in _SHARED_CHILDREN:
            if kind not in self.observed.existing:
                self.actions.append(CreateObject(build(self.job, self.settings)))
        missing = [rank for rank in range(size) if rank not in pods]
        if missing:
            if older:
                self._update(message=f"waiting for {len(older)} pods of earlier attempts to terminate")
                self._requeue_in(POLL_SECONDS)
                return
            pod_names = {rank: names.pod_name(self.metadata.name, attempt, rank) for rank in missing}
            refused = [
                (r, self.observed.refused[n]) for r, n in pod_names.items() if n in self.observed.refused
            ]
            if refused and self._creation_refused(*refused[0]):
                return
            for rank in missing:
                self.actions.append(CreateObject(children.worker_pod(self.job, attempt, rank, self.settings)))
            self._requeue_in(REFUSED_CREATE_RETRY_SECONDS if refused else POLL_SECONDS)
            return

        # Every pod of the attempt exists: let the scheduler place the gang.
        for pod in pods.values():
            if constants.GANG_SCHEDULING_GATE in pod.scheduling_gates and not pod.deleting:
                self.actions.append(RemoveSchedulingGate(pod.name, pod.scheduling_gates))
        started = all(p.outcome in (PodOutcome.RUNNING, PodOutcome.SUCCEEDED) for p in pods.values())
        if self.phase is Phase.PENDING:
            if not started:
                self._check_startup(pods)
                self._requeue_in(POLL_SECONDS)
                return
            message = f"attempt {attempt}: all {size} workers running"
            self._set_condition(ConditionType.PODS_READY, ConditionStatus.TRUE, "AllPodsRunning", message)
            self._update(startup=None)
            self._transition(Phase.RUNNING, "AllWorkersRunning", message)
            if lifecycle.condition_is_true(self.conditions, ConditionType.STALLED):
                self._set_condition(ConditionType.STALLED, ConditionStatus.FALSE, "NewAttempt", message)
            self._event("Running", message)
        self._check_stall()
        if spec.elastic is not None and self.phase is Phase.RUNNING:
            self._maybe_scale_up(pods)

    def _annotate_last_commit(self, pods: Mapping[int, PodObservation]) -> None:
        """Keep trainjob.dev/last-commit-time on the attempt's live pods equal to
        status.lastCommitTime (the coordinator's), so preemption tooling that reads pods can
        prefer victims that just saved. One patch per pod per commit the operator sees, none for
        pods that finished or are going (their annotation no longer matters)."""
        committed = self.status.last_commit_time
        if committed is None:
            return
        value = children.commit_time_annotation(committed)
        for _, pod in sorted(pods.items()):
            if pod.deleting or pod.outcome in (PodOutcome.SUCCEEDED, PodOutcome.FAILED):
                continue
            if pod.last_commit_time != value:
                self.actions.append(AnnotatePod(pod.name, constants.ANNOTATION_LAST_COMMIT_TIME, value))

    def _failures(self, pods: dict[int, PodObservation]) -> list[WorkerFailure]:
        failures = []
        for rank, pod in sorted(pods.items()):
            if pod.outcome is PodOutcome.FAILED:
                failures.append(
                    WorkerFailure(rank, pod.name, pod.exit_code, pod.failure_reason, pod.failure_message)
                )
        if self.phase is Phase.RUNNING:
            attempt = self.status.attempt or 0
            for rank in range(self._gang_size()):
                if rank not in pods:
                    name = names.pod_name(self.metadata.name, attempt, rank)
                    failures.append(WorkerFailure(rank, name, None, "PodMissing: the pod disappeared"))
        return failures

    # ---- disruptions: lost nodes, evictions, preemptions -------------------------------------

    def _node_lost_for(self, pod: PodObservation) -> float | None:
        """Seconds the pod's node has not been Ready, or None while it is (or is not watched)."""
        node = self.observed.node_of(pod)
        if node is None or node.ready is NodeReadiness.TRUE:
            return None
        return (self.now - (node.since or self.now)).total_seconds()

    def _disruptions(self, pods: Mapping[int, PodObservation]) -> list[Disruption]:
        """Pods the cluster is taking away: DisruptionTarget (eviction, preemption, taint manager),
        or a node not Ready for failurePolicy.nodeLossSeconds. Not the program's failure."""
        grace = self.spec_or_fail.failure_policy.node_loss_seconds
        found = []
        for rank, pod in sorted(pods.items()):
            if pod.outcome is PodOutcome.SUCCEEDED:
                continue
            lost_for = self._node_lost_for(pod)
            if pod.disruption is not None:
                found.append(Disruption(rank, pod.name, pod.disruption.reason, pod.disruption.message))
            elif pod.deleting:
                # The operator deletes a current attempt's pods only after it left Running/Pending.
                found.append(Disruption(rank, pod.name, "PodDeleted", "deleted by someone else"))
            elif lost_for is not None and lost_for >= grace:
                node = self.observed.node_of(pod)
                assert node is not None
                found.append(
                    Disruption(
                        rank,
                        pod.name,
                        "NodeLost",
                        f"node {node.name} not Ready ({node.ready}) for {lost_for:.0f}s "
                        f"(failurePolicy.nodeLossSeconds {grace})",
                    )
                )
            elif lost_for is not None:
                self._requeue_in(grace - lost_for)
        return found

    def _current_notice(self) -> Notice | None:
        notice = self.status.notice
        return notice if notice is not None and notice.attempt == (self.status.attempt or 0) else None

    def _raise_notice(
        self, reason: str, message: str, pods: Mapping[int, PodObservation], ranks: list[int]
    ) -> None:
        """Tell the gang (through the coordinator, which reads status.notice) to stop at its next
        report and checkpoint; the pods keep running until `_notice_settled`."""
        grace = self.spec_or_fail.preemption.grace_period_seconds
        nodes: dict[str, list[int]] = {}
        for rank in ranks:
            pod = pods.get(rank)
            if pod is not None and pod.node:
                nodes.setdefault(pod.node, []).append(rank)
        notice = Notice(
            reason=reason,
            message=message,
            ranks=sorted(ranks),
            nodes=nodes or None,
            attempt=self.status.attempt or 0,
            since=self.now,
            deadline=self.now + timedelta(seconds=grace),
        )
        self._update(notice=notice, message=f"{message}: stopping at the next checkpoint (within {grace}s)")
        self._event(
            "PreemptionNotice",
            f"{message}; every rank stops at its next checkpoint, within {grace}s "
            "(preemption.gracePeriodSeconds)",
            EventType.WARNING,
        )
        self._requeue_in(min(POLL_SECONDS, grace))

    def _notice_settled(self, notice: Notice, pods: Mapping[int, PodObservation]) -> bool:
        """The gang may go: a checkpoint at or after the stop iteration committed after the
        notice, every pod has left, the program does not act on notices, or the grace ran out.
        Else look again soon."""
        stop = self.status.stop_at
        latest = self.status.latest_checkpoint
        committed = (
            stop is not None
            and stop.attempt == notice.attempt
            and latest is not None
            and latest.iteration is not None
            and latest.iteration >= stop.iteration
            and (latest.committed_at is None or latest.committed_at >= notice.since - timedelta(seconds=1))
        )
        left = all(
            p.outcome in (PodOutcome.SUCCEEDED, PodOutcome.FAILED) or p.deleting for p in pods.values()
        )
        remaining = self._seconds_until(notice.deadline)
        if committed or left or remaining <= 0 or self._notice_ignored(notice):
            return True
        self._requeue_in(min(POLL_SECONDS, remaining))
        return False

    def _notice_ignored(self, notice: Notice) -> bool:
        """The coordinator found that no rank of the notice's attempt acts on it
        (status.noticeIgnored): waiting out the grace would only discard what the ranks compute
        meanwhile, so the gang goes at once, as with preemption.gracePeriodSeconds 0."""
        ignored = self.status.notice_ignored
        if ignored is None or ignored.attempt != notice.attempt:
            return False
        self._event("NoticeIgnored", f"{ignored.message}: stopping the gang now", EventType.NORMAL)
        return True

    def _noticed(self, pods: Mapping[int, PodObservation]) -> bool:
        """Disruptions of a running gang become a notice first (when preemption.gracePeriodSeconds
        allows one); once it settles, the attempt ends as a disruption. True when this pass is
        done with the attempt (noticed, waiting, or ended)."""
        notice = self._current_notice()
        disruptions = self._disruptions(pods)
        if notice is None:
            if not disruptions:
                return False
            grace = self.spec_or_fail.preemption.grace_period_seconds
            coordinator = pods.get(0)
            can_tell = (
                coordinator is not None
                and coordinator.outcome is PodOutcome.RUNNING
                and not coordinator.deleting
            )
            if (
                grace == 0
                or self.phase is not Phase.RUNNING
                or not can_tell
                or disruptions[0].reason == "NodeLost"
            ):
                # Nobody to tell (the coordinator's own pod is going, or a node is already gone).
                self._after_disruption(disruptions)
                return True
            message = "; ".join(d.describe() for d in disruptions)
            self._raise_notice(disruptions[0].reason, message, pods, [d.rank for d in disruptions])
            return True
        stop = self.status.stop_at
        stopped_for_it = (
            stop is not None
            and stop.attempt == notice.attempt
            and (self.status.iteration or 0) >= stop.iteration
        )
        if (
            all(p.outcome is PodOutcome.SUCCEEDED for p in pods.values())
            and len(pods) == self._gang_size()
            and not stopped_for_it
        ):
            return False  # the program finished before the stop iteration: a success
        if not self._notice_settled(notice, pods):
            return True
        if not disruptions and notice.reason == _SCALE_UP:
            # The whole gang stops to come back bigger: one disruption, not one per rank.
            disruptions = [Disruption(0, pods[0].name if 0 in pods else "", _SCALE_UP, notice.message or "")]
        self._after_disruption(
            disruptions
            or [
                Disruption(rank, pods[rank].name if rank in pods else "", notice.reason, notice.message or "")
                for rank in notice.ranks or [0]
            ]
        )
        return True

    # ---- elastic gangs (README.md, "Elastic gangs") -------------------------------------------

    def _workers_that_fit(self) -> int | None:
        spec = self.spec_or_fail
        return elastic.workers_that_fit(spec.template, self.observed.nodes.values(), spec.workers)

    def _elastic_start_size(self, attempt: int) -> int:
        """An elastic attempt starts with the largest gang that fits (`elastic`), at least
        minWorkers and at most spec.workers; after a ScaleDown at most the pods that were
        scheduled. Without Nodes to judge by (a namespaced install) it asks for spec.workers."""
        spec = self.spec_or_fail
        assert spec.elastic is not None
        fit = self._workers_that_fit()
        size = spec.workers if fit is None else fit
        previous = self.status.workers.current if self.status.workers is not None else None
        if self.status.reason == _SCALE_DOWN and previous is not None:
            size = min(size, previous)
        size = max(spec.elastic.min_workers, min(size, spec.workers))
        if size != (previous if previous is not None else spec.workers):
            if fit is None:
                why = "no Nodes to judge by"
            elif fit < spec.elastic.min_workers:
                why = f"only {fit} fit, but elastic.minWorkers is {spec.elastic.min_workers}"
            elif fit < spec.workers:
                why = "the nodes have no room for more"
            else:
                why = "the nodes have room for it"
            was = f" (was {previous})" if previous is not None else ""
            self._event("Resized", f"attempt {attempt} runs {size} of {spec.workers} workers{was}: {why}")
        return size

    def _scale_down_to_scheduled(self, pods: Mapping[int, PodObservation], message: str, grace: int) -> bool:
        """A pod of an elastic gang unschedulable past the grace: the next attempt runs with the
        pods the scheduler did place (the scheduler's own verdict on what fits), if that is at
        least minWorkers. A disruption (`ScaleDown`), not a restart. True when it shrank."""
        spec = self.spec_or_fail
        if spec.elastic is None:
            return False
        size = self._gang_size()
        placed = sum(1 for p in pods.values() if p.node and not p.deleting)
        if placed < spec.elastic.min_workers or placed >= size:
            return False
        text = (
            f"{message}; unschedulable for {grace}s with {placed} of {size} pods scheduled: the next "
            f"attempt runs {placed} workers (elastic.minWorkers {spec.elastic.min_workers})"
        )
        assert self.status.workers is not None
        self._update(workers=self.status.workers.model_copy(update={"current": placed}))
        self._event(
            "Resized",
            f"attempt {(self.status.attempt or 0) + 1} runs {placed} of {spec.workers} "
            f"workers (was {size}): only {placed} could be scheduled",
        )
        unscheduled = min((p for p in pods.values() if not p.node), key=lambda p: p.rank)
        self._after_disruption([Disruption(unscheduled.rank, unscheduled.name, _SCALE_DOWN, text)])
        return True

    def _maybe_scale_up(self, pods: Mapping[int, PodObservation]) -> None:
        """A running elastic gang below spec.workers: from resizeIntervalSeconds after its attempt
        started, when more workers fit, scale up through a notice (every rank commits at the stop
        iteration, then the gang restarts bigger from that commit); look again every interval."""
        spec = self.spec_or_fail
        assert spec.elastic is not None
        size = self._gang_size()
        if size >= spec.workers:
            return
        interval = spec.elastic.resize_interval_seconds
        due = (self.status.attempt_start_time or self.now) + timedelta(seconds=interval)
        if self.now < due:
            self._requeue_in(self._seconds_until(due))
            return
        fit = self._workers_that_fit()
        if fit is None or fit <= size:
            self._requeue_in(interval)
            return
        message = (
            f"{fit} of {spec.workers} workers fit and the gang runs {size}: scaling up "
            "(elastic.resizeIntervalSeconds)"
        )
        if spec.preemption.grace_period_seconds == 0:
            self._after_disruption([Disruption(0, pods[0].name if 0 in pods else "", _SCALE_UP, message)])
            return
        self._raise_notice(_SCALE_UP, message, pods, sorted(pods))

    def _after_disruption(self, disruptions: list[Disruption]) -> None:
        """End the attempt without blaming the program: a new one starts at once (no backoff) from
        the latest committed checkpoint, counted in status.disruptions, not restarts."""
        spec = self.spec_or_fail
        count = self.status.disruptions or 0
        message = "; ".join(d.describe() for d in disruptions)
        bound = spec.failure_policy.max_disruptions
        if bound is not None and count >= bound:
            self._fail(
                "TooManyDisruptions",
                f"{message}; all {bound} disruptions (failurePolicy.maxDisruptions) are spent",
            )
            return
        self._delete_pods(self.observed.pods, grace_period_seconds=FAILED_GANG_GRACE_SECONDS)
        self._update(disruptions=count + 1, restart_after=None, startup=None, notice=None)
        self._transition(Phase.RESTARTING, disruptions[0].reason, message)
        self._event(
            "Disrupted",
            f"{message}; restarting from the latest committed checkpoint (disruption {count + 1})",
            EventType.WARNING,
        )
        self._requeue_in(POLL_SECONDS)

    # ---- startup: why a gang is not running yet ---------------------------------------------

    def _startup_problem(self, pods: Mapping[int, PodObservation]) -> tuple[str, str, PodObservation] | None:
        """The most telling reason a pod of the attempt is not running, with a message naming the
        pod (and container and image): the kubelet's own problems first, then the scheduler's,
        then a pod that is merely starting."""
        fail_fast = set(self.spec_or_fail.startup_policy.fail_fast_reasons)
        ranked: list[tuple[int, str, str, PodObservation]] = []
        for pod in pods.values():
            if pod.outcome is not PodOutcome.PENDING:
                continue
            for container in pod.waiting:
                reason = str(container.reason)
                image = f" (image {container.image})" if container.image else ""
                detail = f": {container.message}" if container.message else ""
                text = f"pod {pod.name}: container {container.name}{image}: {reason}{detail}"
                rank = 0 if reason in fail_fast else 3 if reason in _STARTING_REASONS else 1
                ranked.append((rank, reason, text, pod))
            if pod.unscheduled is not None:
                reason = pod.unscheduled.reason
                text = f"pod {pod.name}: {reason}" + (
                    f": {pod.unscheduled.message}" if pod.unscheduled.message else ""
                )
                ranked.append((2 if reason != "SchedulingGated" else 3, reason, text, pod))
        if not ranked:
            waiting = sorted(p.name for p in pods.values() if p.outcome is PodOutcome.PENDING)
            if not waiting:
                return None
            return "PodsStarting", f"waiting for pods to start: {', '.join(waiting)}", pods[min(pods)]
        _, reason, text, pod = min(ranked, key=lambda item: (item[0], item[3].rank))
        return reason, text, pod

    def _check_startup(self, pods: Mapping[int, PodObservation]) -> None:
        """Say on the job why its pods are not running (condition PodsReady, status.reason and
        message, an event per change of reason), and end the attempt when startupPolicy says so."""
        policy = self.spec_or_fail.startup_policy
        problem = self._startup_problem(pods)
        if problem is None:
            return
        reason, message, pod = problem
        previous = self.status.startup
        # The kubelet alternates ErrImagePull and ImagePullBackOff on every retry: a fail-fast
        # reason that follows another keeps counting from the first.
        same = previous is not None and (
            previous.reason == reason
            or (previous.reason in policy.fail_fast_reasons and reason in policy.fail_fast_reasons)
        )
        since = previous.since if previous is not None and same else self.now
        self._say_not_ready(reason, message, since)
        if reason in policy.fail_fast_reasons:
            remaining = self._seconds_until(since + timedelta(seconds=policy.fail_fast_grace_seconds))
            if remaining <= 0:
                self._fail(
                    reason,
                    f"{message}; {reason} does not fix itself, so the job fails without restarting "
                    "(startupPolicy.failFastReasons)",
                )
                return
            self._requeue_in(remaining)
        timeout = policy.unschedulable_timeout_seconds
        elastic_spec = self.spec_or_fail.elastic
        if elastic_spec is not None and timeout is None:
            timeout = elastic_spec.resize_interval_seconds
        if timeout is not None and pod.unscheduled is not None and pod.unscheduled.reason == "Unschedulable":
            unschedulable_since = pod.unscheduled.since or since
            remaining = self._seconds_until(unschedulable_since + timedelta(seconds=timeout))
            if remaining <= 0 and self._scale_down_to_scheduled(pods, message, timeout):
                return
            if remaining <= 0 and policy.unschedulable_timeout_seconds is not None:
                self._startup_timeout(
                    pod.rank,
                    pod.name,
                    "UnschedulableTimeout",
                    f"{message}; unschedulable for {timeout}s (startupPolicy.unschedulableTimeoutSeconds)",
                )
                return
            # An elastic gang already at its smallest waits, as a fixed gang does.
            if remaining > 0:
                self._requeue_in(remaining)
        self._pods_ready_deadline(pod.rank, pod.name, message)

    def _pods_ready_deadline(self, rank: int, pod: str, message: str) -> bool:
        """End the attempt as startupPolicy says once podsReadyTimeoutSeconds has passed since
        it started (True), else look again then."""
        timeout = self.spec_or_fail.startup_policy.pods_ready_timeout_seconds
        started = self.status.attempt_start_time
        if timeout is None or started is None:
            return False
        remaining = self._seconds_until(started + timedelta(seconds=timeout))
        if remaining > 0:
            self._requeue_in(remaining)
            return False
        self._startup_timeout(
            rank,
            pod,
            "PodsReadyTimeout",
            f"{message}; the gang was not running {timeout}s after attempt {self.status.attempt or 0} "
            "started (startupPolicy.podsReadyTimeoutSeconds)",
        )
        return True

    def _say_not_ready(self, reason: str, message: str, since: datetime) -> None:
        """Condition PodsReady False with why, status.reason and message, and an event when the
        reason changed; `since`: when this reason (or the run of reasons it continues) began."""
        condition = next((c for c in self.conditions if c.type is ConditionType.PODS_READY), None)
        # An event per change of a reason worth a warning; a gang merely on its way (gated,
        # creating containers, starting) says so in the condition only: every job passes through
        # those, and an event each would double the writes a job costs the API server.
        merely_starting = reason in _STARTING_REASONS
        changed = (
            condition is None or condition.reason != reason or condition.status is not ConditionStatus.FALSE
        )
        if changed and not merely_starting:
            self._event(reason, message, EventType.WARNING)
        # Set even if it never held: a gang that never ran says why, which the generic rule of
        # leaving a never-true condition out would hide.
        conditions = [c for c in self.conditions if c.type is not ConditionType.PODS_READY]
        self._update(
            conditions=[
                *conditions,
                Condition(
                    type=ConditionType.PODS_READY,
                    status=ConditionStatus.FALSE,
                    reason=reason,
                    message=message,
                    last_transition_time=condition.last_transition_time
                    if condition is not None and condition.status is ConditionStatus.FALSE
                    else self.now,
                ),
            ],
            startup=StartupState(reason=reason, since=since),
            reason=reason,
            message=message,
        )

    def _creation_refused(self, rank: int, refusal: CreateRefusal) -> bool:
        """The API server refused to create a pod of the attempt: say so (reason FailedCreate
        with its answer, as the Job controller's event does); fail the job when the refusal is
        permanent (422: the template is invalid), or end the attempt when podsReadyTimeoutSeconds
        runs out meanwhile. True when it ended either."""
        message = (
            f"pod {refusal.pod}: the API server refused to create it "
            f"({refusal.code} {refusal.reason}): {refusal.message}"
        )
        previous = self.status.startup
        since = previous.since if previous is not None and previous.reason == _FAILED_CREATE else self.now
        self._say_not_ready(_FAILED_CREATE, message, since)
        if refusal.permanent:
            self._fail(
                _FAILED_CREATE,
                f"{message}; it refuses this pod template every time and spec.template is fixed once the "
                "job started, so the job fails without retrying (fix the template and create the job again)",
            )
            return True
        return self._pods_ready_deadline(rank, refusal.pod, message)

    def _startup_timeout(self, rank: int, pod: str, reason: str, message: str) -> None:
        if self.spec_or_fail.startup_policy.on_timeout is StartupTimeoutAction.FAIL:
            self._fail(reason, message)
            return
        self._update(startup=None)
        self._after_failure([WorkerFailure(rank, pod, None, f"{reason}: {message}")])

    def _check_stall(self) -> None:
        timeout = self.spec_or_fail.stall_timeout_seconds
        running = lifecycle.condition_is_true(self.conditions, ConditionType.RUNNING)
        if timeout is None or running is None or running.last_transition_time is None:
            return
        slowest = self.status.slowest_rank
        since = running.last_transition_time
        if slowest is not None and slowest.last_report_time is not None:
            since = max(since, slowest.last_report_time)
        remaining = self._seconds_until(since + timedelta(seconds=timeout))
        if remaining > 0:
            self._requeue_in(remaining)
            return
        rank = slowest.rank if slowest is not None and slowest.rank is not None else 0
        pod_rank = rank // self.spec_or_fail.procs_per_worker
        message = f"no report from rank {rank} for {timeout}s (stallTimeoutSeconds)"
        self._set_condition(ConditionType.STALLED, ConditionStatus.TRUE, "NoProgress", message)
        self._event("Stalled", message, EventType.WARNING)
        pod = names.pod_name(self.metadata.name, self.status.attempt or 0, pod_rank)
        self._after_failure([WorkerFailure(rank, pod, None, f"Stalled: {message}")])

    def _verdict(self, failures: list[WorkerFailure]) -> FailureVerdict:
        """Restart or fail after `failures`, by the job's failure policy and its restarts so far."""
        policy = self.spec_or_fail.failure_policy
        return decide_after_failure(
            failures, policy.restart_policy, self.status.restarts or 0, policy.max_restarts
        )

    def _after_failure(self, failures: list[WorkerFailure]) -> None:
        """End the attempt: restart after a backoff, or fail the job."""
        self._end_after_failure(self._verdict(failures))

    def _end_after_failure(self, verdict: FailureVerdict) -> None:
        spec = self.spec_or_fail
        restarts = self.status.restarts or 0
        if verdict.outcome is FailureOutcome.FAIL:
            self._fail("WorkerFailed", verdict.message)
            return
        delay = ExponentialBackoff(spec.failure_policy.backoff_seconds).delay(restarts + 1)
        self._delete_pods(self.observed.pods, grace_period_seconds=FAILED_GANG_GRACE_SECONDS)
        self._update(restarts=restarts + 1, restart_after=self.now + timedelta(seconds=delay))
        self._transition(Phase.RESTARTING, "WorkerFailed", verdict.message)
        self._event("Restarting", f"{verdict.message}; next attempt in {delay:g}s", EventType.WARNING)
        self._requeue_in(delay)

    def _restarting(self) -> None:
        """Wait until the failed attempt's pods are gone and the backoff has passed, then go on."""
        self._attribute_failure_to_a_lost_node()
        spec = self.spec_or_fail
        restarts = self.status.restarts or 0
        if restarts > spec.failure_policy.max_restarts:
            self._fail(
                "WorkerFailed",
                f"failurePolicy.maxRestarts was lowered to {spec.failure_policy.max_restarts}, "
                f"below the {restarts} restarts already made",
            )
            return
        self._delete_pods(self.observed.pods, grace_period_seconds=FAILED_GANG_GRACE_SECONDS)
        self._count_workers(self.observed.pods_of(self.status.attempt or 0))
        waits = []
        if self.observed.pods:
            waits.append(POLL_SECONDS)
        if self.status.restart_after is not None and self.status.restart_after > self.now:
            waits.append(self._seconds_until(self.status.restart_after))
        if waits:
            self._requeue_in(min(waits))
            return
        # A failure counts as a restart; a disruption (or a failure recounted as one) does not.
        cause = (
            f"restart {restarts}"
            if self.status.reason == "WorkerFailed"
            else f"disruption {self.status.disruptions or 0} ({self.status.reason})"
        )
        self._start_attempt((self.status.attempt or 0) + 1, "Restarted", cause)

    def _on_nodes_not_ready(self, pods: Mapping[int, PodObservation]) -> list[tuple[PodObservation, str]]:
        """Pods of the attempt whose node is not Ready (whatever for how long), with why."""
        found = []
        for pod in pods.values():
            node = self.observed.node_of(pod)
            if node is not None and node.ready is not NodeReadiness.TRUE:
                found.append(
                    (pod, f"node {node.name} not Ready ({node.ready}); the other ranks failed with it")
                )
        return found

    def _held_for_node_leases(self, pods: Mapping[int, PodObservation], verdict: FailureVerdict) -> bool:
        """Before a failure ends the job for good, rule out a crashed node: a crash fails the
        other ranks' collectives at once, while the node still looks Ready for the node monitor's
        grace (40-50 s on a real cluster), and a disruption must not end the job. Every node of
        the gang must prove alive by renewing its Lease after the failure; one that has not within
        its leaseDurationSeconds is lost, as the node lifecycle controller would judge it (without
        waiting for its grace and status write), and the attempt ends as a disruption. Only a
        failure that would end the job waits (a restart is recounted later, see
        `_attribute_failure_to_a_lost_node`); without Leases (a namespaced install) or a time
        of failure, nothing waits. True when the failure is held or ended as a disruption."""
        if verdict.outcome is not FailureOutcome.FAIL:
            return False
        ended = [moment for pod in pods.values() if (moment := pod.finished_at) is not None]
        if not ended:
            return False
        # Kubelet times have whole seconds: a renewal in the failure's second may precede it.
        after = min(ended) + timedelta(seconds=1)
        lost: list[Disruption] = []
        waiting: dict[str, datetime] = {}
        for rank, pod in sorted(pods.items()):
            node = self.observed.node_of(pod)
            if node is None or node.lease is None or node.lease.renewed >= after:
                continue
            deadline = after + timedelta(seconds=node.lease.duration_seconds)
            if self.now >= deadline:
                why = (
                    f"node {node.name} did not renew its Lease in the {node.lease.duration_seconds}s "
                    f"after the failure (last renewed {_rfc3339(node.lease.renewed)}); "
                    f"the other ranks failed with it"
                )
                lost.append(Disruption(rank, pod.name, "NodeLost", why))
            else:
                waiting[node.name] = deadline
        if lost:
            self._after_disruption(lost)
            return True
        if not waiting:
            return False
        until = max(waiting.values())
        seconds = max(int((until - after).total_seconds()), 0)
        message = (
            f"rank {verdict.cause.rank} (pod {verdict.cause.pod_name}) failed; waiting up to {seconds}s "
            f"(until {_rfc3339(until)}) for node {', '.join(sorted(waiting))} to renew its Lease, "
            "to rule out a lost node"
        )
        if self.status.message != message:
            self._update(message=message)
            self._event("CheckingNodes", message)
        self._requeue_in(min(_LEASE_POLL_SECONDS, self._seconds_until(until)))
        return True

    def _attribute_failure_to_a_lost_node(self) -> None:
        """A node that crashes takes its ranks down, and the others' collectives fail at once,
        before the node is seen lost (the node monitor's grace): the attempt ended as a
        WorkerFailed restart. When a pod of that attempt turns out to sit on a node that is not
        Ready and has not heartbeated since before the failure, the restart is the node's doing:
        it is counted as a disruption instead, and the backoff is dropped."""
        if self.status.reason != "WorkerFailed":
            return
        restarting = lifecycle.condition_is_true(self.conditions, ConditionType.RESTARTING)
        failed_at = restarting.last_transition_time if restarting is not None else None
        if failed_at is None:
            return
        attempt = self.status.attempt or 0
        for pod in self.observed.pods:
            node = self.observed.node_of(pod)
            if (
                pod.attempt == attempt
                and node is not None
                and node.ready is not NodeReadiness.TRUE
                and node.last_heartbeat is not None
                # Status times have whole seconds: a heartbeat in the second the failure was seen
                # came before it as often as not.
                and node.last_heartbeat < failed_at + timedelta(seconds=1)
            ):
                message = (
                    f"the failure of attempt {attempt} followed the loss of node {node.name} (its last "
                    f"heartbeat {_rfc3339(node.last_heartbeat)}, rank {pod.rank} on it): a disruption, "
                    "not a restart"
                )
                self._update(
                    restarts=max(0, (self.status.restarts or 0) - 1),
                    disruptions=(self.status.disruptions or 0) + 1,
                    restart_after=None,
                    reason="NodeLost",
                    message=message,
                )
                self._event("Disrupted", message, EventType.WARNING)
                return

    def _suspend(self) -> None:
        """Suspend: a running gang gets a notice first, so it commits a checkpoint before its
        pods go (resume then loses nothing); then the pods are deleted."""
        if self.phase is Phase.RUNNING and self.spec_or_fail.preemption.grace_period_seconds > 0:
            pods = self.observed.pods_of(self.status.attempt or 0)
            notice = self._current_notice()
            if notice is None:
                self._raise_notice("Suspended", "spec.suspend is set", pods, sorted(pods))
                return
            if not self._notice_settled(notice, pods):
                return
        self._update(notice=None)
        self._delete_pods(self.observed.pods)
        self._count_workers(self.observed.pods_of(self.status.attempt or 0))
        self._update(restart_after=None)
        self._transition(Phase.SUSPENDED, "Suspended", "suspended: pods deleted, status kept")
        self._event("Suspended", "spec.suspend is set: deleting the pods")

    def _suspended(self) -> None:
        self._delete_pods(self.observed.pods)
        self._count_workers(self.observed.pods_of(self.status.attempt or 0))
        if self.spec_or_fail.suspend:
            return
        attempt = 0 if self.status.attempt is None else self.status.attempt + 1
        # As for a Kubernetes Job, the deadline counts from the resume.
        self._update(start_time=self.now)
        self._start_attempt(attempt, "Resumed", "spec.suspend was unset")

    def _succeed(self) -> None:
        workers = self._gang_size()
        self._delete_unfinished_pods()
        self._update(completion_time=self.now, restart_after=None)
        message = f"all {workers} workers exited 0 (attempt {self.status.attempt or 0})"
        # The coordinator's report-count mismatch (ranks reported different numbers of times) is
        # kept: the job succeeds, with the warning in the message (the condition and the event
        # came from `_check_report_counts`).
        mismatch = self._report_count_mismatch()
        if mismatch is not None:
            message = f"{message}, but {mismatch.message}"
        self._transition(Phase.SUCCEEDED, "AllWorkersSucceeded", message)
        self._event("Succeeded", message)
        self._finished()

    def _fail(self, reason: str, message: str) -> None:
        self._delete_unfinished_pods()
        self._update(completion_time=self.now, restart_after=None)
        self._transition(Phase.FAILED, reason, message)
        self._event(reason, message, EventType.WARNING)
        self._finished()

    def _finished(self) -> None:
        """Succeeded or Failed: remove leftover pods, delete the job once its TTL has passed."""
        if self.phase not in lifecycle.TERMINAL_PHASES:
            return
        self._delete_unfinished_pods()
        ttl = self.spec.ttl_seconds_after_finished if self.spec is not None else None
        finished = self.status.completion_time
        if ttl is None or finished is None:
            return
        remaining = self._seconds_until(finished + timedelta(seconds=ttl))
        if remaining > 0:
            self._requeue_in(remaining)
        else:
            self.actions.append(DeleteJob(reason=f"ttlSecondsAfterFinished ({ttl}s) passed"))

    # ---- pods ------------------------------------------------------------------------------

    def _delete_unfinished_pods(self) -> None:
        """A finished job keeps the pods of its last attempt that have exited, so `kubectl logs`
        still tells what happened (they hold no resources; owner references delete them with the
        job); pods still running and pods of earlier attempts go."""
        last = self.status.attempt or 0
        finished = (PodOutcome.SUCCEEDED, PodOutcome.FAILED)
        self._delete_pods(
            tuple(pod for pod in self.observed.pods if pod.attempt != last or pod.outcome not in finished),
            grace_period_seconds=FAILED_GANG_GRACE_SECONDS if self.phase is Phase.FAILED else None,
        )

    def _delete_pods(
        self,
        pods: Mapping[int, PodObservation] | tuple[PodObservation, ...],
        *,
        grace_period_seconds: int | None = None,
    ) -> None:
        """Ask to delete the pods not already being deleted (nor asked for in this pass).

        A pod whose node has been lost for failurePolicy.nodeLossSeconds would stay Terminating
        until the node returns (no kubelet confirms the deletion), so it is force-deleted (grace
        0), terminating already or not. That is safe only because a zombie of an earlier attempt
        can neither report nor overwrite a committed checkpoint (fencing)."""
        listed = pods.values() if isinstance(pods, Mapping) else pods
        asked: dict[str, int | None] = {
            name: action.grace_period_seconds
            for action in self.actions
            if isinstance(action, DeletePods)
            for name in action.names
        }
        node_loss = self.spec.failure_policy.node_loss_seconds if self.spec is not None else None
        graceful: dict[int, list[str]] = {}
        forced: dict[int, list[str]] = {}
        for pod in listed:
            lost_for = self._node_lost_for(pod)
            if node_loss is not None and lost_for is not None and lost_for >= node_loss:
                if asked.get(pod.name, -1) != 0:
                    forced.setdefault(pod.attempt, []).append(pod.name)
            elif node_loss is not None and lost_for is not None and pod.deleting:
                self._requeue_in(node_loss - lost_for)
            elif not pod.deleting and pod.name not in asked:
                graceful.setdefault(pod.attempt, []).append(pod.name)
        for attempt, pod_names in sorted(forced.items()):
            self.actions.append(DeletePods(attempt, tuple(pod_names), 0))
        for attempt, pod_names in sorted(graceful.items()):
            self.actions.append(DeletePods(attempt, tuple(pod_names), grace_period_seconds))

    def _count_workers(self, pods: Mapping[int, PodObservation]) -> None:
        alive = [p for p in pods.values() if not p.deleting]
        spec = self.spec
        sizes: dict[str, int | None] = {}
        if spec is not None and spec.elastic is not None:
            sizes = {"desired": spec.workers, "current": self._gang_size()}
        self._update(
            workers=WorkerCounts(
                active=sum(p.outcome in (PodOutcome.PENDING, PodOutcome.RUNNING) for p in alive),
                ready=sum(p.ready for p in alive),
                succeeded=sum(p.outcome is PodOutcome.SUCCEEDED for p in pods.values()),
                failed=sum(p.outcome is PodOutcome.FAILED for p in pods.values()),
                **sizes,
            )
        )


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _validation_message(error: ValidationError) -> str:
    """Name each bad field by its path in the manifest, e.g. `spec.failurePolicy.restartPolicy`."""
    problems = []
    for item in error.errors():
        path = ".".join(["spec", *(str(part) for part in item["loc"])])
        problems.append(f"{path}: {item['msg']}")
    return "; ".join(problems) or str(error)
