"""A coordinator in this process, on real storage, behind the real aiohttp app, and a client: the
`start_coordinator` fixture (re-exported by the conftest.py of the suites that use it: coordinator,
badinput), request bodies, and what the coordinator left in storage."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from trainjob_operator.coordinator.committing import RetentionPolicy
from trainjob_operator.coordinator.server import create_app
from trainjob_operator.coordinator.service import Coordinator, CoordinatorConfig
from trainjob_operator.coordinator.sinks import StatusSink, apply_merge_patch
from worker_sdk.storage import Storage, open_storage

TOKEN = "job-token-0123456789"
NS, JOB = "ml", "digits"
PREFIX = f"{NS}/{JOB}"


class RecordingSink(StatusSink):
    """A real sink that keeps every patch it got and the status they add up to."""

    def __init__(self) -> None:
        self.patches: list[dict[str, Any]] = []
        self.status: dict[str, Any] = {}

    async def publish(self, patch: dict[str, Any]) -> None:
        self.patches.append(patch)
        self.status = apply_merge_patch(self.status, patch)

    async def read(self) -> dict[str, Any] | None:
        """The status as it is now: what the coordinator published, and what a test playing the
        operator put there."""
        return dict(self.status)


def report_body(
    rank: int,
    iteration: int,
    *,
    attempt: int = 0,
    metrics: dict[str, Any] | None = None,
    files: dict[str, int] | None = None,
    dir_name: str | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "rank": rank,
        "attempt": attempt,
        "iteration": iteration,
        "metrics": metrics if metrics is not None else {"loss": 1.0 / iteration},
        "time": time.time(),
    }
    if files is not None:
        body["checkpoint"] = {
            "dirName": dir_name or f"checkpoint_{iteration:06d}",
            "files": [{"path": path, "size": size} for path, size in files.items()],
        }
    return body


def upload(
    storage: Storage, iteration: int, files: dict[str, int], dir_name: str | None = None, *, attempt: int = 0
) -> None:
    """What the ranks of `attempt` upload: under the checkpoint directory's `attempt-<a>/`."""
    for path, size in files.items():
        directory = dir_name or f"checkpoint_{iteration:06d}"
        storage.put_bytes(f"{PREFIX}/{directory}/attempt-{attempt}/{path}", b"x" * size)


def keys(storage: Storage) -> list[str]:
    return [obj.key for obj in storage.list_objects(PREFIX)]


def history_lines(storage: Storage, attempt: int = 0) -> list[dict[str, Any]]:
    """Every metric history line of an attempt, part after part."""
    lines: list[dict[str, Any]] = []
    for obj in storage.list_objects(f"{PREFIX}/metrics/attempt-{attempt}"):
        data = storage.get_bytes(obj.key)
        assert data is not None
        lines.extend(json.loads(line) for line in data.decode().splitlines())
    return lines


@dataclass
class Harness:
    coordinator: Coordinator
    client: TestClient[Any, Any]
    storage: Storage
    sink: RecordingSink

    @property
    def url(self) -> str:
        """Where the SDK reaches this coordinator."""
        return str(self.client.make_url("")).rstrip("/")

    async def stop(self) -> None:
        """Stop serving (what a coordinator killed mid-run looks like from a rank: its
        connections are closed and the port answers nothing until another one starts)."""
        await self.client.close()

    def headers(self, token: str | None = TOKEN) -> dict[str, str]:
        return {} if token is None else {"Authorization": f"Bearer {token}"}

    async def post(self, path: str, body: Any, token: str | None = TOKEN) -> tuple[int, dict[str, Any]]:
        response = await self.client.post(path, json=body, headers=self.headers(token))
        return response.status, await response.json()

    async def report(self, rank: int, iteration: int, **kwargs: Any) -> dict[str, Any]:
        status, body = await self.post("/v1/reports", report_body(rank, iteration, **kwargs))
        assert status == 200, body
        return body

    async def finalize(self, rank: int, iteration: int, attempt: int = 0) -> dict[str, Any]:
        status, body = await self.post(
            "/v1/finalize", {"rank": rank, "attempt": attempt, "iteration": iteration}
        )
        assert status == 200, body
        return body

    async def state(self) -> dict[str, Any]:
        response = await self.client.get("/v1/state", headers=self.headers())
        assert response.status == 200
        body: dict[str, Any] = await response.json()
        return body

    async def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 15.0
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            state = await self.state()
            if predicate(state):
                return state
            if time.monotonic() > deadline:
                raise AssertionError(f"state never matched: {state}")
            await asyncio.sleep(0.05)


StartCoordinator = Callable[..., Awaitable[Harness]]


@pytest.fixture
async def start_coordinator(storage_uri: str) -> AsyncIterator[StartCoordinator]:
    clients: list[TestClient[Any, Any]] = []

    async def start(
        *,
        world_size: int = 2,
        attempt: int = 0,
        retention: RetentionPolicy | None = None,
        status_interval: float = 0.2,
        storage: Storage | None = None,
        port: int | None = None,
    ) -> Harness:
        storage = storage or open_storage(storage_uri, retry_budget_seconds=2.0)
        sink = RecordingSink()
        config = CoordinatorConfig(
            job=JOB,
            namespace=NS,
            world_size=world_size,
            attempt=attempt,
            retention=retention or RetentionPolicy(),
            status_interval=status_interval,
        )
        coordinator = Coordinator(config, storage, sink)
        # `port`: where a replaced coordinator served (a restarted sidecar keeps its port).
        client: TestClient[Any, Any] = TestClient(TestServer(create_app(coordinator, TOKEN), port=port))
        await client.start_server()
        clients.append(client)
        return Harness(coordinator, client, storage, sink)

    yield start
    for client in clients:
        await client.close()
