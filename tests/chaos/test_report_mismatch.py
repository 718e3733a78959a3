"""One rank reports one time fewer than the others. The job must not hang silently: it says which
rank stopped short and which iteration was never reported by every rank.

Documented outcome (see `Aggregator._check_report_counts`): every worker exits 0, so the job
Succeeds; the coordinator publishes the typed `status.reportCountMismatch`, which the operator
turns into the condition ReportCountMismatch, a Warning event and a note in `status.message`
naming the rank and the iteration; the iteration only some ranks reported is not
counted (status.iteration stays at the last one every rank reported) and its checkpoint is not
committed."""

from __future__ import annotations

import time

import pytest

from tests.support.kube import Cluster
from tests.support.manifests import python, trainjob

TRAINER = python(
    "import os, tempfile, pathlib\n"
    "import worker_sdk as train\n"
    "rank = train.get_context().get_world_rank()\n"
    "for i in range(3 if rank == 1 else 4):\n"
    "    with tempfile.TemporaryDirectory() as d:\n"
    "        pathlib.Path(d, f'part-{rank}.bin').write_bytes(b'x' * 10)\n"
    "        train.report({'step': i}, checkpoint=train.Checkpoint.from_directory(d))\n"
)


@pytest.mark.slow
def test_a_rank_reporting_one_time_fewer_is_named_with_the_iteration(cluster: Cluster) -> None:
    name = "mismatch"
    cluster.apply(trainjob(name, TRAINER, workers=2, storage_uri="s3://trainjob/chaos-mismatch"))
    started = time.monotonic()
    status = cluster.wait_for_phase(name, "Succeeded", "Failed", timeout=120)
    elapsed = time.monotonic() - started

    assert status["phase"] == "Succeeded", status
    assert status["iteration"] == 3
    assert status["latestCheckpoint"]["iteration"] == 3
    assert (
        "rank 1 finalized after 3 reports but rank 0 after 4: iteration 4 was not reported by every rank"
        in (status.get("message") or "")
    ), status
    assert status["reportCountMismatch"]["shortRanks"] == [1], status
    condition = next(c for c in status["conditions"] if c["type"] == "ReportCountMismatch")
    assert condition["status"] == "True" and "rank 1 finalized after 3 reports" in condition["message"]
    assert elapsed < 90, f"took {elapsed:.0f}s: the job waited out a timeout instead of ending"
