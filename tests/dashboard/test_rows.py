"""What the dashboard says about a job, a pod and a checkpoint (the pure rows the pages render)."""

from __future__ import annotations

from typing import Any

import pytest

from trainjob_operator.dashboard import rows
from trainjob_operator.views import workers_text

JSON = dict[str, Any]


def job(phase: str | None = None, **status: Any) -> JSON:
    return {
        "metadata": {"name": "digits", "namespace": "ml", "creationTimestamp": "2026-12-01T10:00:00Z"},
        "spec": {"workers": 2, "config": {"epochs": 20}},
        "status": {**({"phase": phase} if phase else {}), **status},
    }


def pod(name: str, **status: Any) -> JSON:
    return {
        "metadata": {"name": name, "labels": {"trainjob.dev/rank": "1", "trainjob.dev/attempt": "0"}},
        "spec": {"nodeName": "node-b"},
        "status": status,
    }


UNSCHEDULABLE = pod(
    "digits-0-1",
    phase="Pending",
    conditions=[
        {
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
        }
    ],
)
IMAGE_BACKOFF = pod(
    "digits-0-0",
    phase="Pending",
    containerStatuses=[
        {
            "name": "trainer",
            "state": {
                "waiting": {
                    "reason": "ImagePullBackOff",
                    "message": 'Back-off pulling image "registry.invalid/t:1"',
                }
            },
        }
    ],
)
STARTING = pod(
    "digits-0-0",
    phase="Pending",
    containerStatuses=[{"name": "trainer", "state": {"waiting": {"reason": "ContainerCreating"}}}],
)


@pytest.mark.parametrize(
    ("the_job", "pods", "expected"),
    [
        (job("Running"), [UNSCHEDULABLE], None),
        (job("Succeeded", message="all 2 workers exited 0"), [], None),
        (
            job(
                "Failed",
                conditions=[
                    {
                        "type": "Failed",
                        "status": "True",
                        "reason": "WorkerFailed",
                        "message": "rank 1 exited with code 1",
                    }
                ],
            ),
            [],
            "WorkerFailed: rank 1 exited with code 1",
        ),
        (
            job("Pending"),
            [UNSCHEDULABLE],
            "pod digits-0-1: Unschedulable: 0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
        ),
        (
            job("Pending"),
            [IMAGE_BACKOFF],
            "pod digits-0-0: ImagePullBackOff: container trainer: "
            'Back-off pulling image "registry.invalid/t:1"',
        ),
        # merely starting is not a reason worth naming
        (job("Pending"), [STARTING], None),
        # the job's own word wins over a pod's
        (job("Pending", message="waiting for the gang"), [UNSCHEDULABLE], "waiting for the gang"),
        (
            job(
                "Pending",
                conditions=[
                    {
                        "type": "PodsReady",
                        "status": "False",
                        "reason": "Unschedulable",
                        "message": "pod digits-0-1: no GPU",
                    }
                ],
            ),
            [],
            "Unschedulable: pod digits-0-1: no GPU",
        ),
        (
            job(
                "Restarting",
                conditions=[
                    {
                        "type": "Stalled",
                        "status": "True",
                        "reason": "NoProgress",
                        "message": "rank 1 silent 10s",
                    }
                ],
            ),
            [],
            "NoProgress: rank 1 silent 10s",
        ),
    ],
)
def test_job_reason(the_job: JSON, pods: list[JSON], expected: str | None) -> None:
    assert rows.job_reason(the_job, pods) == expected


def test_progress_prefers_what_the_status_publishes() -> None:
    published = {"totalIterations": 8, "percentage": 62, "estimatedRemainingSeconds": 40, "eta": "40s"}
    assert rows.progress(job("Running", iteration=5, progress=published)) == {
        "percent": 62.0,
        "etaSeconds": 40,
    }
    del published["estimatedRemainingSeconds"]  # the rate is not known yet
    assert rows.progress(job("Running", iteration=5, progress=published)) == {
        "percent": 62.0,
        "etaSeconds": None,
    }
    assert rows.progress(job("Running", iteration=5)) == {"percent": 25.0, "etaSeconds": None}
    unknown = job("Running", iteration=5)
    unknown["spec"]["config"] = {}
    assert rows.progress(unknown) is None
    unknown["status"]["phase"] = "Succeeded"
    assert rows.progress(unknown) == {"percent": 100.0, "etaSeconds": 0}


def test_job_row_counts_and_reason() -> None:
    row = rows.job_row(
        job("Pending", attempt=2, restarts=1, disruptions=1, workers={"ready": 1}), [UNSCHEDULABLE]
    )
    assert row["key"] == "ml/digits"
    assert (row["attempt"], row["restarts"], row["disruptions"]) == (2, 1, 1)
    assert row["workers"] == {"wanted": 2, "ready": 1}
    assert row["reason"] is not None and "Insufficient nvidia.com/gpu" in row["reason"]


def test_pod_row_shows_node_state_and_terminating() -> None:
    finished = pod(
        "digits-0-1",
        phase="Failed",
        containerStatuses=[
            {
                "name": "trainer",
                "restartCount": 0,
                "state": {"terminated": {"reason": "Error", "exitCode": 1}},
            }
        ],
    )
    row = rows.pod_row(finished)
    assert (row["rank"], row["attempt"], row["node"]) == ("1", "0", "node-b")
    assert row["trainer"] == "terminated Error (exit 1)"
    finished["metadata"]["deletionTimestamp"] = "2026-12-01T10:00:00Z"
    assert rows.pod_row(finished)["phase"] == "Terminating"
    assert rows.pod_row(IMAGE_BACKOFF)["problem"].startswith("ImagePullBackOff: container trainer")


def test_checkpoint_rows_mark_latest_and_best_and_say_how_to_download() -> None:
    the_job = job(
        "Succeeded",
        latestCheckpoint={"uri": "s3://b/ml/digits/checkpoint_000020", "iteration": 20},
        bestCheckpoint={"uri": "s3://b/ml/digits/checkpoint_000017", "iteration": 17},
        checkpoints=[
            {"uri": "s3://b/ml/digits/checkpoint_000020", "iteration": 20},
            {"uri": "s3://b/ml/digits/checkpoint_000017", "iteration": 17},
        ],
    )
    listed = rows.checkpoint_rows(the_job, None)
    assert [(r["iteration"], r["latest"], r["best"]) for r in listed] == [
        (17, False, True),
        (20, True, False),
    ]
    assert listed[0]["download"] == "trainjob checkpoints download digits ./digits-17 --iteration 17 -n ml"
    # storage's list, when it could be read, is what is shown (it has every committed one)
    stored = [{"uri": "s3://b/ml/digits/checkpoint_000003", "iteration": 3, "sizeBytes": 10}]
    assert [r["iteration"] for r in rows.checkpoint_rows(the_job, stored)] == [3]


def test_an_elastic_gang_below_its_workers_wants_its_current_size() -> None:
    elastic = job("Running", workers={"active": 2, "ready": 2, "desired": 3, "current": 2})
    elastic["spec"].update(workers=3, elastic={"minWorkers": 2})
    assert rows.job_row(elastic, [])["workers"] == {"wanted": 2, "ready": 2}
    assert workers_text(elastic) == "2/2 (of 3)"
