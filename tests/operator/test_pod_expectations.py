"""Pods the operator created count as observed (Pending) until the watch shows them, until the
operator deletes them, or until the expectation expires."""

from __future__ import annotations

from typing import Any

from trainjob_operator.controller.expecting import PodExpectations


def pod(name: str, phase: str = "Running") -> dict[str, Any]:
    return {"metadata": {"name": name}, "status": {"phase": phase}}


def names(pods: list[dict[str, Any]]) -> dict[str, str]:
    return {p["metadata"]["name"]: p["status"]["phase"] for p in pods}


def test_a_created_pod_is_pending_until_the_watch_shows_it() -> None:
    expectations = PodExpectations()
    expectations.expect("uid", pod("job-0-0"))
    expectations.expect("uid", pod("job-0-1"))

    assert names(expectations.observed("uid", [])) == {"job-0-0": "Pending", "job-0-1": "Pending"}
    # The watch shows one: that one is as the watch says, the other still expected.
    seen_one = expectations.observed("uid", [pod("job-0-0")])
    assert names(seen_one) == {"job-0-0": "Running", "job-0-1": "Pending"}
    # Once seen, a pod gone from the watch is gone: it is not expected any more.
    assert names(expectations.observed("uid", [pod("job-0-1", "Succeeded")])) == {"job-0-1": "Succeeded"}
    assert names(expectations.observed("uid", [])) == {}


def test_a_deleted_pod_is_not_expected_even_if_never_seen() -> None:
    expectations = PodExpectations()
    expectations.expect("uid", pod("job-0-0"))
    expectations.expect("other", pod("job-0-0"))

    expectations.forget("uid", "job-0-0")

    assert expectations.observed("uid", []) == []
    assert names(expectations.observed("other", [])) == {"job-0-0": "Pending"}  # per job
    expectations.drop("other")
    assert expectations.observed("other", []) == []


def test_an_expectation_expires() -> None:
    expectations = PodExpectations(ttl_seconds=0.0)
    expectations.expect("uid", pod("job-0-0"))

    assert expectations.observed("uid", []) == []
