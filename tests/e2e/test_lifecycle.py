"""A TrainJob's life on the local cluster, through kubectl: success, failures and the restart
policies, suspend/resume, deletion, invalid specs, and jobs side by side."""

from __future__ import annotations

import json

from tests.support.kube import Cluster
from tests.support.manifests import python, trainjob
from tests.support.processes import wait_for

EXIT_ZERO = python("import time; time.sleep(1)")
# Fails on attempt 0 only: with SIGKILL (exit 137) on rank 1, as the OOM killer or a lost node would.
SIGKILL_FIRST_ATTEMPT = python(
    "import os, signal, time; time.sleep(1)\n"
    "if os.environ['TRAINJOB_ATTEMPT'] == '0' and os.environ['RANK'] == '2':\n"
    "    os.kill(os.getpid(), signal.SIGKILL)"
)


def test_a_job_whose_workers_exit_zero_succeeds_and_says_so(cluster: Cluster) -> None:
    cluster.apply(trainjob("ok", EXIT_ZERO, workers=2))

    status = cluster.wait_for_phase("ok", "Succeeded")

    assert status["restarts"] == 0 and status["attempt"] == 0
    assert status["completionTime"] >= status["startTime"]
    assert status["workers"]["succeeded"] == 2
    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    assert conditions["Succeeded"] == "True" and conditions["Running"] == "False"
    reasons = [e["reason"] for e in cluster.events("ok")]
    assert {"Created", "Running", "Succeeded"} <= set(reasons), reasons
    table = cluster.kubectl("get", "tj", "ok")
    assert "Succeeded" in table.splitlines()[1]


def test_exit_code_policy_fails_at_once_on_exit_3(cluster: Cluster) -> None:
    cluster.apply(
        trainjob(
            "exit3",
            python("import os, sys; sys.exit(3 if os.environ['RANK'] == '1' else 0)"),
            failure_policy={"restartPolicy": "ExitCode", "maxRestarts": 3},
        )
    )

    status = cluster.wait_for_phase("exit3", "Failed")

    assert status["restarts"] == 0
    assert "exit3-0-1" in status["message"] and "3" in status["message"]


def test_a_failed_rank_says_why_on_the_job(cluster: Cluster) -> None:
    """The trainer's last log lines reach the job: its pod's termination message (the operator's
    FallbackToLogsOnError, filled by the node agent), then the job's message and failure event."""
    cluster.apply(
        trainjob(
            "typo",
            ["python", "-m", "examples.nonexistent"],
            workers=1,
            failure_policy={"restartPolicy": "ExitCode", "maxRestarts": 3},
        )
    )

    status = cluster.wait_for_phase("typo", "Failed")

    cause = "No module named examples.nonexistent"
    assert status["message"].startswith("rank 0 (pod typo-0-0) exited with code 1 (Error): "), status
    assert cause in status["message"] and len(status["message"]) < 400
    [pod] = cluster.pods("typo")
    [trainer] = [c for c in pod["status"]["containerStatuses"] if c["name"] == "trainer"]
    assert cause in trainer["state"]["terminated"]["message"]
    failed = [e for e in cluster.events("typo") if e["reason"] == "WorkerFailed"]
    assert failed and cause in failed[-1]["message"]


def test_exit_code_policy_restarts_after_a_signal_and_then_succeeds(cluster: Cluster) -> None:
    cluster.apply(
        trainjob(
            "sigkill",
            SIGKILL_FIRST_ATTEMPT,
            workers=3,
            failure_policy={"restartPolicy": "ExitCode", "maxRestarts": 3},
        )
    )

    status = cluster.wait_for_phase("sigkill", "Succeeded")

    assert status["restarts"] == 1 and status["attempt"] == 1
    reasons = [e["reason"] for e in cluster.events("sigkill")]
    assert "Restarting" in reasons, reasons


def test_a_job_that_keeps_failing_fails_once_max_restarts_are_spent(cluster: Cluster) -> None:
    cluster.apply(trainjob("flaky", python("import sys; sys.exit(1)"), failure_policy={"maxRestarts": 1}))

    status = cluster.wait_for_phase("flaky", "Failed")

    assert status["restarts"] == 1
    assert "maxRestarts" in status["message"] or "restart" in status["message"].lower()
    # The last attempt's failed pods stay, so `kubectl logs` tells why; earlier attempts' are gone.
    wait_for(
        lambda: all(p["status"]["phase"] == "Failed" for p in cluster.pods("flaky")), 60, "only failed pods"
    )
    names = {p["metadata"]["name"] for p in cluster.pods("flaky")}
    assert names and names <= {"flaky-1-0", "flaky-1-1"}, names


def test_deleting_a_running_job_removes_every_child(cluster: Cluster) -> None:
    cluster.apply(trainjob("doomed", python("import time; time.sleep(600)")))
    cluster.wait_for_phase("doomed", "Running")
    children = ("secret/doomed-token", "serviceaccount/doomed-coordinator", "role/doomed-coordinator")
    for child in (*children, "rolebinding/doomed-coordinator", "service/doomed"):
        assert cluster.get(*child.split("/")) is not None, child

    cluster.kubectl("delete", "trainjob", "doomed", "--wait=true", timeout=120)

    def all_gone() -> bool:
        leftovers = [
            c
            for c in (*children, "rolebinding/doomed-coordinator", "service/doomed")
            if cluster.get(*c.split("/"))
        ]
        return not leftovers and not cluster.pods("doomed")

    wait_for(all_gone, 60, "every child of the deleted job to be gone")


def test_an_invalid_spec_is_refused_by_the_api_server_naming_the_field(cluster: Cluster) -> None:
    manifest = trainjob("bad", EXIT_ZERO)
    manifest["spec"]["workers"] = 0

    out = cluster.kubectl("apply", "-f", "-", stdin=json.dumps(manifest), check=False)

    assert "spec.workers" in out and "greater than or equal to 1" in out
    assert cluster.get("trainjob", "bad") is None


def test_a_spec_without_a_trainer_container_fails_with_a_message_and_an_event(cluster: Cluster) -> None:
    manifest = trainjob("notrainer", EXIT_ZERO)
    manifest["spec"]["template"]["spec"]["containers"][0]["name"] = "main"
    cluster.apply(manifest)

    status = cluster.wait_for_phase("notrainer", "Failed")

    assert "trainer" in status["message"]
    warnings = [e for e in cluster.events("notrainer") if e["type"] == "Warning"]
    assert warnings and "trainer" in warnings[0]["message"]
    assert cluster.pods("notrainer") == []


def test_suspend_stops_the_pods_and_resume_starts_a_new_attempt_without_counting_a_restart(
    cluster: Cluster,
) -> None:
    cluster.apply(trainjob("pausable", python("import time; time.sleep(600)")))
    cluster.wait_for_phase("pausable", "Running")

    cluster.kubectl("patch", "trainjob", "pausable", "--type=merge", "-p", '{"spec": {"suspend": true}}')
    cluster.wait_for_phase("pausable", "Suspended")
    wait_for(lambda: cluster.pods("pausable") == [], 60, "the suspended job's pods to be gone")

    cluster.kubectl("patch", "trainjob", "pausable", "--type=merge", "-p", '{"spec": {"suspend": false}}')
    status = cluster.wait_for_phase("pausable", "Running")
    assert status["restarts"] == 0 and status["attempt"] == 1
    assert {p["metadata"]["name"] for p in cluster.pods("pausable")} == {"pausable-1-0", "pausable-1-1"}


def test_jobs_with_the_same_name_in_two_namespaces_do_not_interfere(cluster: Cluster) -> None:
    other = Cluster(cluster.stack, f"{cluster.namespace}-b")
    cluster.stack.prepare_namespace(other.namespace)
    try:
        for kube, code in ((cluster, "import time; time.sleep(2)"), (other, "import sys; sys.exit(1)")):
            kube.apply(trainjob("twin", python(code), failure_policy={"maxRestarts": 0}))

        assert cluster.wait_for_phase("twin", "Succeeded")["restarts"] == 0
        assert other.wait_for_phase("twin", "Failed")["restarts"] == 0
    finally:
        other.kubectl("delete", "namespace", other.namespace, "--wait=false", check=False)


# Rank 1 of attempt 0 stops reporting after its second report (a hung collective, a deadlock)
# while rank 0 goes on; every rank of attempt 1 reports to the end. The timeout leaves room for a
# loaded machine to start the next attempt's processes before their first report.
HANG_ON_FIRST_ATTEMPT = python(
    "import os, time, worker_sdk\n"
    "hang = os.environ['TRAINJOB_ATTEMPT'] == '0' and os.environ['RANK'] == '1'\n"
    "for step in range(1, 9):\n"
    "    worker_sdk.report({'step': step})\n"
    "    if hang and step == 2:\n"
    "        time.sleep(600)\n"
    "    time.sleep(0.2)"
)


def test_a_rank_that_stops_reporting_stalls_the_attempt_and_the_next_one_succeeds(cluster: Cluster) -> None:
    cluster.apply(
        trainjob(
            "stall",
            HANG_ON_FIRST_ATTEMPT,
            failure_policy={"maxRestarts": 2, "backoffSeconds": 0},
            extra_spec={"stallTimeoutSeconds": 10},
        )
    )

    status = cluster.wait_for_phase("stall", "Succeeded", timeout=180)

    assert status["restarts"] == 1 and status["attempt"] == 1, status
    assert status["iteration"] == 8
    stalled = [e for e in cluster.events("stall") if e["reason"] == "Stalled"]
    assert len(stalled) == 1, cluster.events("stall")
    assert "no report from rank 1 for 10s" in stalled[0]["message"]
    conditions = {c["type"]: c for c in status["conditions"]}
    # The new attempt cleared the condition, saying why it had been set.
    assert conditions["Stalled"]["status"] == "False" and conditions["Stalled"]["reason"] == "NewAttempt"
