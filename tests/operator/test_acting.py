"""The operator's writes against the local cluster's real API server (a subprocess): removing the
gang's scheduling gate when the pod watch is behind."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, config
from prometheus_client import REGISTRY

from tests.localcluster.api_harness import APIServerProcess, start_apiserver
from trainjob_operator.api import constants
from trainjob_operator.controller.acting import KubernetesActions

GANG = constants.GANG_SCHEDULING_GATE
QUEUE = "example.com/queue"


@pytest.fixture(scope="module")
def apiserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[APIServerProcess]:
    server = start_apiserver(tmp_path_factory.mktemp("apiserver"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def core(apiserver: APIServerProcess) -> Iterator[tuple[client.CoreV1Api, KubernetesActions, str]]:
    api_client: client.ApiClient = config.new_client_from_config(config_file=str(apiserver.kubeconfig))
    core = client.CoreV1Api(api_client)
    namespace = f"t-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    actions = KubernetesActions(api_client)
    try:
        yield core, actions, namespace
    finally:
        actions.close()
        api_client.close()


def gated_pod(core: client.CoreV1Api, namespace: str, name: str, *gates: str) -> None:
    body: dict[str, Any] = {
        "metadata": {"name": name},
        "spec": {
            "schedulingGates": [{"name": gate} for gate in gates],
            "containers": [{"name": "main", "image": "example/main:1"}],
        },
    }
    core.create_namespaced_pod(namespace, body)  # type: ignore[arg-type]  # the client sends a dict as is


def gates_of(core: client.CoreV1Api, namespace: str, name: str) -> list[str]:
    pod = core.read_namespaced_pod(name, namespace)
    assert pod.spec is not None
    return [g.name for g in pod.spec.scheduling_gates or []]


def patches_sent() -> float:
    return REGISTRY.get_sample_value("trainjob_operator_api_writes_total", {"verb": "patch"}) or 0.0


async def test_a_gate_already_removed_is_done_not_sent_again(
    core: tuple[client.CoreV1Api, KubernetesActions, str],
) -> None:
    api, actions, namespace = core
    gated_pod(api, namespace, "p", GANG)
    # A first pass removed it; the next one, on a watch that has not shown that yet, asks again.
    assert await actions.remove_scheduling_gate(namespace, "p", (GANG,)) is not None
    before = patches_sent()
    again = await actions.remove_scheduling_gate(namespace, "p", (GANG,))
    # Done: a version to expect the watch to show (so the next pass does not ask a third time),
    # after one refused patch and a read, not a second patch.
    assert again is not None and patches_sent() == before + 1
    assert gates_of(api, namespace, "p") == []


async def test_a_gate_someone_else_removed_meanwhile_does_not_stop_ours(
    core: tuple[client.CoreV1Api, KubernetesActions, str],
) -> None:
    api, actions, namespace = core
    gated_pod(api, namespace, "q", GANG, QUEUE)
    # A queue lets the pod go between the operator's observation and its patch.
    api.patch_namespaced_pod("q", namespace, [{"op": "remove", "path": "/spec/schedulingGates/1"}])
    assert gates_of(api, namespace, "q") == [GANG]
    version = await actions.remove_scheduling_gate(namespace, "q", (GANG, QUEUE))  # the stale view
    assert version is not None and gates_of(api, namespace, "q") == []


async def test_a_gone_pod_is_no_error(core: tuple[client.CoreV1Api, KubernetesActions, str]) -> None:
    _, actions, namespace = core
    assert await actions.remove_scheduling_gate(namespace, "never", (GANG,)) is None
