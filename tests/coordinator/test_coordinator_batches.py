"""``POST /v1/reports`` with a batch (``{"reports": [...]}``), the form the SDK's sender uses: in
order, each report judged as if it came alone, a refusal that says exactly which report and loses
none of the others, a malformed batch refused whole, and a re-sent batch recorded once."""

from __future__ import annotations

import pytest

from tests.support.coordinator import StartCoordinator, history_lines, report_body, upload

pytestmark = pytest.mark.parametrize("storage_uri", ["file"], indirect=True)


async def test_a_batch_is_recorded_in_order_as_its_reports_would_be_alone(
    start_coordinator: StartCoordinator,
) -> None:
    harness = await start_coordinator(world_size=2)
    upload(harness.storage, 3, {"model.pt": 7})
    batch = [
        report_body(rank, iteration, metrics={"loss": float(iteration), "rank": rank}, files=files)
        for iteration in range(1, 6)
        for rank in (0, 1)
        for files in [{"model.pt": 7} if (rank, iteration) == (0, 3) else None]
    ]
    status, body = await harness.post("/v1/reports", {"reports": batch})
    assert status == 200, body
    assert body["accepted"] == 10 and body["refused"] == 0
    assert body["results"] == [{"duplicate": False}] * 10
    assert body["iteration"] == 5
    state = await harness.wait_for(lambda s: (s["latestCheckpoint"] or {}).get("iteration") == 3)
    assert state["ranks"] == {"0": 5, "1": 5}
    assert state["metrics"] == {"loss": 5.0, "rank": 0}

    await harness.finalize(0, 5)
    await harness.finalize(1, 5)
    await harness.wait_for(lambda s: s["settled"])
    lines = history_lines(harness.storage)
    assert [(line["iteration"], line["metrics"]["loss"]) for line in lines] == [
        (i, float(i)) for i in range(1, 6)
    ]


async def test_a_refused_report_is_named_and_the_others_are_recorded(
    start_coordinator: StartCoordinator,
) -> None:
    harness = await start_coordinator(world_size=2)
    # Rank 0 skips iteration 3; rank 1's reports around it are fine.
    batch = [report_body(0, 1), report_body(1, 1), report_body(0, 2), report_body(0, 4), report_body(1, 2)]
    status, body = await harness.post("/v1/reports", {"reports": batch})

    assert status == 409
    assert body["error"] == (
        "1 of 5 reports refused (the others are recorded); the first, reports[3] (rank 0, iteration 4): "
        "rank 0 reported iteration 4 right after 2: every rank reports every iteration, in order "
        "(next expected: 3)"
    )
    assert body["accepted"] == 4 and body["refused"] == 1
    assert body["results"][3]["status"] == 409
    assert [result.get("duplicate") for result in body["results"]] == [False, False, False, None, False]
    state = await harness.state()
    assert state["ranks"] == {"0": 2, "1": 2}
    assert state["iteration"] == 2

    # Sending the whole batch again (what a client does that only looks at the status) records
    # nothing twice: the accepted reports come back as duplicates, the refused one is refused again.
    status, body = await harness.post("/v1/reports", {"reports": batch})
    assert status == 409
    assert [result.get("duplicate") for result in body["results"]] == [True, True, True, None, True]
    assert (await harness.state())["ranks"] == {"0": 2, "1": 2}


async def test_a_malformed_report_refuses_the_whole_batch_before_anything_is_recorded(
    start_coordinator: StartCoordinator,
) -> None:
    harness = await start_coordinator(world_size=2)
    batch = [report_body(0, 1), report_body(0, 2, metrics={"loss": [0.5]})]
    status, body = await harness.post("/v1/reports", {"reports": batch})
    assert status == 400
    assert body == {
        "error": "batch.reports[1]: report.metrics['loss'] has type list: only numbers, strings, booleans "
        "and None are allowed (convert tensors with .item())"
    }
    assert (await harness.state())["ranks"] == {}

    for empty, message in (
        ({"reports": []}, "batch.reports is empty: send at least one report"),
        ({"reports": {"rank": 0}}, "batch.reports must be a list, got dict"),
    ):
        status, body = await harness.post("/v1/reports", empty)
        assert (status, body) == (400, {"error": message})


async def test_a_resent_batch_is_recorded_once(start_coordinator: StartCoordinator) -> None:
    """A batch whose answer was lost is sent again by the SDK: the coordinator's duplicates (a
    report at or below a rank's last iteration) keep the history and the iteration unchanged."""
    harness = await start_coordinator(world_size=1)
    batch = [report_body(0, iteration) for iteration in range(1, 4)]
    first = await harness.post("/v1/reports", {"reports": batch})
    again = await harness.post("/v1/reports", {"reports": [*batch[1:], report_body(0, 4)]})
    assert first[0] == again[0] == 200
    assert [r["duplicate"] for r in again[1]["results"]] == [True, True, False]
    await harness.finalize(0, 4)
    await harness.wait_for(lambda s: s["settled"])
    assert [line["iteration"] for line in history_lines(harness.storage)] == [1, 2, 3, 4]
