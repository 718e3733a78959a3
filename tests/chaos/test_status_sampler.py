"""The chaos scenarios' check of status.iteration (`StatusSampler.check_iteration`) on sample
sequences, without a cluster: what it lets through and what it catches."""

from __future__ import annotations

import pytest

from tests.chaos.chaos_support import StatusSampler

# Attempt 0 reported iteration 3 without committing it (a rank was killed before the commit), so
# attempt 1 starts with the status at 3 and resumes from the checkpoint of 2. Seen in a fresh-clone
# make test: the check took attempt 1's first sample for progress and failed on the rewind.
CARRIED_OVER = [(0, 0, "Running"), (0, 1, "Running"), (1, 3, "Running"), (1, 2, "Running"), (1, 3, "Running")]


def check(samples: list[tuple[int, int, str]], resumed_at: dict[int, int]) -> None:
    sampler = StatusSampler.__new__(StatusSampler)  # no cluster, no sampling thread
    sampler.samples = samples
    sampler.check_iteration(20, resumed_at)


def test_an_attempt_may_step_back_once_from_where_the_last_left_the_status() -> None:
    check(CARRIED_OVER, {1: 2})


def test_a_step_back_after_progress_or_to_another_iteration_is_caught() -> None:
    with pytest.raises(AssertionError, match=r"went back in attempt 1 \(3 -> 2\)"):
        check([*CARRIED_OVER, (1, 2, "Running")], {1: 2})
    with pytest.raises(AssertionError, match=r"went back in attempt 1 \(3 -> 1\)"):
        check([(0, 1, "Running"), (1, 3, "Running"), (1, 1, "Running")], {1: 2})
    with pytest.raises(AssertionError, match=r"went back in attempt 0 \(2 -> 1\)"):
        check([(0, 0, "Running"), (0, 2, "Running"), (0, 1, "Running")], {})
