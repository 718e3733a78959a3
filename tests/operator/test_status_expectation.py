"""The operator's view of a job after its own status patch, with resourceVersions that are opaque:
these tests use versions that are not numbers, so any ordering by value would break them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from trainjob_operator.controller.expecting import StatusExpectation

ROOT = Path(__file__).resolve().parents[2]


def job(version: str, phase: str) -> dict[str, Any]:
    return {"metadata": {"name": "j", "resourceVersion": version}, "status": {"phase": phase}}


def test_without_a_patch_the_watch_is_the_view() -> None:
    assert StatusExpectation().view(job("zz", "Running")) == job("zz", "Running")


def test_the_patch_is_the_view_until_the_watch_shows_its_version() -> None:
    expectation = StatusExpectation()
    before, after = job("q7", "Pending"), job("b2", "Running")
    expectation.patched(before, after)
    # The patch's event has not come: the watch still shows the version it was sent from.
    assert expectation.view(before) == after
    # Caught up: the watch's own object, and from then on whatever the watch shows.
    assert expectation.view(job("b2", "Running")) == job("b2", "Running")
    assert expectation.view(job("a0", "Succeeded")) == job("a0", "Succeeded")


def test_an_unknown_version_after_a_patch_asks_for_a_read_and_the_read_is_the_view() -> None:
    expectation = StatusExpectation()
    expectation.patched(job("m", "Pending"), job("c", "Running"))
    # "k" may be an event from before the patch still in flight, or a newer change: undecidable.
    in_flight = job("k", "Pending")
    assert expectation.view(in_flight) is None
    read = job("x", "Running")
    expectation.read(in_flight, read)
    assert expectation.view(in_flight) == read  # "k" is known to be no newer than the read
    assert expectation.view(job("c", "Running")) is None  # the patch's event: older than the read? unknown
    expectation.read(job("c", "Running"), read)
    assert expectation.view(job("x", "Running")) == job("x", "Running")


def test_a_second_patch_before_the_first_is_seen_keeps_the_first_as_older() -> None:
    expectation = StatusExpectation()
    expectation.patched(job("p0", "Pending"), job("p1", "Running"))
    expectation.patched(job("p0", "Pending"), job("p2", "Running"))
    # The first patch's event arrives: it is older than the second patch's answer.
    assert expectation.view(job("p1", "Running")) == job("p2", "Running")


def test_no_resource_version_is_parsed_as_a_number_in_the_operator_or_the_sdk() -> None:
    """resourceVersions are opaque: int() of one, anywhere in operator/ or worker_sdk/, is a bug."""
    pattern = re.compile(r"\bint\(.*resource_?version", re.IGNORECASE)
    found = [
        f"{path.relative_to(ROOT)}:{number}"
        for tree in ("operator/src", "worker_sdk/src")
        for path in sorted((ROOT / tree).rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert found == []
