"""SDK test fixtures: a clean environment for an in-process session, and network misbehaviour
(a server that accepts but never answers; a stallable proxy in front of the test SeaweedFS)."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.sdk.network_support import StallingProxy
from tests.support.processes import CONTRACT_VARIABLES
from trainjob_operator.local.seaweedfs import SeaweedFS
from worker_sdk import session

SetEnv = Callable[..., None]


@pytest.fixture
def sdk_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[SetEnv]:
    """No trainjob variables, cwd in tmp_path; ``sdk_env(NAME=value, ...)`` sets some. The
    process's SDK session is closed afterwards (its threads stop), even when the test fails."""
    for name in list(os.environ):
        if name.startswith("TRAINJOB_") or name in CONTRACT_VARIABLES:
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)

    def set_env(**values: str) -> None:
        for name, value in values.items():
            monkeypatch.setenv(name, value)

    session.shutdown(wait_settled=False)
    try:
        yield set_env
    finally:
        session.shutdown(wait_settled=False)


@pytest.fixture
def silent_server() -> Iterator[str]:
    """``http://127.0.0.1:PORT`` of a socket that accepts connections (the kernel's backlog) and
    never answers: every request hangs until the client's timeout."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()


@pytest.fixture
def stalling_s3(s3_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[StallingProxy]:
    """A stallable proxy in front of the test SeaweedFS, set as this process's S3 endpoint."""
    proxy = StallingProxy(s3_env["AWS_ENDPOINT_URL_S3"])
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", proxy.url)
    try:
        yield proxy
    finally:
        proxy.close()


@pytest.fixture
def vanishing_s3(
    sdk_env: SetEnv, seaweedfs: SeaweedFS, stalling_s3: StallingProxy, monkeypatch: pytest.MonkeyPatch
) -> str:
    """Storage whose S3 endpoint stops listening when the test closes the proxy (then nothing
    listens on that port), with a 1 s retry budget."""
    monkeypatch.setenv("TRAINJOB_STORAGE_RETRY_SECONDS", "1")
    return f"s3://{seaweedfs.bucket}/vanishing-{time.time_ns()}"
