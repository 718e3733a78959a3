"""The SDK against the real coordinator, step by step: rank 0 is an SDK process driven through its
stdin, rank 1 speaks the protocol directly, so the order of events is exact."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import textwrap
import threading
import urllib.request
from typing import Any

import pytest

from tests.support.job import CoordinatorProcess, JobRunner
from tests.support.processes import wait_until
from worker_sdk.protocol import Finalize, Report
from worker_sdk.storage import open_storage

DRIVEN_RANK = textwrap.dedent(
    """
    import pathlib, sys, tempfile, worker_sdk as train
    for line in sys.stdin:
        command = line.strip()
        if command == "exit":
            break
        try:
            if command == "checkpoint":
                with tempfile.TemporaryDirectory() as directory:
                    (pathlib.Path(directory) / "model.pt").write_bytes(b"weights")
                    train.report({"loss": 1.0}, checkpoint=train.Checkpoint.from_directory(directory))
            else:
                train.report({"loss": 0.5})
            print("ok", flush=True)
        except Exception as exc:
            print(f"{type(exc).__name__}: {exc}", flush=True)
    """
)


def start_driven_rank(
    runner: JobRunner, coordinator: CoordinatorProcess, **env: str
) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-c", DRIVEN_RANK],
        env={**runner.worker_env(0, 0, coordinator, master_port=1), **env},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=open(runner.tmp_path / "driven-rank.log", "w"),  # noqa: SIM115 - the process owns it
        text=True,
    )
    runner.processes.append(process)  # type: ignore[arg-type]  # stopped with the others
    return process


def command(process: subprocess.Popen[str], line: str) -> str:
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(f"{line}\n")
    process.stdin.flush()
    return process.stdout.readline().strip()


def test_a_commit_in_flight_completes_after_a_coordinator_restart(job_runner: Any) -> None:
    runner: JobRunner = job_runner(2)
    coordinator = runner.start_coordinator(0)
    rank0 = start_driven_rank(runner, coordinator)
    assert command(rank0, "checkpoint") == "ok"  # iteration 1, its files uploaded
    coordinator.wait_for_state("rank 0's report", lambda s: s["ranks"].get("0") == 1)

    # The coordinator dies before rank 1 reports iteration 1: nothing is committed yet.
    coordinator.kill()
    coordinator = runner.start_coordinator(0, port=coordinator.port)
    rank1_report = Report(rank=1, attempt=0, iteration=1, metrics={"loss": 1.0})
    coordinator.request("POST", "/v1/reports", rank1_report.to_json())
    assert coordinator.state()["latestCheckpoint"] is None  # it never heard of rank 0's part

    # Rank 0's next report meets the new coordinator, which makes the SDK re-send iteration 1.
    assert command(rank0, "report") == "ok"
    state = coordinator.wait_for_state("the in-flight commit", lambda s: s["latestCheckpoint"] is not None)
    assert state["latestCheckpoint"]["iteration"] == 1
    assert state["latestCheckpoint"]["metrics"] == {"loss": 1.0}

    coordinator.request("POST", "/v1/reports", Report(1, 0, 2, {"loss": 0.5}).to_json())
    coordinator.request("POST", "/v1/finalize", Finalize(1, 0, 2).to_json())
    assert rank0.stdin is not None
    rank0.stdin.write("exit\n")
    rank0.stdin.close()
    assert rank0.wait(60) == 0
    state = coordinator.state()
    assert state["settled"] and state["finalized"] == [0, 1] and state["iteration"] == 2
    coordinator.stop()


def test_a_wrong_token_is_named_in_the_error(job_runner: Any) -> None:
    runner: JobRunner = job_runner(1)
    coordinator = runner.start_coordinator(0)
    rank0 = start_driven_rank(runner, coordinator, TRAINJOB_REPORT_TOKEN="not-the-token")
    assert command(rank0, "report") == "ok"  # report() only enqueues; the refusal comes back later

    def refusal() -> str | None:
        answer = command(rank0, "report")
        return None if answer == "ok" else answer

    assert wait_until("the 401 to surface", refusal, timeout=30) == (
        f"CoordinatorError: the coordinator at {coordinator.url} refused the report token (HTTP 401): "
        "TRAINJOB_REPORT_TOKEN does not match the job's token"
    )
    assert rank0.stdin is not None
    rank0.stdin.write("exit\n")
    rank0.stdin.close()
    assert rank0.wait(60) == 1  # and the exit says reports were not delivered
    coordinator.stop()


# Rank 1 starts after rank 0 has finished (its pod was slow to start), then reports slowly.
LATE_RANK = (
    "import os, time\n"
    "late = os.environ['RANK'] == '1'\n"
    "if late: time.sleep(5)\n"
    "import worker_sdk as train\n"
    "for step in range(1, 5):\n"
    "    train.report({'step': step})\n"
    "    if late: time.sleep(1)\n"
)


@pytest.mark.parametrize("storage_uri", ["file"], indirect=True)  # no checkpoints: storage is not the point
def test_rank_0_keeps_the_coordinator_until_a_late_rank_has_reported_everything(job_runner: Any) -> None:
    runner: JobRunner = job_runner(2)
    coordinator = runner.start_coordinator(0)
    # Rank 0's wait is 2 s after the last progress: shorter than rank 1's late start and than
    # its whole run, so only a wait that follows the other ranks keeps rank 0 to the end.
    workers = runner.start_workers(
        0, coordinator, {}, args=("-c", LATE_RANK), env={"TRAINJOB_FINAL_WAIT_SECONDS": "2"}
    )
    # Rank 1's first report comes 5 s after the start, 3 s after a 2 s wait of rank 0 would
    # have ended; rank 0 must still be there, and stay until rank 1's last report is in.
    coordinator.wait_for_state("rank 1's first report", lambda s: "1" in s["ranks"])
    assert workers[0].poll() is None, runner.tails()

    assert runner.wait(workers) == [0, 0], runner.tails()
    rank_0 = runner.log("rank-0-attempt-0")
    assert "waiting for rank(s) 1, not heard from yet" in rank_0
    assert "exiting anyway" not in rank_0
    state = coordinator.state()
    assert state["settled"] and state["ranks"] == {"0": 4, "1": 4}, state


class ResponseDroppingProxy:
    """A TCP proxy to the coordinator that, once armed, closes the connection instead of passing
    on the next answer: the request arrived and was recorded, the client never learns it."""

    def __init__(self, target_port: int) -> None:
        self._target = ("127.0.0.1", target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._armed = threading.Event()
        self.dropped = 0
        self.connections = 0
        self._sockets: list[socket.socket] = []
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def drop_next_answer(self) -> None:
        self._armed.set()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        for sock in self._sockets:
            sock.close()
        for thread in self._threads:
            thread.join(timeout=5)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            upstream = socket.create_connection(self._target)
            self._sockets += [client, upstream]
            for source, sink, answers in ((client, upstream, False), (upstream, client, True)):
                thread = threading.Thread(target=self._pump, args=(source, sink, answers), daemon=True)
                self._threads.append(thread)
                thread.start()

    def _pump(self, source: socket.socket, sink: socket.socket, answers: bool) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if answers and self._armed.is_set():
                    self._armed.clear()
                    self.dropped += 1
                    for sock in (source, sink):
                        sock.shutdown(socket.SHUT_RDWR)
                    return
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


@pytest.mark.parametrize("storage_uri", ["file"], indirect=True)  # no checkpoints: storage is not the point
def test_reports_whose_answer_was_lost_are_sent_again_and_recorded_once(job_runner: Any) -> None:
    runner: JobRunner = job_runner(1)
    coordinator = runner.start_coordinator(0)
    proxy = ResponseDroppingProxy(coordinator.port)
    try:
        rank0 = start_driven_rank(runner, coordinator, TRAINJOB_COORDINATOR_URL=proxy.url)
        for _ in range(3):
            assert command(rank0, "report") == "ok"
        coordinator.wait_for_state("the first reports", lambda s: s["ranks"].get("0") == 3)

        proxy.drop_next_answer()
        for _ in range(3):
            assert command(rank0, "report") == "ok"
        coordinator.wait_for_state("the other reports", lambda s: s["ranks"].get("0") == 6)
        wait_until("the answer to be dropped", lambda: proxy.dropped == 1 or None)
        assert rank0.stdin is not None
        rank0.stdin.write("exit\n")
        rank0.stdin.close()
        assert rank0.wait(60) == 0, runner.log("driven-rank") if "driven-rank" in runner.logs else ""
        state = coordinator.state()
        assert state["settled"] and state["iteration"] == 6 and state["finalized"] == [0]
        # The re-sent request went on a new connection, and its reports were taken as duplicates.
        assert proxy.connections >= 2
        metrics = urllib.request.urlopen(f"{coordinator.url}/metrics", timeout=10).read().decode()  # noqa: S310
        accepted = [
            line
            for line in metrics.splitlines()
            if line.startswith("trainjob_coordinator_reports_accepted_total")
        ]
        assert len(accepted) == 1 and 7 <= float(accepted[0].split()[-1]) <= 9, accepted
        coordinator.stop()
        storage = open_storage(runner.storage_uri)
        prefix = f"{runner.namespace}/{runner.job}/metrics/"
        texts = [storage.get_bytes(stored.key) for stored in storage.list_objects(prefix)]
        assert all(text is not None for text in texts)  # each listed object reads back
        lines = [
            json.loads(line) for text in texts if text is not None for line in text.decode().splitlines()
        ]
        assert [line["iteration"] for line in lines] == [1, 2, 3, 4, 5, 6]
    finally:
        proxy.close()
