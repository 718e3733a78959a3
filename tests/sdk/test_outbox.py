"""The outbox between report() and the sending thread: nothing put is ever left waiting for a
wake-up that does not come, and a full outbox blocks rather than drops."""

from __future__ import annotations

import threading
import time

import pytest

from worker_sdk._outbox import Outbox, OutboxFull


def test_an_urgent_put_wakes_an_idle_sender_whatever_the_flush_flag_says() -> None:
    outbox: Outbox[int] = Outbox(100)
    taken: list[list[int]] = []
    got = threading.Event()

    def sender() -> None:
        while True:
            items = outbox.take(linger=30.0, limit=10)  # lingering would outlast the test
            taken.append(items)
            got.set()
            if -1 in items:
                return

    thread = threading.Thread(target=sender, daemon=True)
    thread.start()
    outbox.put(1, urgent=True)
    assert got.wait(5) and taken == [[1]]
    # The state a race leaves behind: an urgent put after the sender reset the flag, whose item
    # the sender then took with the others. The sender is idle again, the flag still set (its
    # internals: the race cannot be timed from outside).
    while not outbox._idle:
        time.sleep(0.01)
    outbox._flush_now = True
    got.clear()
    outbox.put(2, urgent=True)
    assert got.wait(5), "the sender was never woken"
    assert taken == [[1], [2]]
    outbox.put(-1, urgent=True)
    thread.join(5)
    assert taken == [[1], [2], [-1]]


def test_a_full_outbox_blocks_until_the_sender_takes_and_says_so() -> None:
    told = []
    outbox: Outbox[int] = Outbox(2, on_full=lambda: told.append(len(outbox)))
    outbox.put(1)
    outbox.put(2)
    with pytest.raises(OutboxFull, match="2 items are waiting to be sent"):
        outbox.put(3, timeout=0.1)
    assert told == [2] and outbox.snapshot() == [1, 2]

    taker = threading.Thread(target=lambda: outbox.take(linger=0.0, limit=1))
    taker.start()
    outbox.put(3, timeout=5)  # room made by the take
    taker.join(5)
    assert outbox.snapshot() == [2, 3]  # in order, nothing lost
