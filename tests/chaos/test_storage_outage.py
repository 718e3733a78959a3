"""SeaweedFS stopped for 15 s mid-run, then started again on the same port and data, under two
digits jobs with async uploads (docs/architecture.md):

- `ride`, with the default retry budget (120 s): uploads retry with backoff, the trainer goes on
  training through the outage, the status says storage is unavailable while it is down (the
  StorageUnavailable condition, a Warning event) and stops saying so after (a Normal event);
  commits resume, and the job succeeds in its first attempt with every checkpoint and every
  metric history line it reported.
- `short`, with `storage.retryBudgetSeconds: 5`: the outage outlasts the budget, so the job says
  so (condition reason RetryBudgetExceeded, a Warning event), its upload gives up and the attempt
  fails; the restart resumes from the latest committed checkpoint once storage is back, and the
  job still succeeds with every committed checkpoint whole.

This scenario starts a stack of its own: the outage would break the shared one."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.chaos_support import BackgroundSampler, check_committed_checkpoints, digits_job, dump
from tests.support.kube import Cluster
from tests.support.processes import REPO_ROOT, wait_for
from trainjob_operator.local.stack import LocalStack
from worker_sdk.storage import join_key, open_storage

SEED = 11
OUTAGE_SECONDS = 15.0
EPOCHS = 24
# short restarts from its checkpoint before the outage: fewer epochs keep that short, while enough
# remain for its upload to outlast the budget mid-training.
SHORT_EPOCHS = 14
CHECKPOINT_EVERY = 2
SHORT_BUDGET = 5
NAMESPACE = "outage"
# The SDK's warning when async uploads fill TRAINJOB_UPLOAD_QUEUE and report() has to wait.
BLOCKED = "report() waits for one to finish"


@pytest.fixture
def own_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalStack]:
    with LocalStack(tmp_path / "stack", root=REPO_ROOT, namespaces=(NAMESPACE,)) as stack:
        assert stack.seaweedfs is not None
        for key, value in stack.seaweedfs.credentials_env.items():
            monkeypatch.setenv(key, value)  # this process reads the checkpoints back
        yield stack


@dataclass
class Sample:
    at: float  # seconds since the outage began (negative: before)
    phase: str
    attempt: int
    storage_available: bool | None
    condition: tuple[str, str] | None  # StorageUnavailable (status, reason)


class Sampler(BackgroundSampler):
    """Samples every TrainJob of the namespace in one `kubectl get`."""

    def __init__(self, cluster: Cluster) -> None:
        super().__init__()
        self.cluster = cluster
        self.outage_began = float("inf")
        self.samples: dict[str, list[Sample]] = {}

    def sample(self) -> None:
        items = json.loads(self.cluster.kubectl("get", "trainjobs", "-o", "json"))["items"]
        now = time.monotonic()
        at = now - self.outage_began if self.outage_began != float("inf") else -1.0
        for item in items:
            status = item.get("status") or {}
            self.samples.setdefault(item["metadata"]["name"], []).append(
                Sample(
                    at=at,
                    phase=str(status.get("phase")),
                    attempt=int(status.get("attempt") or 0),
                    storage_available=(status.get("storage") or {}).get("available"),
                    condition=storage_condition(status),
                )
            )


def epochs_logged(cluster: Cluster, pod: str) -> tuple[int, str]:
    log = cluster.kubectl("logs", pod, "-c", "trainer", check=False)
    return sum(1 for line in log.splitlines() if line.startswith("epoch ")), log


def events_of(cluster: Cluster, name: str) -> list[tuple[str, str]]:
    return [(e.get("type", ""), e.get("reason", "")) for e in cluster.events(name)]


def history_iterations(uri: str, name: str, attempt: int) -> list[int]:
    storage = open_storage(uri, retry_budget_seconds=10)
    iterations: list[int] = []
    for obj in storage.list_objects(join_key(NAMESPACE, name, "metrics", f"attempt-{attempt}")):
        data = storage.get_bytes(obj.key) or b""
        iterations += [json.loads(line)["iteration"] for line in data.decode().splitlines() if line]
    return sorted(iterations)


@pytest.mark.slow
def test_a_storage_outage_is_ridden_out_or_reported_past_the_retry_budget(own_stack: LocalStack) -> None:
    rng = random.Random(SEED)
    cluster = Cluster(own_stack, NAMESPACE)
    seaweedfs = own_stack.seaweedfs
    assert seaweedfs is not None
    config = {"upload": "async", "checkpoint_every": CHECKPOINT_EVERY}
    ride = digits_job("ride", epochs=EPOCHS, step_sleep=0.08, config=config)
    # Enough staging slots for the checkpoints of a 15 s outage: report() need not wait.
    (trainer,) = ride["spec"]["template"]["spec"]["containers"]
    trainer["env"] = [{"name": "TRAINJOB_UPLOAD_QUEUE", "value": "16"}]
    short = digits_job(
        "short",
        epochs=SHORT_EPOCHS,
        step_sleep=0.05,
        workers=1,
        config=config,
        storage={"retryBudgetSeconds": SHORT_BUDGET},
        failurePolicy={"maxRestarts": 6},
    )
    started = time.monotonic()
    cluster.apply(ride)
    cluster.apply(short)
    stop_after = rng.randint(1, 2)  # ride's iteration when the outage begins
    with Sampler(cluster) as sampler:

        def both_progressing() -> bool:
            return (
                int(cluster.status("ride").get("iteration") or 0) >= stop_after
                and int(cluster.status("short").get("iteration") or 0) >= 1
            )

        wait_for(both_progressing, 150, f"iteration {stop_after}", cluster.describe_job("ride"))
        time.sleep(rng.uniform(0.0, 1.0))
        epochs_before, _ = epochs_logged(cluster, "ride-0-0")
        short_before = int(cluster.status("short").get("iteration") or 0)
        sampler.outage_began = time.monotonic()
        seaweedfs.stop()
        time.sleep(max(0.0, sampler.outage_began + OUTAGE_SECONDS - time.monotonic()))
        epochs_during, log_during = epochs_logged(cluster, "ride-0-0")
        seaweedfs.start()  # the same port and data directory
        back_at = time.monotonic() - sampler.outage_began
        print(
            f"outage began {sampler.outage_began - started:.1f}s after the jobs were applied, in ride's "
            f"epoch {epochs_before} (short at iteration {short_before}), storage back at {back_at:.1f}s "
            f"(seed {SEED})"
        )
        # ride is checked while short, which restarts, still trains: the checks overlap its run.
        ride_status = cluster.wait_for_phase("ride", "Succeeded", "Failed", timeout=180)
        print(f"ride done {time.monotonic() - sampler.outage_began:.1f}s after the outage began")
        assert epochs_during - epochs_before >= 4, (epochs_before, epochs_during, log_during)
        check_ride(cluster, ride, ride_status, list(sampler.samples["ride"]), back_at)
        short_status = cluster.wait_for_phase("short", "Succeeded", "Failed", timeout=180)
        print(f"short done {time.monotonic() - sampler.outage_began:.1f}s after the outage began")
    check_short(cluster, short, short_status, sampler.samples["short"])


def check_ride(
    cluster: Cluster, manifest: dict[str, Any], status: dict[str, Any], samples: list[Sample], back_at: float
) -> None:
    """The outage was ridden out in the first attempt, training went on, nothing was lost, and
    the status said storage was unavailable while it was and stopped saying so after."""
    assert status["phase"] == "Succeeded", dump(status)
    assert status["attempt"] == 0 and status.get("restarts", 0) == 0, dump(status)
    assert status["iteration"] == EPOCHS and status["latestCheckpoint"]["iteration"] == EPOCHS
    # report() never waited for an upload (epochs went on during the outage: asserted above).
    _, log = epochs_logged(cluster, "ride-0-0")
    assert BLOCKED not in log, log
    during = [s for s in samples if 0 < s.at < back_at]
    assert any(s.storage_available is False for s in during), samples
    assert any(s.condition == ("True", "StorageUnreachable") for s in during), samples
    assert not any(s.condition and s.condition[1] == "RetryBudgetExceeded" for s in samples), samples
    assert status["storage"]["available"] is True
    assert storage_condition(status) == ("False", "StorageReachable")
    events = events_of(cluster, "ride")
    assert ("Warning", "StorageUnavailable") in events, events
    assert ("Normal", "StorageAvailable") in events, events
    assert ("Warning", "StorageRetryBudgetExceeded") not in events, events
    # Nothing lost: every checkpoint it reported is committed, whole and loadable, and the metric
    # history has every iteration once.
    uri = manifest["spec"]["storage"]["uri"]
    committed = check_committed_checkpoints(uri, NAMESPACE, "ride")
    assert committed == list(range(CHECKPOINT_EVERY, EPOCHS + 1, CHECKPOINT_EVERY)), committed
    assert history_iterations(uri, "ride", 0) == list(range(1, EPOCHS + 1))


def check_short(
    cluster: Cluster, manifest: dict[str, Any], status: dict[str, Any], samples: list[Sample]
) -> None:
    """Past its 5 s budget the job said so (condition, events), the attempt failed instead of
    hanging, and the restart still ended in success with every committed checkpoint whole."""
    assert status["phase"] == "Succeeded", dump(status)
    assert status["iteration"] == SHORT_EPOCHS and status["latestCheckpoint"]["iteration"] == SHORT_EPOCHS
    assert any(s.condition == ("True", "RetryBudgetExceeded") for s in samples if s.at > 0), samples
    assert status["restarts"] >= 1, dump(status)  # the upload that gave up failed the attempt
    events = events_of(cluster, "short")
    for expected in (
        ("Warning", "StorageUnavailable"),
        ("Warning", "StorageRetryBudgetExceeded"),
        ("Warning", "Restarting"),
        ("Normal", "StorageAvailable"),
    ):
        assert expected in events, events
    assert storage_condition(status) == ("False", "StorageReachable")
    described = cluster.kubectl("describe", "trainjob", "short")
    assert "StorageRetryBudgetExceeded" in described and "retryBudgetSeconds" in described, described
    committed = check_committed_checkpoints(manifest["spec"]["storage"]["uri"], NAMESPACE, "short")
    assert committed and committed[-1] == SHORT_EPOCHS, committed


def storage_condition(status: dict[str, Any]) -> tuple[str, str] | None:
    found = [c for c in status.get("conditions") or [] if c["type"] == "StorageUnavailable"]
    return (found[0]["status"], found[0]["reason"]) if found else None
