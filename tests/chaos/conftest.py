"""Chaos fixtures: the session's `LocalStack` (tests/conftest.py), shared by the chaos scenarios
(each in its own namespace) and the other end-to-end suites; scenarios that break the shared parts
(SeaweedFS, the API server) start a stack of their own. Every process is stopped by pid at the
end, even on failure."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.kube import Cluster, namespace_in
from trainjob_operator.local.stack import LocalStack


@pytest.fixture
def cluster(stack: LocalStack) -> Iterator[Cluster]:
    yield from namespace_in(stack, "chaos")


@pytest.fixture
def s3_credentials(stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> None:
    assert stack.seaweedfs is not None
    for key, value in stack.seaweedfs.credentials_env.items():
        monkeypatch.setenv(key, value)
