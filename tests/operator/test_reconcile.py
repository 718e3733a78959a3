"""The reconcile decision, without any server: every phase and transition of the lifecycle
(docs/architecture.md, "The lifecycle")."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from tests.operator.trainjob_factories import NOW, SETTINGS, Cluster, job, later, observe, pod, timestamp
from trainjob_operator.api.types import Phase, RestartPolicy
from trainjob_operator.reconciling import (
    POLL_SECONDS,
    ChildKind,
    CreateObject,
    Decision,
    DeleteJob,
    DeletePods,
    EmitEvent,
    EventType,
    reconcile,
)
from trainjob_operator.reconciling.lifecycle import ALLOWED_TRANSITIONS, IllegalTransition, check_transition
from trainjob_operator.reconciling.policies import (
    ExponentialBackoff,
    FailureOutcome,
    WorkerFailure,
    decide_after_failure,
)


def events(decision: Decision) -> list[tuple[str, str]]:
    return [(e.reason, e.type.value) for e in decision.of_type(EmitEvent)]


def created(decision: Decision) -> list[str]:
    return [f"{a.kind}/{a.name}" for a in decision.of_type(CreateObject)]


def deleted(decision: Decision) -> list[str]:
    return [name for a in decision.of_type(DeletePods) for name in a.names]


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    """The condition of that type; an empty dict when there is none."""
    return next((c for c in status.get("conditions", []) if c["type"] == kind), {})


def running_cluster(**spec: Any) -> Cluster:
    """A job whose attempt 0 has every worker running."""
    cluster = Cluster(job(**spec))
    cluster.reconcile()
    cluster.run_all(0)
    cluster.reconcile()
    assert cluster.status["phase"] == "Running"
    return cluster


def restarting_cluster(**spec: Any) -> Cluster:
    cluster = running_cluster(**spec)
    cluster.set_pod(0, 1, exit_code=1)
    cluster.reconcile()
    assert cluster.status["phase"] == "Restarting"
    return cluster


# ---- admission --------------------------------------------------------------------------------


def test_new_job_creates_every_child_and_is_pending() -> None:
    decision = reconcile(job(), observe(existing=frozenset()), NOW, SETTINGS)
    assert created(decision) == [
        "Secret/digits-token",
        "ServiceAccount/digits-coordinator",
        "Role/digits-coordinator",
        "RoleBinding/digits-coordinator",
        "Service/digits",
        "Pod/digits-0-0",
        "Pod/digits-0-1",
    ]
    patch = decision.status_patch
    assert patch["phase"] == "Pending"
    assert patch["attempt"] == 0 and patch["restarts"] == 0
    assert patch["startTime"] == timestamp(NOW) and patch["attemptStartTime"] == timestamp(NOW)
    assert patch["observedGeneration"] == 1
    assert condition(patch, "Created")["status"] == "True"
    assert set(patch["acceptedSpec"]) == {
        "workers",
        "procsPerWorker",
        "template",
        "config",
        "storage",
        "checkpoints",
        "failurePolicy",
        "preemption",
        "startupPolicy",
    }
    assert patch["acceptedSpec"]["failurePolicy"] == {
        "restartPolicy": "OnFailure",
        "backoffSeconds": 1,
        "nodeLossSeconds": 60,
    }
    assert events(decision) == [("Created", "Normal")]
    assert decision.requeue_after == POLL_SECONDS


def test_new_suspended_job_creates_nothing() -> None:
    decision = reconcile(job(suspend=True), observe(existing=frozenset()), NOW, SETTINGS)
    assert decision.status_patch["phase"] == "Suspended"
    assert created(decision) == []
    assert "attempt" not in decision.status_patch
    assert "acceptedSpec" not in decision.status_patch


def test_status_patch_holds_only_operator_fields_and_only_changes() -> None:
    cluster = running_cluster()
    assert cluster.job is not None
    cluster.job["status"].update(iteration=7, metrics={"loss": 0.5}, lastReportTime=timestamp(NOW))
    decision = cluster.reconcile()
    assert decision == Decision()
    cluster.set_pod(0, 0, exit_code=0)
    patch = cluster.reconcile().status_patch
    assert set(patch) == {"workers"}


def test_observed_generation_follows_the_job() -> None:
    cluster = running_cluster()
    cluster.update_spec(ttlSecondsAfterFinished=60)
    assert cluster.reconcile().status_patch == {"observedGeneration": 2}


# ---- Pending ----------------------------------------------------------------------------------


def test_pending_waits_for_pods_without_creating_again() -> None:
    cluster = Cluster(job())
    cluster.reconcile()
    decision = cluster.reconcile()
    assert created(decision) == []
    # The pass says why the job waits (the pods' containers are being created), once.
    assert set(decision.status_patch) == {"workers", "conditions", "message", "reason", "startup"}
    assert decision.status_patch["workers"] == {"active": 2, "ready": 0, "succeeded": 0, "failed": 0}
    assert decision.status_patch["reason"] == "ContainerCreating"
    assert decision.requeue_after == POLL_SECONDS
    assert cluster.reconcile() == Decision(requeue_after=POLL_SECONDS)


def test_pending_creates_only_what_is_missing() -> None:
    obj = Cluster(job())
    obj.reconcile()
    assert obj.job is not None
    observation = observe(
        pod(0, 0, phase="Pending"), existing=frozenset({ChildKind.TOKEN_SECRET, ChildKind.SERVICE})
    )
    decision = reconcile(obj.job, observation, NOW, SETTINGS)
    assert created(decision) == [
        "ServiceAccount/digits-coordinator",
        "Role/digits-coordinator",
        "RoleBinding/digits-coordinator",
        "Pod/digits-0-1",
    ]


def test_pending_becomes_running_when_every_worker_runs() -> None:
    cluster = Cluster(job())
    cluster.reconcile()
    cluster.set_pod(0, 0)
    assert cluster.reconcile().status_patch.get("phase") is None
    cluster.set_pod(0, 1)
    decision = cluster.reconcile()
    assert decision.status_patch["phase"] == "Running"
    assert condition(cluster.status, "Running")["status"] == "True"
    assert cluster.status["workers"] == {"active": 2, "ready": 2, "succeeded": 0, "failed": 0}
    assert events(decision) == [("Running", "Normal")]


def test_running_job_with_nothing_new_decides_nothing() -> None:
    cluster = running_cluster()
    assert cluster.reconcile() == Decision()


def test_missing_shared_child_of_a_running_job_is_recreated() -> None:
    cluster = running_cluster()
    cluster.existing.discard(ChildKind.SERVICE)
    assert created(cluster.reconcile()) == ["Service/digits"]


# ---- Succeeded --------------------------------------------------------------------------------


def test_succeeds_when_every_trainer_exited_zero() -> None:
    cluster = running_cluster()
    cluster.set_pod(0, 0, exit_code=0, phase="Running")
    decision = cluster.reconcile()
    assert "phase" not in decision.status_patch
    assert cluster.status["workers"]["succeeded"] == 1
    cluster.set_pod(0, 1, exit_code=0, phase="Succeeded")
    decision = cluster.reconcile()
    assert decision.status_patch["phase"] == "Succeeded"
    assert decision.status_patch["completionTime"] == timestamp(NOW)
    # Pods that exited stay for `kubectl logs`; the job's deletion takes them along.
    assert deleted(decision) == []
    assert events(decision) == [("Succeeded", "Normal")]
    assert condition(cluster.status, "Running")["status"] == "False"
    assert condition(cluster.status, "Succeeded")["status"] == "True"


def test_pods_finishing_before_they_were_seen_running_still_succeed() -> None:
    cluster = Cluster(job())
    cluster.reconcile()
    cluster.set_pod(0, 0, phase="Succeeded", exit_code=0)
    cluster.set_pod(0, 1, phase="Succeeded", exit_code=0)
    assert cluster.reconcile().status_patch["phase"] == "Succeeded"


# ---- failures and restarts ----------------------------------------------------------------------


def test_worker_failure_ends_the_attempt_and_restarts_after_backoff() -> None:
    cluster = running_cluster()
    cluster.set_pod(0, 1, exit_code=1)
    decision = cluster.reconcile()
    patch = decision.status_patch
    assert patch["phase"] == "Restarting"
    assert patch["restarts"] == 1
    assert patch["restartAfter"] == timestamp(later(1))
    assert "rank 1 (pod digits-0-1) exited with code 1" in patch["message"]
    # Every pod of the attempt goes, the failed one included (it still holds its name).
    assert sorted(deleted(decision)) == ["digits-0-0", "digits-0-1"]
    assert events(decision) == [("Restarting", "Warning")]
    assert decision.requeue_after == 1.0


@pytest.mark.parametrize(
    ("policy", "exit_code", "reason", "pod_phase", "expected"),
    [
        ("OnFailure", 1, "Error", "Failed", "Restarting"),
        ("OnFailure", 137, "OOMKilled", "Failed", "Restarting"),
        ("ExitCode", 1, "Error", "Failed", "Failed"),
        ("ExitCode", 127, "Error", "Failed", "Failed"),
        ("ExitCode", 128, "Error", "Failed", "Restarting"),
        ("ExitCode", 137, "OOMKilled", "Failed", "Restarting"),
        ("ExitCode", 143, "Error", "Failed", "Restarting"),
        ("ExitCode", None, None, "Failed", "Restarting"),  # evicted: no exit code
        ("Never", 137, "OOMKilled", "Failed", "Failed"),
        ("Never", None, None, "Failed", "Failed"),
    ],
)
def test_restart_policy_classifies_failures(
    policy: str, exit_code: int | None, reason: str | None, pod_phase: str, expected: str
) -> None:
    cluster = running_cluster(failurePolicy={"maxRestarts": 3, "restartPolicy": policy, "backoffSeconds": 1})
    if exit_code is None:
        cluster.pods["digits-0-0"] = pod(0, 0, phase="Failed", ready=False, pod_reason="Evicted")
        cluster.pods["digits-0-0"]["status"]["containerStatuses"] = []
    else:
        cluster.set_pod(0, 0, phase=pod_phase, exit_code=exit_code, reason=reason)
    decision = cluster.reconcile()
    assert decision.status_patch["phase"] == expected
    assert "rank 0 (pod digits-0-0)" in decision.status_patch["message"]
    if expected == "Failed":
        assert decision.status_patch["completionTime"] == timestamp(NOW)
        assert condition(cluster.status, "Failed")["reason"] == "WorkerFailed"
        assert events(decision) == [("WorkerFailed", "Warning")]
        if exit_code is not None:
            assert f"exited with code {exit_code}" in decision.status_patch["message"]
        else:
            assert "Evicted" in decision.status_patch["message"]


TYPO_LOG = "/work/.venv/bin/python: No module named examples.nonexistent\n"
TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "/app/train.py", line 3, in <module>\n'
    "    import torchvision\n"
    "ModuleNotFoundError: No module named 'torchvision'\n"
)


@pytest.mark.parametrize(
    ("policy", "termination_message", "expected"),
    [
        # Failed at once (ExitCode does not retry 1): the cause is on the job.
        (
            "ExitCode",
            TYPO_LOG,
            "rank 1 (pod digits-0-1) exited with code 1 (Error): "
            "/work/.venv/bin/python: No module named examples.nonexistent; "
            "restartPolicy ExitCode does not retry it",
        ),
        # A restart says why as well; a traceback gives its last lines, the rest cut.
        (
            "OnFailure",
            TRACEBACK,
            "rank 1 (pod digits-0-1) exited with code 1 (Error): ... "
            'File "/app/train.py", line 3, in <module> / import torchvision / '
            "ModuleNotFoundError: No module named 'torchvision'; restart 1 of 3",
        ),
        # A long last line is cut from the front: the end says why.
        (
            "OnFailure",
            "x" * 1000 + " the end\n",
            "rank 1 (pod digits-0-1) exited with code 1 (Error): ... "
            + "x" * 232
            + " the end; restart 1 of 3",
        ),
        # No termination message (a File policy, nothing written): as before.
        ("OnFailure", None, "rank 1 (pod digits-0-1) exited with code 1 (Error); restart 1 of 3"),
        ("OnFailure", "\n\n", "rank 1 (pod digits-0-1) exited with code 1 (Error); restart 1 of 3"),
    ],
)
def test_a_failed_rank_says_why_in_the_message_and_event(
    policy: str, termination_message: str | None, expected: str
) -> None:
    cluster = running_cluster(failurePolicy={"maxRestarts": 3, "restartPolicy": policy, "backoffSeconds": 1})
    cluster.set_pod(0, 1, phase="Failed", exit_code=1, message=termination_message)
    decision = cluster.reconcile()
    assert decision.status_patch["message"] == expected
    [event] = decision.of_type(EmitEvent)
    assert event.message.startswith(expected)
    assert len(expected) < 400, "kept short"


def test_a_non_retryable_failure_wins_over_retryable_ones() -> None:
    cluster = running_cluster(failurePolicy={"maxRestarts": 3, "restartPolicy": "ExitCode"})
    cluster.set_pod(0, 0, phase="Failed", exit_code=137, reason="OOMKilled")
    cluster.set_pod(0, 1, phase="Failed", exit_code=2)
    decision = cluster.reconcile()
    assert decision.status_patch["phase"] == "Failed"
    assert "rank 1 (pod digits-0-1) exited with code 2" in decision.status_patch["message"]


def test_failure_while_pending_restarts_too() -> None:
    cluster = Cluster(job())
    cluster.reconcile()
    cluster.set_pod(0, 0, phase="Failed", exit_code=1)
    assert cluster.reconcile().status_patch["phase"] == "Restarting"


@pytest.mark.parametrize(
    ("disturbance", "reason"),
    [("deleted", "PodDeleted"), ("missing", "PodMissing")],
)
def test_a_running_pod_deleted_by_someone_else_is_a_disruption_and_a_gone_one_a_failure(
    disturbance: str, reason: str
) -> None:
    cluster = running_cluster()
    if disturbance == "deleted":
        cluster.pods["digits-0-1"]["metadata"]["deletionTimestamp"] = timestamp(NOW)
    else:
        del cluster.pods["digits-0-1"]
    decision = cluster.reconcile()
    assert decision.status_patch["phase"] == "Restarting"
    assert reason in decision.status_patch["message"]
    assert deleted(decision) == ["digits-0-0"]
    counts = (cluster.status.get("disruptions", 0), cluster.status["restarts"])
    assert counts == ((1, 0) if disturbance == "deleted" else (0, 1))


def test_restarting_waits_for_the_old_pods_then_the_backoff_then_starts_the_next_attempt() -> None:
    cluster = restarting_cluster()
    decision = cluster.reconcile()
    assert created(decision) == [] and deleted(decision) == []
    assert decision.requeue_after == 1.0  # min(poll, backoff left)
    cluster.finish_terminating()
    decision = cluster.reconcile(later(0.5))  # timestamps are whole seconds: 0.5 s is "now"
    assert created(decision) == [] and decision.requeue_after == 1.0
    decision = cluster.reconcile(later(1))
    assert decision.status_patch["phase"] == "Pending"
    assert decision.status_patch["attempt"] == 1
    assert decision.status_patch["restartAfter"] is None
    assert "restarts" not in decision.status_patch
    assert created(decision) == ["Pod/digits-1-0", "Pod/digits-1-1"]
    assert events(decision) == [("Restarted", "Normal")]


def test_backoff_doubles_per_restart_and_is_capped() -> None:
    backoff = ExponentialBackoff(10)
    assert [backoff.delay(n) for n in range(0, 8)] == [0, 10, 20, 40, 80, 160, 300, 300]
    assert ExponentialBackoff(1).delay(10_000) == 300
    cluster = restarting_cluster(failurePolicy={"maxRestarts": 5, "backoffSeconds": 10})
    assert cluster.status["restartAfter"] == timestamp(later(10))
    cluster.finish_terminating()
    cluster.reconcile(later(10))
    cluster.run_all(1)
    cluster.reconcile(later(10))
    cluster.set_pod(1, 0, exit_code=1)
    decision = cluster.reconcile(later(20))
    assert decision.status_patch["restartAfter"] == timestamp(later(40))
    assert decision.requeue_after == 20


def test_restarts_stop_at_max_restarts() -> None:
    cluster = running_cluster(failurePolicy={"maxRestarts": 1, "backoffSeconds": 0})
    cluster.set_pod(0, 0, exit_code=1)
    assert cluster.reconcile().status_patch["phase"] == "Restarting"
    cluster.finish_terminating()
    cluster.reconcile()
    cluster.run_all(1)
    cluster.reconcile()
    cluster.set_pod(1, 1, exit_code=3)
    decision = cluster.reconcile()
    assert decision.status_patch["phase"] == "Failed"
    assert decision.status_patch["message"] == (
        "rank 1 (pod digits-1-1) exited with code 3 (Error); "
        "all 1 restarts (failurePolicy.maxRestarts) are spent"
    )
    assert cluster.status["restarts"] == 1


def test_max_restarts_zero_fails_at_the_first_failure() -> None:
    cluster = running_cluster(failurePolicy={"maxRestarts": 0})
    cluster.set_pod(0, 0, exit_code=1)
    assert cluster.reconcile().status_patch["phase"] == "Failed"


def test_raising_max_restarts_on_a_running_job_takes_effect() -> None:
    cluster = running_cluster(failurePolicy={"maxRestarts": 0, "backoffSeconds": 1})
    cluster.update_spec(failurePolicy={"maxRestarts": 1, "restartPolicy": "OnFailure", "backoffSeconds": 1})
    assert "conditions" not in cluster.reconcile().status_patch
    cluster.set_pod(0, 0, exit_code=1)
    assert cluster.reconcile().status_patch["phase"] == "Restarting"


def test_lowering_max_restarts_below_the_restarts_made_fails_a_restarting_job() -> None:
    cluster = restarting_cluster(failurePolicy={"maxRestarts": 2, "backoffSeconds": 1})
    cluster.update_spec(failurePolicy={"maxRestarts": 0, "restartPolicy": "OnFailure", "backoffSeconds": 1})
    decision = cluster.reconcile()
    assert decision.status_patch["phase"] == "Failed"
    assert "maxRestarts was lowered to 0" in decision.status_patch["message"]


def test_next_attempt_waits_for_pods_of_older_attempts() -> None:
    cluster = restarting_cluster(failurePolicy={"maxRestarts": 2, "backoffSeconds": 0})
    cluster.pods["digits-0-0"]["metadata"].pop("deletionTimestamp")  # a delete that got lost
    cluster.pods["digits-0-1"]["metadata"].pop("deletionTimestamp")
    decision = cluster.reconcile(later(5))
    assert sorted(deleted(decision)) == ["digits-0-0", "digits-0-1"]
    assert created(decision) == [] and cluster.status["phase"] == "Restarting"
    cluster.finish_terminating()
    assert created(cluster.reconcile(later(5))) == ["Pod/digits-1-0", "Pod/digits-1-1"]


def test_new_attempt_resumes_from_the_latest_committed_checkpoint() -> None:
    cluster = restarting_cluster(resumeFrom="s3://other/job/checkpoint_000001")
    first = next(m for m in cluster.created if m["metadata"]["name"] == "digits-0-0")
    assert _env(first)["TRAINJOB_RESUME_CHECKPOINT"] == "s3://other/job/checkpoint_000001"
    assert cluster.job is not None
    cluster.job["status"]["latestCheckpoint"] = {
        "uri": "s3://trainjob/checkpoints/ml/digits/checkpoint_000004"
    }
    cluster.finish_terminating()
    cluster.reconcile(later(1))
    second = next(m for m in cluster.created if m["metadata"]["name"] == "digits-1-0")
    assert (
        _env(second)["TRAINJOB_RESUME_CHECKPOINT"] == "s3://trainjob/checkpoints/ml/digits/checkpoint_000004"
    )
    assert _env(second)["TRAINJOB_ATTEMPT"] == "1"


def _env(manifest: dict[str, Any]) -> dict[str, str]:
    trainer = manifest["spec"]["containers"][0]
    return {e["name"]: e.get("value", "") for e in trainer["env"]}


# ---- suspend ----------------------------------------------------------------------------------


def test_suspend_deletes_pods_and_keeps_status() -> None:
    cluster = running_cluster()
    assert cluster.job is not None
    cluster.job["status"]["iteration"] = 12
    cluster.update_spec(suspend=True)
    decision = cluster.reconcile()
    assert decision.status_patch["phase"] == "Suspended"
    assert sorted(deleted(decision)) == ["digits-0-0", "digits-0-1"]
    assert events(decision) == [("Suspended", "Normal")]
    assert cluster.status["iteration"] == 12 and cluster.status["attempt"] == 0
    assert condition(cluster.status, "Suspended")["status"] == "True"
    assert condition(cluster.status, "Running")["status"] == "False"
    # Still suspended: nothing more to do once the pods are terminating.
    assert cluster.reconcile().actions == ()


def test_resume_starts_a_new_attempt_without_counting_a_restart() -> None:
    cluster = running_cluster(activeDeadlineSeconds=100)
    cluster.update_spec(suspend=True)
    cluster.reconcile()
    cluster.update_spec(suspend=False)
    decision = cluster.reconcile(later(500))
    patch = decision.status_patch
    assert patch["phase"] == "Pending" and patch["attempt"] == 1
    assert "restarts" not in patch and cluster.status["restarts"] == 0
    assert patch["startTime"] == timestamp(later(500))  # the deadline counts from the resume
    assert events(decision) == [("Resumed", "Normal")]
    # The suspended attempt's pods are still terminating: the new ones wait for them.
    assert created(decision) == []
    cluster.finish_terminating()
    assert created(cluster.reconcile(later(501))) == ["Pod/digits-1-0", "Pod/digits-1-1"]


def test_suspend_during_restart_then_resume() -> None:
    cluster = restarting_cluster()
    cluster.update_spec(suspend=True)
    decision = cluster.reconcile()
    assert decision.status_patch["phase"] == "Suspended"
    assert decision.status_patch["restartAfter"] is None
    cluster.finish_terminating()
    cluster.update_spec(suspend=False)
    decision = cluster.reconcile(later(1))
    assert decision.status_patch["phase"] == "Pending" and decision.status_patch["attempt"] == 1
    assert cluster.status["restarts"] == 1
    assert created(decision) == ["Pod/digits-1-0", "Pod/digits-1-1"]


def test_job_created_suspended_starts_at_attempt_zero_on_resume() -> None:
    cluster = Cluster(job(suspend=True))
    cluster.reconcile()
    cluster.update_spec(suspend=False)
    decision = cluster.reconcile()
    assert decision.status_patch["attempt"] == 0 and decision.status_patch["phase"] == "Pending"
    assert "acceptedSpec" in decision.status_patch
    assert "Pod/digits-0-0" in created(decision)


def test_suspend_while_pending() -> None:
    cluster = Cluster(job())
    cluster.reconcile()
    cluster.update_spec(suspend=True)
    decision = cluster.reconcile()
    assert decision.status_patch["phase"] == "Suspended"
    assert sorted(deleted(decision)) == ["digits-0-0", "digits-0-1"]


# ---- deadline, TTL, stall ----------------------------------------------------------------------


@pytest.mark.parametrize("phase", ["Pending", "Running", "Restarting"])
def test_active_deadline_fails_the_job(phase: str) -> None:
    if phase == "Pending":
        cluster = Cluster(job(activeDeadlineSeconds=60))
        cluster.reconcile()
    elif phase == "Running":
        cluster = running_cluster(activeDeadlineSeconds=60)
    else:
        cluster = restarting_cluster(activeDeadlineSeconds=60, failurePolicy={"backoffSeconds": 300})
    decision = cluster.reconcile(later(30))
    assert "phase" not in decision.status_patch
    assert decision.requeue_after is not None and decision.requeue_after <= 30
    decision = cluster.reconcile(later(60))
    assert decision.status_patch["phase"] == "Failed"
    assert condition(cluster.status, "Failed")["reason"] == "DeadlineExceeded"
    assert events(decision) == [("DeadlineExceeded", "Warning")]
    if phase != "Restarting":
        assert sorted(deleted(decision)) == ["digits-0-0", "digits-0-1"]


def test_deadline_does_not_run_while_suspended() -> None:
    cluster = running_cluster(activeDeadlineSeconds=60, suspend=False)
    cluster.update_spec(suspend=True)
    cluster.reconcile()
    cluster.reconcile()  # the pods are seen terminating
    decision = cluster.reconcile(later(3600))
    assert decision.status_patch == {} and decision.requeue_after is None


def test_deadline_set_on_a_running_job_takes_effect() -> None:
    cluster = running_cluster()
    cluster.update_spec(activeDeadlineSeconds=10)
    assert cluster.reconcile(later(11)).status_patch["phase"] == "Failed"


@pytest.mark.parametrize("outcome", ["Succeeded", "Failed"])
def test_ttl_deletes_a_finished_job(outcome: str) -> None:
    cluster = running_cluster(ttlSecondsAfterFinished=100, failurePolicy={"maxRestarts": 0})
    cluster.set_pod(0, 0, exit_code=0 if outcome == "Succeeded" else 1)
    cluster.set_pod(0, 1, exit_code=0)
    decision = cluster.reconcile()
    assert decision.status_patch["phase"] == outcome
    assert decision.requeue_after == 100
    cluster.finish_terminating()
    decision = cluster.reconcile(later(99))
    assert decision.actions == () and decision.requeue_after == 1
    decision = cluster.reconcile(later(100))
    assert decision.of_type(DeleteJob) == [DeleteJob(reason="ttlSecondsAfterFinished (100s) passed")]
    assert cluster.job is None


def test_finished_job_without_ttl_is_left_alone() -> None:
    cluster = running_cluster()
    cluster.set_pod(0, 0, exit_code=0)
    cluster.set_pod(0, 1, exit_code=0)
    cluster.reconcile()
    cluster.finish_terminating()
    assert cluster.reconcile(later(10**6)) == Decision()


def test_leftover_pods_of_a_finished_job_are_deleted() -> None:
    cluster = running_cluster(failurePolicy={"maxRestarts": 0})
    cluster.set_pod(0, 0, exit_code=1)
    cluster.reconcile()
    cluster.finish_terminating()
    cluster.pods["digits-0-0"] = pod(0, 0)  # e.g. a create that raced the failure
    assert deleted(cluster.reconcile()) == ["digits-0-0"]


def test_stall_marks_the_job_and_restarts_it_as_a_failure() -> None:
    cluster = running_cluster(stallTimeoutSeconds=60)
    assert cluster.job is not None
    cluster.job["status"]["slowestRank"] = {"rank": 1, "iteration": 3, "lastReportTime": timestamp(later(10))}
    decision = cluster.reconcile(later(30))
    assert decision.requeue_after == 40 and decision.actions == ()
    decision = cluster.reconcile(later(70))
    assert decision.status_patch["phase"] == "Restarting"
    assert condition(cluster.status, "Stalled")["status"] == "True"
    assert events(decision) == [("Stalled", "Warning"), ("Restarting", "Warning")]
    assert (
        "rank 1 (pod digits-0-1) failed: Stalled: no report from rank 1 for 60s" in cluster.status["message"]
    )
    assert cluster.status["restarts"] == 1
    # The next attempt clears Stalled once it runs.
    cluster.finish_terminating()
    cluster.reconcile(later(71))
    cluster.run_all(1)
    cluster.reconcile(later(72))
    assert condition(cluster.status, "Stalled")["status"] == "False"


def test_stall_counts_from_when_the_attempt_started_running() -> None:
    cluster = running_cluster(stallTimeoutSeconds=60)
    assert cluster.job is not None
    # A report time from before this attempt ran (an earlier attempt) does not count.
    cluster.job["status"]["slowestRank"] = {"rank": 0, "lastReportTime": timestamp(later(-3600))}
    assert cluster.reconcile(later(59)).requeue_after == 1
    assert cluster.reconcile(later(60)).status_patch["phase"] == "Restarting"


def test_stall_under_never_policy_fails_the_job() -> None:
    cluster = running_cluster(stallTimeoutSeconds=60, failurePolicy={"restartPolicy": "Never"})
    assert cluster.reconcile(later(60)).status_patch["phase"] == "Failed"


def test_stalled_torchrun_rank_maps_to_its_pod() -> None:
    cluster = running_cluster(stallTimeoutSeconds=5, procsPerWorker=4)
    assert cluster.job is not None
    cluster.job["status"]["slowestRank"] = {"rank": 6, "lastReportTime": timestamp(NOW)}
    cluster.reconcile(later(5))
    assert "rank 6 (pod digits-0-1)" in cluster.status["message"]


# ---- validation ----------------------------------------------------------------------------------

_NO_TRAINER = {"spec": {"containers": [{"name": "main", "image": "x"}]}}


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (
            {"template": _NO_TRAINER},
            "spec.template.spec.containers: no container named 'trainer' (found main)",
        ),
        ({"template": {"metadata": {}}}, "spec.template.spec: a PodTemplateSpec needs a pod spec"),
        (
            {"template": {"spec": {"containers": [{"name": "trainer"}]}}},
            "containers[trainer].image: required",
        ),
        ({"storage": {"uri": "ftp://host/ckpt"}}, "spec.storage.uri: scheme of 'ftp://host/ckpt'"),
        ({"storage": {"uri": "s3:///no-bucket"}}, "spec.storage.uri: 's3:///no-bucket' names no bucket"),
        ({"storage": {"uri": "ckpt"}}, "spec.storage.uri: scheme of 'ckpt'"),
        ({"resumeFrom": "gs://b/c"}, "spec.resumeFrom: scheme of 'gs://b/c'"),
        (
            {
                "template": {
                    "spec": {
                        "containers": [{"name": "trainer", "image": "x"}],
                        "initContainers": [{"name": "coordinator", "image": "y"}],
                    }
                }
            },
            "the container name 'coordinator' is reserved",
        ),
        (
            {
                "template": {
                    "spec": {
                        "containers": [{"name": "trainer", "image": "x"}],
                        "volumes": [{"name": "trainjob-token", "emptyDir": {}}],
                    }
                }
            },
            "spec.template.spec.volumes[trainjob-token]: names starting with 'trainjob-' are reserved",
        ),
        ({"name": "Digits"}, "metadata.name: 'Digits' must be a DNS-1035 label"),
        ({"name": "d" * 57}, "is too long: pod hostnames"),
        ({"name": "d" * 56, "workers": 11}, "'" + "d" * 56 + "-9999-10' must have at most 63"),
    ],
)
def test_what_the_schema_cannot_check_fails_the_job_with_a_clear_message(
    overrides: dict[str, Any], needle: str
) -> None:
    decision = reconcile(job(**overrides), observe(existing=frozenset()), NOW, SETTINGS)
    assert decision.status_patch["phase"] == "Failed"
    assert needle in decision.status_patch["message"]
    assert decision.status_patch["completionTime"] == timestamp(NOW)
    assert created(decision) == []
    failed_events = decision.of_type(EmitEvent)
    assert [(e.reason, e.type) for e in failed_events] == [("InvalidSpec", EventType.WARNING)]
    assert needle in failed_events[0].message


def test_longest_valid_name_is_accepted() -> None:
    name = "d" * (63 - len("-9999-1"))
    decision = reconcile(job(name=name), observe(), NOW, SETTINGS)
    assert decision.status_patch["phase"] == "Pending"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"workers": 0}, "spec.workers"),
        ({"procsPerWorker": 0}, "spec.procsPerWorker"),
        ({"failurePolicy": {"restartPolicy": "Always"}}, "spec.failurePolicy.restartPolicy"),
        ({"checkpoints": {"numToKeep": -1}}, "spec.checkpoints.numToKeep"),
        ({"template": None}, "spec.template"),
    ],
)
def test_a_spec_that_bypassed_the_schema_fails_instead_of_raising(
    overrides: dict[str, Any], field: str
) -> None:
    decision = reconcile(job(**overrides), observe(existing=frozenset()), NOW, SETTINGS)
    assert decision.status_patch["phase"] == "Failed"
    assert decision.status_patch["message"].startswith(field)
    # And once failed, it stays quiet.
    obj = job(**overrides, status={"phase": "Failed", "completionTime": timestamp(NOW)})
    assert reconcile(obj, observe(), later(1), SETTINGS) == Decision(status_patch={"observedGeneration": 1})


def test_malformed_status_fields_are_ignored_not_fatal() -> None:
    obj = job(status={"phase": "Bogus", "attempt": "many", "metrics": {"loss": 1}, "workers": 3})
    decision = reconcile(obj, observe(existing=frozenset()), NOW, SETTINGS)
    assert decision.status_patch["phase"] == "Pending"


# ---- spec changes ------------------------------------------------------------------------------


def test_immutable_spec_change_is_refused_with_an_event_and_a_condition() -> None:
    cluster = running_cluster()
    cluster.update_spec(workers=4, config={"epochs": 3})
    decision = cluster.reconcile()
    assert created(decision) == [] and deleted(decision) == []  # 4 workers are not asked for
    refused = condition(cluster.status, "SpecChangeRefused")
    assert refused["status"] == "True"
    assert "config, workers" in refused["message"]
    assert events(decision) == [("SpecChangeRefused", "Warning")]
    assert created(decision) == [] and deleted(decision) == []
    # Seen again: no second event.
    assert cluster.reconcile() == Decision()
    # Changed back: the condition clears.
    cluster.update_spec(workers=2, config={"epochs": 2, "lr": 0.1})
    cluster.reconcile()
    assert condition(cluster.status, "SpecChangeRefused")["status"] == "False"


def test_refused_change_has_no_effect_on_later_attempts() -> None:
    cluster = restarting_cluster()
    cluster.update_spec(workers=3, template=_NO_TRAINER, failurePolicy={"restartPolicy": "Never"})
    cluster.finish_terminating()
    decision = cluster.reconcile(later(5))
    assert (
        "failurePolicy.restartPolicy, template, workers"
        in condition(cluster.status, "SpecChangeRefused")["message"]
    )
    # The next attempt is built from the accepted spec: 2 workers with a trainer.
    assert created(decision) == ["Pod/digits-1-0", "Pod/digits-1-1"]
    assert cluster.created[-1]["spec"]["containers"][0]["name"] == "trainer"
    cluster.run_all(1)
    cluster.reconcile(later(6))
    # ...and failures follow the accepted OnFailure policy, not the refused Never.
    cluster.set_pod(1, 0, exit_code=1)
    assert cluster.reconcile(later(7)).status_patch["phase"] == "Restarting"


@pytest.mark.parametrize(
    "change",
    [
        {"suspend": True},
        {"activeDeadlineSeconds": 1000},
        {"ttlSecondsAfterFinished": 5},
        {"stallTimeoutSeconds": 600},
        {"failurePolicy": {"maxRestarts": 9, "restartPolicy": "OnFailure", "backoffSeconds": 1}},
    ],
)
def test_mutable_fields_change_without_refusal(change: dict[str, Any]) -> None:
    cluster = running_cluster()
    cluster.update_spec(**change)
    cluster.reconcile()
    assert condition(cluster.status, "SpecChangeRefused") == {}


@pytest.mark.parametrize(
    "change",
    [
        {"procsPerWorker": 2},
        {"storage": {"uri": "s3://elsewhere/x"}},
        {"checkpoints": {"numToKeep": 1}},
        {"resumeFrom": "s3://a/b"},
        {"failurePolicy": {"maxRestarts": 2, "restartPolicy": "Never", "backoffSeconds": 1}},
        {"failurePolicy": {"maxRestarts": 2, "restartPolicy": "OnFailure", "backoffSeconds": 7}},
    ],
)
def test_every_other_field_is_refused(change: dict[str, Any]) -> None:
    cluster = running_cluster()
    cluster.update_spec(**change)
    cluster.reconcile()
    assert condition(cluster.status, "SpecChangeRefused")["status"] == "True"


# ---- deletion, idempotency, the state machine ----------------------------------------------------


@pytest.mark.parametrize("phase", [None, "Pending", "Running", "Restarting"])
def test_a_job_being_deleted_gets_an_empty_decision(phase: str | None) -> None:
    # Owner references let the garbage collector remove the children: nothing to create or delete.
    status = None if phase is None else {"phase": phase, "attempt": 0}
    obj = job(deleting=True, status=status)
    assert reconcile(obj, observe(pod(0, 0), existing=frozenset()), NOW, SETTINGS) == Decision()


def _scenario_observations() -> list[tuple[dict[str, Any], Any]]:
    """(job, observation) pairs taken along a run with a failure, a suspension and a success."""
    cluster = Cluster(job(stallTimeoutSeconds=100, activeDeadlineSeconds=10_000))
    seen: list[tuple[dict[str, Any], Any]] = []

    def step(now_offset: float) -> None:
        assert cluster.job is not None
        seen.append((cluster.job, observe(*cluster.pods.values(), existing=frozenset(cluster.existing))))
        cluster.reconcile(later(now_offset))

    step(0)
    cluster.run_all(0)
    step(1)
    cluster.set_pod(0, 1, exit_code=137, reason="OOMKilled")
    step(2)
    step(3)
    cluster.finish_terminating()
    step(4)
    cluster.update_spec(suspend=True)
    step(5)
    cluster.update_spec(suspend=False)
    step(6)
    cluster.finish_terminating()
    step(7)
    cluster.run_all(2)
    step(8)
    cluster.set_pod(2, 0, exit_code=0)
    cluster.set_pod(2, 1, exit_code=0)
    step(9)
    return seen


def test_the_same_observation_yields_the_same_decision() -> None:
    for obj, observation in _scenario_observations():
        first = reconcile(obj, observation, later(50), SETTINGS)
        second = reconcile(obj, observation, later(50), SETTINGS)
        assert first == second


def test_applying_a_decision_then_reconciling_again_asks_for_nothing_new() -> None:
    for obj, observation in _scenario_observations():
        decision = reconcile(obj, observation, later(50), SETTINGS)
        from tests.operator.trainjob_factories import apply_status

        again = reconcile(apply_status(obj, decision), observation, later(50), SETTINGS)
        assert again.status_patch == {}
        assert again.of_type(EmitEvent) == []
        # Deletes are repeated only for pods not yet seen terminating; creates only for unseen objects.
        assert again.of_type(CreateObject) == decision.of_type(CreateObject) or not again.of_type(
            CreateObject
        )


def test_nothing_observed_is_ever_created_again() -> None:
    for obj, observation in _scenario_observations():
        decision = reconcile(obj, observation, later(50), SETTINGS)
        observed_names = {p.name for p in observation.pods}
        for action in decision.of_type(CreateObject):
            if action.kind == "Pod":
                assert action.name not in observed_names
            else:
                assert ChildKind(action.kind) not in observation.existing


def test_full_lifecycle_walks_only_allowed_transitions() -> None:
    phases: list[str | None] = [None]
    cluster = Cluster(job(failurePolicy={"maxRestarts": 1, "backoffSeconds": 0}))

    def step() -> None:
        cluster.reconcile()
        if cluster.job is not None and cluster.status.get("phase") != phases[-1]:
            phases.append(cluster.status["phase"])

    step()
    cluster.run_all(0)
    step()
    cluster.set_pod(0, 0, exit_code=1)
    step()
    cluster.finish_terminating()
    step()
    cluster.run_all(1)
    step()
    cluster.update_spec(suspend=True)
    step()
    cluster.update_spec(suspend=False)
    cluster.finish_terminating()
    step()
    cluster.run_all(2)
    step()
    cluster.set_pod(2, 0, exit_code=0)
    cluster.set_pod(2, 1, exit_code=0)
    step()
    assert phases == [
        None,
        "Pending",
        "Running",
        "Restarting",
        "Pending",
        "Running",
        "Suspended",
        "Pending",
        "Running",
        "Succeeded",
    ]
    for before, after in itertools.pairwise(phases):
        assert after is not None
        check_transition(None if before is None else Phase(before), Phase(after))
    assert cluster.status["attempt"] == 2 and cluster.status["restarts"] == 1


def test_state_machine_refuses_illegal_transitions() -> None:
    assert ALLOWED_TRANSITIONS[Phase.SUCCEEDED] == frozenset()
    assert ALLOWED_TRANSITIONS[Phase.FAILED] == frozenset()
    for illegal in [(Phase.SUCCEEDED, Phase.RUNNING), (Phase.FAILED, Phase.PENDING), (None, Phase.RUNNING)]:
        with pytest.raises(IllegalTransition):
            check_transition(*illegal)
    check_transition(Phase.RUNNING, Phase.RUNNING)
    assert set(ALLOWED_TRANSITIONS) == {None, *Phase}


# ---- policies -----------------------------------------------------------------------------------


def test_decide_after_failure_prefers_the_lowest_rank_and_counts_restarts() -> None:
    failures = [WorkerFailure(3, "j-0-3", 1, "Error"), WorkerFailure(1, "j-0-1", 139, "Error")]
    verdict = decide_after_failure(failures, RestartPolicy.ON_FAILURE, restarts_so_far=0, max_restarts=1)
    assert verdict.outcome is FailureOutcome.RESTART and verdict.cause.rank == 1
    assert verdict.message.endswith("restart 1 of 1")
    verdict = decide_after_failure(failures, RestartPolicy.EXIT_CODE, restarts_so_far=0, max_restarts=5)
    assert verdict.outcome is FailureOutcome.FAIL and verdict.cause.rank == 3
    with pytest.raises(ValueError, match="at least one"):
        decide_after_failure([], RestartPolicy.ON_FAILURE, 0, 1)


def test_requeue_is_never_a_busy_loop() -> None:
    cluster = running_cluster(stallTimeoutSeconds=60)
    decision = cluster.reconcile(later(59.9))
    assert decision.requeue_after is not None and decision.requeue_after >= 1.0


def test_a_failed_job_keeps_the_pods_that_exited_and_stops_the_ones_still_running() -> None:
    cluster = running_cluster(failurePolicy={"restartPolicy": "Never"})
    cluster.set_pod(0, 1, exit_code=2, phase="Failed")

    decision = cluster.reconcile()

    assert decision.status_patch["phase"] == "Failed"
    assert deleted(decision) == ["digits-0-0"]


def test_a_failed_gang_is_stopped_with_a_short_grace_and_a_suspended_one_with_its_own() -> None:
    from trainjob_operator.reconciling.reconcile import FAILED_GANG_GRACE_SECONDS

    failed = running_cluster()
    failed.set_pod(0, 1, exit_code=137, phase="Failed")
    graces = {a.grace_period_seconds for a in failed.reconcile().of_type(DeletePods)}
    assert graces == {FAILED_GANG_GRACE_SECONDS}

    suspended = running_cluster()
    suspended.update_spec(suspend=True)
    graces = {a.grace_period_seconds for a in suspended.reconcile().of_type(DeletePods)}
    assert graces == {None}


# ---- report count warning ----------------------------------------------------------------------
# A job whose ranks reported different numbers of times still succeeds when every worker exits 0,
# but the operator turns the coordinator's typed status.reportCountMismatch into the condition
# ReportCountMismatch, one Warning event and a note in its own message (not a silent success).


MISMATCH = "rank 1 finalized after 3 reports but rank 0 after 4: iteration 4 was not reported by every rank"


def published(attempt: int) -> dict[str, object]:
    """What the coordinator of `attempt` publishes (coordinator/aggregation.py)."""
    return {
        "attempt": attempt,
        "shortRanks": [1],
        "reports": 3,
        "longestRank": 0,
        "mostReports": 4,
        "message": MISMATCH,
    }


def test_the_mismatch_becomes_a_condition_an_event_and_part_of_the_success_message() -> None:
    cluster = Cluster(job())
    cluster.reconcile()
    cluster.run_all(0)
    cluster.reconcile()
    assert cluster.job is not None
    cluster.job["status"]["reportCountMismatch"] = published(0)
    decision = cluster.reconcile()
    condition = next(c for c in cluster.status["conditions"] if c["type"] == "ReportCountMismatch")
    assert (condition["status"], condition["reason"], condition["message"]) == (
        "True",
        "RanksReportedUnequally",
        MISMATCH,
    )
    warnings = [e for e in decision.of_type(EmitEvent) if e.reason == "ReportCountMismatch"]
    assert [(e.message, e.type) for e in warnings] == [(MISMATCH, EventType.WARNING)]
    assert "message" not in decision.status_patch or MISMATCH not in str(decision.status_patch["message"])

    cluster.set_pod(0, 0, exit_code=0)
    cluster.set_pod(0, 1, exit_code=0)
    decision = cluster.reconcile()
    assert cluster.status["phase"] == "Succeeded"
    assert cluster.status["message"] == f"all 2 workers exited 0 (attempt 0), but {MISMATCH}"
    assert not [e for e in decision.of_type(EmitEvent) if e.reason == "ReportCountMismatch"]  # once only


def test_an_earlier_attempts_mismatch_is_ignored() -> None:
    cluster = Cluster(job())
    cluster.reconcile()
    cluster.run_all(0)
    cluster.reconcile()
    assert cluster.job is not None
    cluster.job["status"]["attempt"] = 1
    cluster.job["status"]["reportCountMismatch"] = published(0)
    decision = cluster.reconcile()
    assert not [c for c in cluster.status["conditions"] if c["type"] == "ReportCountMismatch"]
    assert not [e for e in decision.of_type(EmitEvent) if e.reason == "ReportCountMismatch"]
