"""The dashboard's informer against the real local API server: it lists, follows every change
through its watch, wakes asyncio subscribers, and says what the API refused instead of going
quiet."""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from localcluster import LocalCluster
from trainjob_operator.dashboard.informer import Informer

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[client.ApiClient]:
    cluster = LocalCluster(tmp_path_factory.mktemp("informer"), root=REPO_ROOT).start()
    api_client = config.new_client_from_config(config_file=str(cluster.kubeconfig))
    try:
        yield api_client
    finally:
        api_client.close()
        cluster.stop()


def until(check: Callable[[], Any], what: str, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout}s: {what}")


def test_the_informer_follows_creates_updates_and_deletes(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    namespace = f"inf-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": namespace}})  # type: ignore[arg-type]  # a dict body goes as it is
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "before"}, "data": {"k": "0"}})  # type: ignore[arg-type]  # as above
    informer = Informer("configmaps", functools.partial(core.list_namespaced_config_map, namespace))
    informer.start()
    try:
        until(informer.synced.is_set, "the first list")

        def names() -> list[str]:
            return sorted(o["metadata"]["name"] for o in informer.objects())

        assert "before" in names() and informer.error is None

        async def changes() -> int:
            woken = informer.subscribe()
            try:
                await asyncio.to_thread(
                    core.create_namespaced_config_map,
                    namespace,
                    {"metadata": {"name": "after"}, "data": {"k": "1"}},  # type: ignore[arg-type]  # as above
                )
                await asyncio.wait_for(woken.wait(), 20)
                return informer.version
            finally:
                informer.unsubscribe(woken)

        asyncio.run(changes())
        until(lambda: "after" in names(), "the created object")
        core.patch_namespaced_config_map("after", namespace, {"data": {"k": "2"}})
        until(
            lambda: any(
                o["metadata"]["name"] == "after" and o["data"] == {"k": "2"} for o in informer.objects()
            ),
            "the update",
        )
        core.delete_namespaced_config_map("before", namespace)
        until(lambda: "before" not in names(), "the deletion")
        # Raw JSON as the server sent it: what the pages render.
        assert all(isinstance(o["metadata"]["creationTimestamp"], str) for o in informer.objects())
    finally:
        informer.stop()


def test_an_informer_says_what_the_api_refused(api: client.ApiClient) -> None:
    custom = client.CustomObjectsApi(api)
    lister = functools.partial(custom.list_cluster_custom_object, "nothing.example", "v1", "widgets")
    informer = Informer("widgets", lister)
    informer.start()
    try:
        error = until(lambda: informer.error, "an error")
        assert error == "widgets: the server could not find the requested resource", error
        assert not informer.synced.is_set() and informer.objects() == []
    finally:
        informer.stop()
