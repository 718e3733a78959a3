"""Chaos fixtures: one `LocalStack` shared by the chaos scenarios (each in its own namespace);
scenarios that break the shared parts (SeaweedFS, the API server) start a stack of their own.
Every process is stopped by pid at the end, even on failure."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.kube import Cluster, namespace_in
from tests.support.processes import REPO_ROOT
from trainjob_operator.local.stack import LocalStack


@pytest.fixture(scope="session")
def chaos_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with LocalStack(tmp_path_factory.mktemp("chaos-stack"), root=REPO_ROOT, namespaces=()) as running:
        yield running


@pytest.fixture
def cluster(chaos_stack: LocalStack) -> Iterator[Cluster]:
    yield from namespace_in(chaos_stack, "chaos")


@pytest.fixture
def s3_credentials(chaos_stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> None:
    assert chaos_stack.seaweedfs is not None
    for key, value in chaos_stack.seaweedfs.credentials_env.items():
        monkeypatch.setenv(key, value)
