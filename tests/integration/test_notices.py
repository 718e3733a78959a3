"""Disruption notices end to end between real ranks and the real coordinator: the operator's
notice (written into the job's status, as the API server would hold it) or a SIGTERM of one
rank makes every rank's should_stop() True from one and the same iteration, after a checkpoint
of that iteration is committed; a program that never asks still flushes and exits on SIGTERM."""

from __future__ import annotations

import json
import signal
import textwrap
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.support.job import CoordinatorProcess, JobRunner
from tests.support.processes import wait_until

pytestmark = pytest.mark.timeout(180)

# A loop as the README shows it: report (with a sharded checkpoint each iteration), then ask.
NOTICE_AWARE = textwrap.dedent(
    """
    import pathlib, tempfile, time, worker_sdk as train
    rank = train.get_context().get_world_rank()
    stopped = None
    for i in range(1, 400):
        with tempfile.TemporaryDirectory() as directory:
            (pathlib.Path(directory) / f"shard-{rank}.bin").write_bytes(bytes([i % 256]) * 1024)
            train.report({"step": i}, checkpoint=train.Checkpoint.from_directory(directory))
        if train.should_stop():
            stopped = i
            break
        time.sleep(0.05)
    info = train.get_preemption_info()
    print("STOPPED", stopped, info and info.reason, info and info.preempted_ranks, flush=True)
    """
)


def stopped_at(runner: JobRunner, rank: int) -> list[str]:
    line = next(
        line for line in runner.log(f"rank-{rank}-attempt-0").splitlines() if line.startswith("STOPPED")
    )
    return line.split(" ", 3)[1:]


def operator_notice(coordinator: CoordinatorProcess, **fields: Any) -> None:
    """Play the operator: put status.notice into the job's status until the coordinator has it."""
    now = datetime.now(UTC)
    notice = {
        "reason": "EvictionByEvictionAPI",
        "message": "rank 1 (pod j-0-1) disrupted: EvictionByEvictionAPI",
        "ranks": [1],
        "nodes": {"node-b": [1]},
        "attempt": 0,
        "since": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "deadline": (now + timedelta(seconds=30)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        **fields,
    }

    def taken() -> bool:
        status = json.loads(coordinator.status_path.read_text())
        status["notice"] = notice
        coordinator.status_path.write_text(json.dumps(status))
        return coordinator.state()["notice"] is not None

    wait_until("the coordinator to take the notice", taken, timeout=30, interval=0.3)


def test_an_operator_notice_stops_every_rank_after_the_same_committed_iteration(job_runner: Any) -> None:
    runner: JobRunner = job_runner(2)
    coordinator = runner.start_coordinator(0)
    workers = runner.start_workers(0, coordinator, {}, args=("-c", NOTICE_AWARE))
    coordinator.wait_for_state(
        "iteration 3", lambda s: (s.get("latestCheckpoint") or {}).get("iteration", 0) >= 3
    )
    operator_notice(coordinator)
    assert runner.wait(workers) == [0, 0], runner.tails()
    first, second = stopped_at(runner, 0), stopped_at(runner, 1)
    assert first == second, (first, second)
    iteration = int(first[0])
    assert first[1:] == ["EvictionByEvictionAPI", "[1]"]
    state = coordinator.wait_for_state("the stop iteration committed", lambda s: s["settled"])
    assert state["stopIteration"] == iteration
    assert state["latestCheckpoint"]["iteration"] == iteration, "the checkpoint at the stop is committed"
    status = json.loads(coordinator.status_path.read_text())
    assert status["stopAt"] == {"attempt": 0, "iteration": iteration}
    assert status["lastCommitTime"] == status["latestCheckpoint"]["committedAt"]
    assert status.get("noticeIgnored") is None, "a program that asks acts on the notice"


def test_a_sigterm_of_one_rank_stops_the_whole_gang_at_one_iteration(job_runner: Any) -> None:
    runner: JobRunner = job_runner(2)
    coordinator = runner.start_coordinator(0)
    workers = runner.start_workers(0, coordinator, {}, args=("-c", NOTICE_AWARE))
    coordinator.wait_for_state(
        "iteration 3", lambda s: (s.get("latestCheckpoint") or {}).get("iteration", 0) >= 3
    )
    workers[1].send_signal(signal.SIGTERM)
    assert runner.wait(workers) == [0, 0], runner.tails()
    first, second = stopped_at(runner, 0), stopped_at(runner, 1)
    assert first == second and first[1] == "SIGTERM", (first, second)
    state = coordinator.wait_for_state("settled", lambda s: s["settled"])
    assert state["latestCheckpoint"]["iteration"] == int(first[0])


IGNORES_NOTICES = textwrap.dedent(
    """
    import time, worker_sdk as train
    for i in range(1, 10_000):
        train.report({"step": i})
        time.sleep(0.05)
    """
)


def test_a_program_that_never_asks_flushes_and_exits_on_sigterm_as_before(job_runner: Any) -> None:
    runner: JobRunner = job_runner(1)
    coordinator = runner.start_coordinator(0)
    # A long pod grace: a notice-aware exit would wait ~112 s for the program's own stop.
    (worker,) = runner.start_workers(
        0, coordinator, {}, args=("-c", IGNORES_NOTICES), env={"TRAINJOB_TERMINATION_GRACE_SECONDS": "120"}
    )
    coordinator.wait_for_state("a few reports", lambda s: s.get("iteration", 0) >= 3)
    worker.send_signal(signal.SIGTERM)
    assert runner.wait([worker], timeout=60) == [143], runner.tails()
    assert "SIGTERM: flushing checkpoints and reports before exiting" in runner.log("rank-0-attempt-0")
    # The coordinator tells the operator not to wait for a checkpoint that will not come.
    ignored = coordinator.wait_for_state("the finding", lambda s: s["noticeIgnored"] is not None)
    assert (
        ignored["noticeIgnored"] == "rank 0 got SIGTERM and no rank has asked should_stop() in this attempt"
    )
    wait_until(
        "status.noticeIgnored",
        lambda: (
            json.loads(coordinator.status_path.read_text()).get("noticeIgnored")
            == {"attempt": 0, "message": ignored["noticeIgnored"]}
        ),
        timeout=30,
        interval=0.3,
    )


def test_an_operator_notice_to_a_program_that_never_asks_is_found_ignored(job_runner: Any) -> None:
    """A program unchanged for notices: its ranks reported iterations without ever asking, so the
    coordinator publishes status.noticeIgnored and the operator stops the gang without the grace."""
    runner: JobRunner = job_runner(2)
    coordinator = runner.start_coordinator(0)
    workers = runner.start_workers(0, coordinator, {}, args=("-c", IGNORES_NOTICES))
    coordinator.wait_for_state("a few reports", lambda s: s.get("iteration", 0) >= 3)
    operator_notice(coordinator)
    state = coordinator.wait_for_state("the finding", lambda s: s["noticeIgnored"] is not None)
    assert state["noticeIgnored"].endswith("no rank has asked should_stop() in this attempt")
    assert state["stopIteration"] is None
    wait_until(
        "status.noticeIgnored",
        lambda: (
            (json.loads(coordinator.status_path.read_text()).get("noticeIgnored") or {}).get("attempt") == 0
        ),
        timeout=30,
        interval=0.3,
    )
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
    assert runner.wait(workers, timeout=60) == [143, 143], runner.tails()
