"""Fixtures for the local cluster's tests: the API server as a real subprocess on a free port.

Every process a test starts is stopped by its pid, even when the test fails.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.localcluster.api_harness import HTTP, WIDGET_CRD, APIServerProcess, start_apiserver

if TYPE_CHECKING:
    from kubernetes.client import ApiClient


@pytest.fixture(scope="session")
def apiserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[APIServerProcess]:
    """One API server shared by the tests of a session; tests isolate themselves by namespace."""
    server = start_apiserver(tmp_path_factory.mktemp("apiserver"), "--watch-history", "100000")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fresh_apiserver(tmp_path: Path) -> Iterator[APIServerProcess]:
    """An API server of the test's own (for state files, history limits, restarts)."""
    server = start_apiserver(tmp_path / "apiserver")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def k8s(apiserver: APIServerProcess) -> Iterator[ApiClient]:
    """A kubernetes.client.ApiClient on the shared server."""
    from kubernetes import config

    client: ApiClient = config.new_client_from_config(config_file=str(apiserver.kubeconfig))
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def namespace(k8s: ApiClient) -> Iterator[str]:
    """A fresh namespace, deleted afterwards."""
    from kubernetes import client

    name = f"t-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(k8s)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    try:
        yield name
    finally:
        with contextlib.suppress(client.ApiException):
            core.delete_namespace(name)


@pytest.fixture(scope="session")
def widget_crd(apiserver: APIServerProcess) -> dict[str, Any]:
    """The Widget CRD (example.dev/v1), installed once on the shared server."""
    import json
    import time
    import urllib.error
    import urllib.request

    req = urllib.request.Request(  # noqa: S310 - http://127.0.0.1 only
        f"{apiserver.url}/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        data=json.dumps(WIDGET_CRD).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {apiserver.token}"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req) as resp:  # noqa: S310
            assert resp.status == 201
    except urllib.error.HTTPError as err:
        if err.code != 409:
            raise
    time.sleep(0.05)
    return WIDGET_CRD


@pytest.fixture
def http(apiserver: APIServerProcess) -> HTTP:
    return HTTP(apiserver)
