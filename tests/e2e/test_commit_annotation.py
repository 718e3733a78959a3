"""Checkpoint-aware victims on the local cluster (README "Checkpoint-aware victims"): every pod of
a running gang carries trainjob.dev/last-commit-time, equal to status.lastCommitTime, and it
advances as the gang commits checkpoints — what preemption tooling reading pods would see."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tests.support.kube import Cluster
from tests.support.manifests import python, trainjob
from tests.support.processes import wait_for

KEY = "trainjob.dev/last-commit-time"
README_COLUMNS = "custom-columns=" + ",".join(
    (
        "POD:.metadata.name",
        "PRIORITY:.spec.priority",
        r"SAVED:.metadata.annotations.trainjob\.dev/last-commit-time",
    )
)

# A checkpoint every third iteration, for longer than the test looks (it deletes the job).
COMMITS_NOW_AND_THEN = python(
    "import pathlib, tempfile, time, worker_sdk as train\n"
    "rank = train.get_context().get_world_rank()\n"
    "for i in range(1, 3000):\n"
    "    time.sleep(0.2)\n"
    "    if i % 3:\n"
    "        train.report({'i': i})\n"
    "        continue\n"
    "    with tempfile.TemporaryDirectory() as d:\n"
    "        (pathlib.Path(d) / f'rank-{rank}.txt').write_text(str(i))\n"
    "        train.report({'i': i}, checkpoint=train.Checkpoint.from_directory(d))\n"
)


def annotated_alike(cluster: Cluster, name: str, after: str | None) -> tuple[str, dict[str, Any]] | None:
    """status.lastCommitTime, once it is newer than `after` and every pod of the attempt carries
    it; None before."""
    job = cluster.job(name)
    status = job.get("status") or {}
    committed = status.get("lastCommitTime")
    if committed is None or (after is not None and committed <= after):
        return None
    pods = [p for p in cluster.pods(name) if p["metadata"]["labels"]["trainjob.dev/attempt"] == "0"]
    values = {(p["metadata"].get("annotations") or {}).get(KEY) for p in pods}
    return (committed, status) if len(pods) == 2 and values == {committed} else None


def test_every_pod_carries_the_last_commit_time_and_it_advances(cluster: Cluster) -> None:
    cluster.apply(trainjob("victims", COMMITS_NOW_AND_THEN, workers=2))
    try:
        first, status = wait_for(
            lambda: annotated_alike(cluster, "victims", None),
            120,
            "both pods to carry status.lastCommitTime",
            cluster.describe_job("victims"),
        )
        assert status["lastCommitTime"] == status["latestCheckpoint"]["committedAt"]
        # RFC 3339 in UTC with milliseconds, as the coordinator writes the status.
        assert first.endswith("Z") and datetime.fromisoformat(first).utcoffset() is not None
        second, _ = wait_for(
            lambda: annotated_alike(cluster, "victims", first),
            60,
            "the annotation to advance with the next commit",
            cluster.describe_job("victims"),
        )
        assert datetime.fromisoformat(second) > datetime.fromisoformat(first)
        # The README's command shows it per pod (a later commit may have advanced it meanwhile).
        table = cluster.kubectl("get", "pods", "-l", "trainjob.dev/name=victims", "-o", README_COLUMNS)
        rows = [line.split() for line in table.splitlines()[1:]]
        assert len(rows) == 2, table
        assert all(datetime.fromisoformat(row[2]) >= datetime.fromisoformat(second) for row in rows), table
    finally:
        cluster.kubectl("delete", "trainjob", "victims", "--wait=false", check=False)
