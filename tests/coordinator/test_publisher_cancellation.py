"""The status publisher stops when cancelled, even when the cancellation arrives in the same loop
step as a wake-up.

On Python 3.11 ``asyncio.wait_for`` returns the inner result and drops a cancellation that lands
while the awaited event is being set (CPython gh-86296, fixed in 3.12). The publisher's loop then
carried on and the coordinator's shutdown waited for it forever: the hang seen once in the
bad-input table's coordinator rows. The loops use ``asyncio.timeout`` instead.
"""

from __future__ import annotations

import asyncio

from tests.support.coordinator import RecordingSink
from trainjob_operator.coordinator.publishing import StatusPublisher


async def test_a_cancel_that_arrives_with_a_wake_up_stops_the_publisher() -> None:
    sink = RecordingSink()
    publisher = StatusPublisher(sink, lambda: {"iteration": 1}, interval=60.0)
    task = asyncio.create_task(publisher.run())
    publisher.changed()  # dirty: the loop now waits up to the interval for the due time
    for _ in range(5):
        await asyncio.sleep(0)
    publisher.changed(urgent=True)  # sets the wake-up ...
    task.cancel()  # ... and the cancel arrives in the same step
    done, _ = await asyncio.wait({task}, timeout=10.0)
    assert done == {task}, "the publisher swallowed its cancellation and kept running"
    assert task.cancelled()
