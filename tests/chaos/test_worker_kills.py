"""Five SIGKILLs of trainer processes, at seeded random steps and ranks, in one digits run: the
gang restarts each time from a committed checkpoint and the job still ends where the trainer
asked, with every committed checkpoint whole and loadable."""

from __future__ import annotations

import os
import random
import signal
import time

import pytest

from tests.chaos.chaos_support import (
    StatusSampler,
    check_committed_checkpoints,
    container_pid,
    digits_job,
    is_committed,
    resumed_from,
    resumed_iteration,
)
from tests.support.kube import Cluster
from tests.support.processes import wait_for

SEED = 1
EPOCHS = 20
KILLS = 5


def epochs_logged(log: str) -> int:
    return sum(1 for line in log.splitlines() if line.startswith("epoch "))


@pytest.mark.slow
def test_five_worker_kills_at_random_steps_end_in_success_with_nothing_lost(
    cluster: Cluster, s3_credentials: None
) -> None:
    rng = random.Random(SEED)
    name = "kills"
    manifest = digits_job(name, epochs=EPOCHS, step_sleep=0.02, failurePolicy={"maxRestarts": KILLS + 1})
    cluster.apply(manifest)
    logs: dict[int, str] = {}
    schedule: list[tuple[int, int, int, float]] = []  # attempt, epochs into it, rank, extra delay

    with StatusSampler(cluster, name) as sampler:
        for attempt in range(KILLS):
            rank0 = f"{name}-{attempt}-0"
            # The first kill after at least one committed epoch; later ones anywhere from the
            # first step after resuming to a step inside the next epoch.
            epochs_in = 1 if attempt == 0 else rng.randint(0, 1)
            rank, delay = rng.randrange(2), rng.uniform(0.0, 0.6)
            schedule.append((attempt, epochs_in, rank, delay))

            def progressed(pod: str = rank0, wanted: int = epochs_in) -> str | None:
                log = cluster.kubectl("logs", pod, "-c", "trainer", check=False)
                started = "resumed from" in log or epochs_logged(log) > 0
                return log if started and epochs_logged(log) >= wanted else None

            wait_for(progressed, 120, f"{epochs_in} epochs in attempt {attempt}", cluster.describe_job(name))
            time.sleep(delay)  # somewhere inside the next epoch
            pid = container_pid(cluster, f"{name}-{attempt}-{rank}", "trainer")
            logs[attempt] = cluster.kubectl("logs", rank0, "-c", "trainer", check=False)
            assert pid is not None, f"no running trainer in {name}-{attempt}-{rank}"
            os.kill(pid, signal.SIGKILL)

            def next_attempt(done: int = attempt) -> bool:
                return int(cluster.status(name).get("attempt", 0)) > done

            wait_for(next_attempt, 60, f"attempt {attempt + 1}", cluster.describe_job(name))
        status = cluster.wait_for_phase(name, "Succeeded", "Failed", timeout=180)
        logs[KILLS] = cluster.kubectl("logs", f"{name}-{KILLS}-0", "-c", "trainer", check=False)

    print(f"kill schedule (attempt, epochs into it, rank, delay): {schedule}")
    assert status["phase"] == "Succeeded", status.get("message")
    assert status["restarts"] == KILLS and status["attempt"] == KILLS, status
    assert status["iteration"] == EPOCHS
    assert status["metrics"]["epoch"] == EPOCHS - 1
    assert status["latestCheckpoint"]["iteration"] == EPOCHS
    resumed_at = {a: it for a, log in logs.items() if (it := resumed_iteration(log)) is not None}
    sampler.check_iteration(EPOCHS, resumed_at)

    committed = check_committed_checkpoints(manifest["spec"]["storage"]["uri"], cluster.namespace, name)
    assert EPOCHS in committed, committed
    # Each attempt after a kill resumed, and only ever from a committed checkpoint.
    for attempt in range(1, KILLS + 1):
        uris = resumed_from(logs[attempt])
        assert uris, f"attempt {attempt} did not resume:\n{logs[attempt][-1500:]}"
        assert all(is_committed(uri) for uri in uris), (attempt, uris)
