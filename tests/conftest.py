"""Fixtures every suite shares: a real SeaweedFS (S3) server and storage roots on it, and the
whole product on the local cluster for the suites that drive it end to end."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.processes import REPO_ROOT
from trainjob_operator.local.seaweedfs import SeaweedFS
from trainjob_operator.local.stack import LocalStack
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


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """One `LocalStack` (API server, node agent, SeaweedFS, the operator as a subprocess) per test
    session and xdist worker, which the e2e, chaos and CLI suites share: each test works in a
    namespace of its own, so they do not see each other, and one stack started and stopped per
    worker instead of one per suite saves seconds of each. Modules that need other nodes override
    it; scenarios that break a shared part start a stack of their own. Stopped by pid at the end."""
    with LocalStack(tmp_path_factory.mktemp("stack"), root=REPO_ROOT, namespaces=()) as running:
        yield running


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


# Seconds each module of 30 s or more took on one worker (setup, calls and teardown) in a full
# `pytest -n 2 --durations=0` on a loaded 2-core machine (everything about 2x slower than
# unloaded): only the order they give matters. A new long module belongs here.
_MODULE_SECONDS = {
    "tests/bench/test_bench_smoke.py": 474,
    "tests/integration/test_training.py": 428,
    "tests/e2e/test_digits_job.py": 352,
    "tests/e2e/test_bad_days.py": 344,
    "tests/cli/test_commands.py": 327,
    "tests/chaos/test_worker_kills.py": 289,
    "tests/e2e/test_framework_callbacks.py": 270,
    "tests/e2e/test_disruptions.py": 266,
    "tests/cli/test_production_install.py": 214,
    "tests/e2e/test_elastic.py": 183,
    "tests/chaos/test_storage_outage.py": 133,
    "tests/docs/test_readme.py": 131,
    "tests/e2e/test_lifecycle.py": 122,
    "tests/chaos/test_apiserver_restart.py": 117,
    "tests/e2e/test_dashboard.py": 111,
    "tests/cli/test_local_up.py": 88,
    "tests/chaos/test_coordinator_kill.py": 86,
    "tests/coordinator/test_coordinator_cli.py": 84,
    "tests/e2e/test_trainer_client.py": 79,
    "tests/e2e/test_operator_process.py": 78,
    "tests/badinput/test_coordinator_http.py": 78,
    "tests/localcluster/test_api_kubectl.py": 72,
    "tests/chaos/test_operator_kill_during_deletion.py": 71,
    "tests/integration/test_protocol.py": 71,
    "tests/coordinator/test_coordinator_server.py": 68,
    "tests/security/test_least_privilege.py": 68,
    "tests/integration/test_notices.py": 61,
    "tests/deploy/test_install.py": 60,
    "tests/integration/test_function_entrypoint.py": 56,
    "tests/bench/test_operator_scale_simulated.py": 44,
    "tests/security/test_dashboard_rbac.py": 40,
    "tests/sdk/test_uploads.py": 40,
    "tests/deploy/test_chart.py": 38,
    "tests/localcluster/test_nodes.py": 38,
    "tests/coordinator/test_coordinator_committing.py": 37,
    "tests/localcluster/test_api_kopf.py": 36,
    "tests/e2e/test_peering.py": 35,
    "tests/badinput/test_bad_input.py": 32,
    "tests/localcluster/test_cluster_up.py": 32,
    "tests/sdk/test_integrations.py": 31,
    "tests/sdk/test_storage.py": 30,
}
# A module not in the table with a `slow` test: a guess that keeps it ahead of the quick ones.
_SLOW_MODULE_SECONDS = 60


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Longest modules first, each module's tests kept together and in their order.

    `pytest -n 2` runs with `--dist loadscope` (pyproject.toml): a worker takes a whole module
    at a time (so a module's fixtures, a stack of its own among them, start once) and the next
    module in this order when it is nearly done. Before, `--dist load` in file order sent
    tests in chunks of consecutive ones: one worker got the bench and chaos modules, the other
    most of e2e and integration, and the two ended minutes apart (a replay of xdist's scheduling
    with one run's durations: 20% longer than now). Longest first, what is left at the end is
    the short modules, which fill both workers to about the same time
    (longest-processing-time-first scheduling). The order is deterministic, as xdist requires
    every worker to collect the same list."""
    modules: dict[str, list[pytest.Item]] = {}
    for item in items:
        modules.setdefault(item.nodeid.split("::", 1)[0], []).append(item)

    def seconds(path: str) -> float:
        if path in _MODULE_SECONDS:
            return _MODULE_SECONDS[path]
        return _SLOW_MODULE_SECONDS if any(i.get_closest_marker("slow") for i in modules[path]) else 0

    ordered = sorted(modules, key=seconds, reverse=True)  # stable: ties keep file order
    items[:] = [item for path in ordered for item in modules[path]]
