"""The operator's write threads (`controller.writing`): creations go out before the rest."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest
from prometheus_client import REGISTRY

from trainjob_operator.controller import metrics
from trainjob_operator.controller.writing import Lane, LanedWriter


@pytest.fixture
def writer() -> Iterator[LanedWriter]:
    laned = LanedWriter(1, "test-write")
    try:
        yield laned
    finally:
        laned.shutdown()


def _blocking(writer: LanedWriter) -> threading.Event:
    """Occupy the writer's only thread until the returned event is set."""
    release, started = threading.Event(), threading.Event()

    def hold() -> None:
        started.set()
        release.wait(10)

    writer.submit(Lane.PROGRESS, hold)
    assert started.wait(10)
    return release


def _recording(done: list[str], name: str) -> Callable[[], str]:
    def call() -> str:
        done.append(name)
        return name

    return call


def test_queued_creations_go_before_earlier_progress_and_each_lane_keeps_its_order(
    writer: LanedWriter,
) -> None:
    release = _blocking(writer)
    done: list[str] = []
    submitted = [
        (Lane.PROGRESS, "remove gate a-0"),
        (Lane.PROGRESS, "patch status a"),
        (Lane.CREATE, "create pod b-0"),
        (Lane.PROGRESS, "remove gate a-1"),
        (Lane.CREATE, "create pod b-1"),
    ]
    futures = [writer.submit(lane, _recording(done, name)) for lane, name in submitted]
    assert writer.queued() == {Lane.CREATE: 2, Lane.PROGRESS: 3}
    release.set()
    assert [future.result(10) for future in futures] == [name for _, name in submitted]
    assert done == [
        "create pod b-0",
        "create pod b-1",
        "remove gate a-0",
        "patch status a",
        "remove gate a-1",
    ]
    assert writer.queued() == {Lane.CREATE: 0, Lane.PROGRESS: 0}


def test_progress_gets_one_write_in_every_share_while_creations_wait() -> None:
    writer = LanedWriter(1, "test-share", progress_share=3)
    try:
        release = _blocking(writer)
        done: list[str] = []
        for name in ("create 1", "create 2", "create 3", "create 4", "create 5"):
            writer.submit(Lane.CREATE, _recording(done, name))
        for name in ("gate 1", "gate 2"):
            writer.submit(Lane.PROGRESS, _recording(done, name))
        last = writer.submit(Lane.CREATE, _recording(done, "create 6"))
        release.set()
        assert last.result(10) == "create 6"
        assert done == [
            *("create 1", "create 2", "gate 1"),
            *("create 3", "create 4", "gate 2"),
            *("create 5", "create 6"),
        ]
    finally:
        writer.shutdown()


def test_a_failed_call_hands_its_exception_to_its_future_and_the_thread_goes_on(writer: LanedWriter) -> None:
    def refused() -> None:
        raise ValueError("409 Conflict")

    failed = writer.submit(Lane.CREATE, refused)
    with pytest.raises(ValueError, match="409 Conflict"):
        failed.result(10)
    assert writer.submit(Lane.PROGRESS, lambda: "next").result(10) == "next"


def test_a_call_cancelled_while_queued_is_not_made(writer: LanedWriter) -> None:
    release = _blocking(writer)
    done: list[str] = []
    cancelled = writer.submit(Lane.CREATE, _recording(done, "cancelled"))
    kept = writer.submit(Lane.PROGRESS, _recording(done, "kept"))
    assert cancelled.cancel()
    release.set()
    assert kept.result(10) == "kept"
    assert done == ["kept"]


def test_shutdown_ends_the_threads_after_what_is_queued() -> None:
    writer = LanedWriter(2, "test-shutdown")
    threads = [thread for thread in threading.enumerate() if thread.name.startswith("test-shutdown-")]
    assert len(threads) == 2
    done: list[str] = []
    futures = [writer.submit(Lane.PROGRESS, _recording(done, str(i))) for i in range(20)]
    writer.shutdown()
    assert [future.result(10) for future in futures] == [str(i) for i in range(20)]
    for thread in threads:
        thread.join(10)
    assert not any(thread.is_alive() for thread in threads)
    assert sorted(done, key=int) == [str(i) for i in range(20)]


def test_a_write_after_shutdown_is_refused() -> None:
    writer = LanedWriter(1, "test-refused")
    writer.shutdown()
    with pytest.raises(RuntimeError, match="cannot queue a write after shutdown"):
        writer.submit(Lane.CREATE, lambda: None)


def test_no_threads_and_no_share_are_refused() -> None:
    with pytest.raises(ValueError, match="threads must be >= 1"):
        LanedWriter(0, "none")
    with pytest.raises(ValueError, match="progress_share must be >= 1"):
        LanedWriter(1, "none", progress_share=0)


def test_the_queues_are_a_gauge_read_when_scraped(writer: LanedWriter) -> None:
    def gauge(lane: str) -> float | None:
        return REGISTRY.get_sample_value("trainjob_operator_writes_queued", {"lane": lane})

    metrics.watch_write_queues(writer.queued)
    release = _blocking(writer)
    futures = [writer.submit(lane, lambda: None) for lane in (Lane.CREATE, Lane.CREATE, Lane.PROGRESS)]
    assert (gauge("create"), gauge("progress")) == (2.0, 1.0)
    release.set()
    for future in futures:
        future.result(10)
    assert (gauge("create"), gauge("progress")) == (0.0, 0.0)
