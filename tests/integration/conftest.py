"""Fixtures of the multi-process tests: see tests/support/job.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.job import JobRunner


@pytest.fixture
def job_runner(tmp_path: Path, storage_uri: str) -> Iterator[Callable[[int], JobRunner]]:
    """``job_runner(world_size)``: a job on the parametrized storage (S3 and file); every process
    it started is killed when the test ends."""
    runners: list[JobRunner] = []

    def make(world_size: int) -> JobRunner:
        runner = JobRunner(tmp_path, storage_uri, world_size)
        runners.append(runner)
        return runner

    try:
        yield make
    finally:
        for runner in runners:
            runner.stop_everything()
