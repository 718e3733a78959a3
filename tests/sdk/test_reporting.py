"""report() without a checkpoint only enqueues: a coordinator that hangs never slows training."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import worker_sdk as train
from worker_sdk import session

SetEnv = Callable[..., None]


def job_env(coordinator_url: str, storage_uri: str) -> dict[str, str]:
    return {
        "TRAINJOB_NAME": "hang",
        "TRAINJOB_NAMESPACE": "ml",
        "TRAINJOB_ATTEMPT": "0",
        "WORLD_SIZE": "1",
        "RANK": "0",
        "LOCAL_RANK": "0",
        "LOCAL_WORLD_SIZE": "1",
        "NODE_RANK": "0",
        "TRAINJOB_COORDINATOR_URL": coordinator_url,
        "TRAINJOB_REPORT_TOKEN": "token",
        "TRAINJOB_STORAGE_URI": storage_uri,
    }


def test_report_returns_at_once_while_the_coordinator_hangs(
    sdk_env: SetEnv, silent_server: str, tmp_path: Path
) -> None:
    sdk_env(
        **job_env(silent_server, (tmp_path / "storage").as_uri()),
        TRAINJOB_HTTP_TIMEOUT_SECONDS="10",  # each request to the silent server hangs this long
        TRAINJOB_FINAL_WAIT_SECONDS="0.5",
    )
    train.get_context()  # the session (and its sending thread) exists before timing
    durations = []
    for step in range(300):
        started = time.perf_counter()
        train.report({"loss": 1.0 / (step + 1), "step": step})
        durations.append(time.perf_counter() - started)

    # Well under the 10 s HTTP timeout, with room for a loaded machine.
    assert max(durations) < 0.5, max(durations)
    assert statistics.median(durations) < 0.01

    started = time.monotonic()
    failures = session.shutdown()
    assert time.monotonic() - started < 5
    assert [str(failure) for failure in failures] == [
        f"300 report(s) or the finalize were not delivered to the coordinator at {silent_server} within "
        "TRAINJOB_FINAL_WAIT_SECONDS=0.5"
    ]
