"""Pods the operator created that the pod watch has not shown yet ("expectations", as
Kubernetes' own controllers keep them). Without them, a pass woken before the watch caught up
would see the pods missing and create them again (409s)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

# A created pod counts as observed until the watch shows it, at most this long (in case someone
# else deleted it before the watch ever saw it): five minutes, as Kubernetes' controllers expect
# theirs. With 30 s, 100 jobs x 4 workers on 2 cores re-created every pod about twice more while
# the pod watch lagged.
POD_EXPECTATION_SECONDS = 300.0


class PodExpectations:
    """Per job uid: the pods created and not yet seen, with their manifests and creation time."""

    def __init__(self, ttl_seconds: float = POD_EXPECTATION_SECONDS) -> None:
        self.ttl_seconds = ttl_seconds
        self._pods: dict[str, dict[str, tuple[dict[str, Any], float]]] = {}

    def expect(self, uid: str, manifest: dict[str, Any]) -> None:
        self._pods.setdefault(uid, {})[manifest["metadata"]["name"]] = (manifest, time.monotonic())

    def forget(self, uid: str, name: str) -> None:
        """A pod we deleted is no longer expected, whether the watch saw it or not."""
        self._pods.get(uid, {}).pop(name, None)

    def drop(self, uid: str) -> None:
        """The job is gone."""
        self._pods.pop(uid, None)

    def observed(self, uid: str, indexed: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """The job's pods from the watch, plus those created and not seen there yet (as Pending)."""
        pods = list(indexed)
        expected = self._pods.get(uid, {})
        for pod in pods:
            expected.pop(pod.get("metadata", {}).get("name", ""), None)
        now = time.monotonic()
        for name, (manifest, created) in list(expected.items()):
            if now - created > self.ttl_seconds:
                del expected[name]
            else:
                pods.append({"metadata": manifest["metadata"], "status": {"phase": "Pending"}})
        return pods
