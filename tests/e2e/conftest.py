"""End-to-end fixtures: the whole product on the local cluster, driven through kubectl.

One `LocalStack` (API server, node agent, SeaweedFS, the operator as a subprocess) per test
session and xdist worker; every test gets a namespace of its own, so tests share the stack
without seeing each other. Everything is stopped by pid when the session ends, even on failure.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.kube import Cluster, namespace_in
from tests.support.processes import REPO_ROOT
from trainjob_operator.local.stack import LocalStack


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with LocalStack(tmp_path_factory.mktemp("stack"), root=REPO_ROOT, namespaces=()) as running:
        yield running


@pytest.fixture
def cluster(stack: LocalStack) -> Iterator[Cluster]:
    yield from namespace_in(stack, "e2e")


@pytest.fixture
def repo_root() -> Path:
    return REPO_ROOT
