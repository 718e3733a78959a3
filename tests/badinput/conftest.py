"""Bad-input fixtures: one API server (with the TrainJob CRD, no operator) for the rows that must go
through the real admission path, and a coordinator in this process (`start_coordinator`)."""

from __future__ import annotations

import time
import urllib.error
from collections.abc import Iterator
from pathlib import Path

import pytest

from localcluster import LocalCluster
from tests.support.coordinator import start_coordinator
from trainjob_operator.api.crd import trainjob_crd

TESTS = Path(__file__).resolve().parents[1]

__all__ = ["apiserver", "start_coordinator"]


@pytest.fixture(scope="module")
def apiserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """An API server and node agent with the TrainJob CRD installed; stopped by pid at the end."""
    cluster = LocalCluster(tmp_path_factory.mktemp("badinput-cluster"), root=TESTS.parent, keep=True)
    with cluster:
        cluster.api("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", trainjob_crd())
        cluster.api("POST", "/api/v1/namespaces", {"metadata": {"name": "bad"}})
        deadline = time.monotonic() + 30
        while True:  # the CRD is served a moment after it is created
            try:
                cluster.api("GET", "/apis/trainjob.dev/v1alpha1/namespaces/bad/trainjobs")
                break
            except urllib.error.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield cluster
