"""`trainjob coordinator` as a process: startup line, SIGTERM flush, SIGKILL and restart."""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.coordinator import JOB, NS, PREFIX, TOKEN, history_lines, keys, report_body, upload
from trainjob_operator.local.ports import free_port
from worker_sdk.protocol import MANIFEST_NAME
from worker_sdk.storage import Storage, open_storage

TRAINJOB = str(Path(sys.executable).parent / "trainjob")


@dataclass
class CoordinatorProcess:
    process: subprocess.Popen[str]
    url: str
    status_path: Path

    def request(self, method: str, path: str, body: Any = None, token: str = TOKEN) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 - http://127.0.0.1 only
            f"{self.url}{path}",
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def report(self, rank: int, iteration: int, **kwargs: Any) -> dict[str, Any]:
        status, body = self.request("POST", "/v1/reports", report_body(rank, iteration, **kwargs))
        assert status == 200, body
        result: dict[str, Any] = body
        return result

    def finalize(self, rank: int, iteration: int) -> None:
        status, body = self.request(
            "POST", "/v1/finalize", {"rank": rank, "attempt": 0, "iteration": iteration}
        )
        assert status == 200, body

    def state(self) -> dict[str, Any]:
        status, body = self.request("GET", "/v1/state")
        assert status == 200, body
        result: dict[str, Any] = body
        return result

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            state = self.state()
            if predicate(state):
                return state
            if time.monotonic() > deadline:
                raise AssertionError(f"state never matched: {state}")
            time.sleep(0.05)

    def status(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.status_path.read_text())
        return result

    def stop(self, signum: int) -> int:
        self.process.send_signal(signum)
        return self.process.wait(timeout=30)


StartProcess = Callable[..., CoordinatorProcess]


@pytest.fixture
def start_process(storage_uri: str, tmp_path: Path) -> Iterator[StartProcess]:
    token_file = tmp_path / "token"
    token_file.write_text(f"{TOKEN}\n")
    status_path = tmp_path / "status.json"
    started: list[subprocess.Popen[str]] = []

    def start(*extra: str, world_size: int = 2) -> CoordinatorProcess:
        port = free_port()
        args = [
            TRAINJOB,
            "coordinator",
            f"--job={JOB}",
            f"--namespace={NS}",
            f"--world-size={world_size}",
            "--attempt=0",
            f"--storage={storage_uri}",
            "--host=127.0.0.1",
            f"--port={port}",
            f"--token-file={token_file}",
            f"--status-sink=file:{status_path}",
            "--status-interval=0.2",
            *extra,
        ]
        log = open(tmp_path / f"coordinator-{len(started)}.log", "w")  # noqa: SIM115 - the process keeps it
        process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log, text=True, env=dict(os.environ))
        log.close()
        started.append(process)
        assert process.stdout is not None
        selector = selectors.DefaultSelector()
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout=30):
            raise AssertionError(f"coordinator did not start; see {log.name}")
        line = process.stdout.readline()
        assert line == f"coordinator listening on http://127.0.0.1:{port}\n", line
        return CoordinatorProcess(process, f"http://127.0.0.1:{port}", status_path)

    yield start
    for process in started:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()


def test_sigterm_flushes_history_and_status_and_exits_zero(
    start_process: StartProcess, storage_uri: str
) -> None:
    storage = open_storage(storage_uri)
    coordinator = start_process(world_size=1)
    for iteration in range(1, 6):
        body = coordinator.report(0, iteration, metrics={"loss": 1.0 / iteration})
        assert body["accepted"] and body["iteration"] == iteration
    assert coordinator.stop(signal.SIGTERM) == 0
    assert [line["iteration"] for line in history_lines(storage)] == [1, 2, 3, 4, 5]
    status = coordinator.status()
    assert status["iteration"] == 5 and status["metrics"] == {"loss": 0.2}


def test_bad_arguments_exit_with_a_message(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("")
    result = subprocess.run(
        [
            TRAINJOB,
            "coordinator",
            "--job=j",
            "--namespace=n",
            "--world-size=1",
            "--attempt=0",
            f"--storage={tmp_path.as_uri()}",
            "--port=0",
            f"--token-file={tmp_path / 'token'}",
            "--status-sink=file:/dev/null",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "is empty" in result.stderr


def committed_iterations(storage: Storage) -> list[int]:
    return sorted(
        int(key.split("/")[2].removeprefix("checkpoint_"))
        for key in keys(storage)
        if key.endswith(MANIFEST_NAME)
    )


def test_restarted_coordinator_goes_on_where_the_last_stopped(
    start_process: StartProcess, storage_uri: str
) -> None:
    storage = open_storage(storage_uri)
    options = ("--num-to-keep=3", "--score-attribute=loss", "--score-order=min")

    # First process: iterations 1-4, rank-0 checkpoints at 2 and 4; stopped gracefully.
    first = start_process(*options)
    for iteration in range(1, 5):
        files = {"model.pt": iteration} if iteration % 2 == 0 else None
        if files:
            upload(storage, iteration, files)
        first.report(0, iteration, metrics={"loss": 10.0 - iteration}, files=files)
        first.report(1, iteration)
    first.wait_for(lambda s: s["latestCheckpoint"] and s["latestCheckpoint"]["iteration"] == 4)
    first_id = first.state()["coordinatorId"]
    assert first.stop(signal.SIGTERM) == 0

    # Second process: recovers, goes on, is killed with a checkpoint in flight (rank 1 has not
    # reported iteration 6 yet).
    second = start_process(*options)
    state = second.wait_for(lambda s: s["latestCheckpoint"] is not None)
    assert state["coordinatorId"] != first_id
    assert state["latestCheckpoint"]["iteration"] == 4 and state["iteration"] == 4
    assert [c["iteration"] for c in state["checkpoints"]] == [2, 4]
    second.report(0, 5, metrics={"loss": 5.0})
    second.report(1, 5)
    upload(storage, 6, {"model.pt": 6})
    upload(storage, 6, {"from-a-dead-attempt.pt": 1})  # must not block or survive the commit
    second.report(0, 6, metrics={"loss": 4.0}, files={"model.pt": 6})
    second.wait_for(lambda s: s["iteration"] == 5)
    second.process.kill()
    second.process.wait()

    # Third process: the SDK sees a new coordinator id and re-sends what is not committed.
    third = start_process(*options)
    third.wait_for(lambda s: s["latestCheckpoint"] is not None)
    body = third.report(0, 7, metrics={"loss": 3.0})  # the live report comes first ...
    assert body["coordinatorId"] != state["coordinatorId"]
    resent = third.report(0, 6, metrics={"loss": 4.0}, files={"model.pt": 6})  # ... then the re-send
    assert resent["duplicate"] is True
    third.report(1, 6)
    third.report(1, 7)
    state = third.wait_for(lambda s: s["latestCheckpoint"]["iteration"] == 6)
    assert state["iteration"] == 7
    assert state["metrics"] == {"loss": 3.0}
    assert [c["iteration"] for c in state["checkpoints"]] == [2, 4, 6]
    assert state["bestCheckpoint"]["iteration"] == 6
    assert committed_iterations(storage) == [2, 4, 6]
    assert sorted(k.rsplit("/", 1)[1] for k in keys(storage) if "checkpoint_000006" in k) == [
        MANIFEST_NAME,
        "model.pt",
    ]

    third.finalize(0, 7)
    third.finalize(1, 7)
    third.wait_for(lambda s: s["settled"])
    assert third.stop(signal.SIGTERM) == 0
    # History: parts of the first process, then the third's; the second's unflushed lines
    # (iteration 5, no checkpoint after it) died with it.
    parts = [obj.key.rsplit("/", 1)[1] for obj in storage.list_objects(f"{PREFIX}/metrics/attempt-0")]
    assert parts == sorted(parts) and len(parts) == len(set(parts))
    iterations = [line["iteration"] for line in history_lines(storage)]
    assert iterations == [1, 2, 3, 4, 6, 7]
    status = third.status()
    assert status["iteration"] == 7
    assert status["latestCheckpoint"]["iteration"] == 6
    assert status["latestCheckpoint"]["uri"] == storage.uri_for(f"{PREFIX}/checkpoint_000006")
