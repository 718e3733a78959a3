"""Fixtures every suite shares: a real SeaweedFS (S3) server and storage roots on it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from trainjob_operator.local.seaweedfs import SeaweedFS
from worker_sdk.storage import Storage, open_storage


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    """One `weed mini` per test session (per xdist worker), stopped by pid at the end."""
    server = SeaweedFS(tmp_path_factory.mktemp("seaweedfs"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_env(seaweedfs: SeaweedFS, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Credentials and endpoint of the test SeaweedFS in this process's environment."""
    for name, value in seaweedfs.credentials_env.items():
        monkeypatch.setenv(name, value)
    return seaweedfs.credentials_env


@pytest.fixture(params=["s3", "file"])
def storage_uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty storage root: on SeaweedFS, or a local directory. Tests using this run on both."""
    if request.param == "s3":
        request.getfixturevalue("s3_env")
        seaweed: SeaweedFS = request.getfixturevalue("seaweedfs")
        return f"s3://{seaweed.bucket}/{uuid.uuid4().hex[:12]}"
    return (tmp_path / "storage").as_uri()


@pytest.fixture
def storage(storage_uri: str) -> Storage:
    return open_storage(storage_uri)
