"""Where the coordinator's part of the TrainJob status goes.

A :class:`StatusSink` receives JSON merge patches (RFC 7386) of the coordinator-owned status
fields, already coalesced by :class:`~trainjob_operator.coordinator.publishing.StatusPublisher`.
``--status-sink`` picks one through :func:`open_status_sink`: ``file:PATH`` (tests, local runs)
or ``kubernetes`` (a patch of the TrainJob's status subresource). Adding a sink is one class
and one branch there.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any


class StatusSink(ABC):
    @abstractmethod
    async def publish(self, patch: dict[str, Any]) -> dict[str, Any] | None:
        """Apply ``patch`` (a merge patch: ``None`` deletes a field) and return the whole status
        afterwards when the sink knows it (the operator's fields too: its disruption notice), else
        None. Raise to have it retried: the publisher keeps the change and tries again after its
        interval."""

    async def read(self) -> dict[str, Any] | None:
        """The job's whole status, for a coordinator that has published nothing for a while."""
        return None

    async def close(self) -> None:  # noqa: B027 - optional hook, most sinks hold nothing
        """Release what the sink holds; called once at shutdown after the last publish."""


def apply_merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """RFC 7386 on plain JSON objects: a new object, ``target`` is left as it was."""
    merged = dict(target)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict):
            current = merged.get(key)
            merged[key] = apply_merge_patch(current if isinstance(current, dict) else {}, value)
        else:
            merged[key] = value
    return merged


class FileStatusSink(StatusSink):
    """The merged status as one JSON file, replaced atomically (readers never see half of it).
    An existing file is merged into, so a restarted coordinator continues it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.status: dict[str, Any] = {}
        if path.exists():
            try:
                loaded = json.loads(path.read_text())
            except (OSError, ValueError):
                loaded = {}
            self.status = loaded if isinstance(loaded, dict) else {}

    async def publish(self, patch: dict[str, Any]) -> dict[str, Any] | None:
        self.status = apply_merge_patch(self._read_file() or self.status, patch)
        await asyncio.to_thread(self._write, json.dumps(self.status, indent=1, sort_keys=True))
        return dict(self.status)

    async def read(self) -> dict[str, Any] | None:
        """The file as it is now (a test plays the operator by writing its fields into it)."""
        return await asyncio.to_thread(self._read_file)

    def _read_file(self) -> dict[str, Any] | None:
        try:
            loaded = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        return loaded if isinstance(loaded, dict) else None

    def _write(self, text: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=self.path.parent, prefix=".tmp-", delete=False) as tmp:
            tmp.write(text)
        Path(tmp.name).replace(self.path)


def open_status_sink(spec: str, *, namespace: str, job: str, plain_http: bool = False) -> StatusSink:
    """The sink ``--status-sink`` names: ``file:PATH`` or ``kubernetes`` (the pod's API server,
    over plain HTTP only when `plain_http`, the coordinator's ``--api-plain-http``)."""
    if spec.startswith("file:"):
        path = spec.removeprefix("file:")
        if path.startswith("//"):  # file:///abs/path
            path = path[2:]
        if not path:
            raise ValueError("--status-sink file:PATH needs a path")
        return FileStatusSink(Path(path))
    if spec == "kubernetes":
        from trainjob_operator.coordinator.kubernetes_sink import KubernetesStatusSink
        from trainjob_operator.in_cluster import InClusterError, in_cluster_access

        try:
            access = in_cluster_access(plain_http=plain_http)
        except InClusterError as error:
            raise ValueError(str(error)) from None
        if access is None:
            raise ValueError(
                "--status-sink kubernetes needs the pod's API server (KUBERNETES_SERVICE_HOST/PORT) and "
                "its mounted ServiceAccount token; outside a cluster use --status-sink file:PATH"
            )
        return KubernetesStatusSink(namespace=namespace, job=job, access=access)
    raise ValueError(f"unknown --status-sink {spec!r}: use file:PATH or kubernetes")
