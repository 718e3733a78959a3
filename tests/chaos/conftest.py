"""Chaos fixtures: one `LocalStack` shared by the chaos scenarios (each in its own namespace);
scenarios that break the shared parts (SeaweedFS, the API server) start a stack of their own.
Every process is stopped by pid at the end, even on failure."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))

from e2e_support import REPO_ROOT, Cluster

from trainjob_operator.local.stack import LocalStack


@pytest.fixture(scope="session")
def chaos_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with LocalStack(tmp_path_factory.mktemp("chaos-stack"), root=REPO_ROOT, namespaces=()) as running:
        yield running


def namespace_in(stack: LocalStack) -> Iterator[Cluster]:
    namespace = f"chaos-{uuid.uuid4().hex[:8]}"
    stack.prepare_namespace(namespace)
    kube = Cluster(stack, namespace)
    try:
        yield kube
    finally:
        kube.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


@pytest.fixture
def cluster(chaos_stack: LocalStack) -> Iterator[Cluster]:
    yield from namespace_in(chaos_stack)


@pytest.fixture
def s3_credentials(chaos_stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> None:
    assert chaos_stack.seaweedfs is not None
    for key, value in chaos_stack.seaweedfs.credentials_env.items():
        monkeypatch.setenv(key, value)
