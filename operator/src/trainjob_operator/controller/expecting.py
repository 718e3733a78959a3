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
    """Per job uid: the pods created and not yet seen, with their manifests and creation time;
    and the gates removed that the watch has not shown removed yet (a pass woken by another
    pod's event would otherwise see the gate still there and patch again, a 422 each time: at
    100 jobs x 8 pods that was ~4 wasted writes per pod)."""

    def __init__(self, ttl_seconds: float = POD_EXPECTATION_SECONDS) -> None:
        self.ttl_seconds = ttl_seconds
        self._pods: dict[str, dict[str, tuple[dict[str, Any], float]]] = {}
        # uid -> pod name -> (the gate removed, resourceVersion of the patched pod, when)
        self._ungated: dict[str, dict[str, tuple[str, str, float]]] = {}
        # uid -> pod name -> (annotation key, the value written, when)
        self._annotated: dict[str, dict[str, tuple[str, str, float]]] = {}

    def ungated(self, uid: str, name: str, gate: str, resource_version: str) -> None:
        """The gate came off the pod at `resource_version`."""
        self._ungated.setdefault(uid, {})[name] = (gate, resource_version, time.monotonic())

    def annotated(self, uid: str, name: str, key: str, value: str) -> None:
        """`key` was set to `value` on the pod: until the watch shows it, passes see it set (else a
        pass woken by another event would patch the same value again)."""
        self._annotated.setdefault(uid, {})[name] = (key, value, time.monotonic())

    def expect(self, uid: str, manifest: dict[str, Any]) -> None:
        self._pods.setdefault(uid, {})[manifest["metadata"]["name"]] = (manifest, time.monotonic())

    def forget(self, uid: str, name: str) -> None:
        """A pod we deleted is no longer expected, whether the watch saw it or not."""
        self._pods.get(uid, {}).pop(name, None)

    def drop(self, uid: str) -> None:
        """The job is gone."""
        self._pods.pop(uid, None)
        self._ungated.pop(uid, None)
        self._annotated.pop(uid, None)

    def observed(self, uid: str, indexed: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """The job's pods from the watch, plus those created and not seen there yet (as Pending)."""
        pods = self._with_written_annotations(uid, self._without_removed_gates(uid, list(indexed)))
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

    def _without_removed_gates(self, uid: str, pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
        removed = self._ungated.get(uid)
        if not removed:
            return pods
        now = time.monotonic()
        out = []
        for pod in pods:
            name = (pod.get("metadata") or {}).get("name", "")
            entry = removed.get(name)
            if entry is not None:
                gate, rv, when = entry
                gates = (pod.get("spec") or {}).get("schedulingGates") or []
                # Kubernetes never lets a gate be added back, so a view without it is caught up;
                # resourceVersions are opaque: only equality to the patched version is used.
                if (
                    _resource_version(pod) == rv
                    or now - when > self.ttl_seconds
                    or not any(g.get("name") == gate for g in gates)
                ):
                    del removed[name]  # the watch caught up (or never will)
                else:
                    spec = {**pod["spec"], "schedulingGates": [g for g in gates if g.get("name") != gate]}
                    if not spec["schedulingGates"]:
                        del spec["schedulingGates"]
                    pod = {**pod, "spec": spec}
            out.append(pod)
        return out

    def _with_written_annotations(self, uid: str, pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
        written = self._annotated.get(uid)
        if not written:
            return pods
        now = time.monotonic()
        out = []
        for pod in pods:
            metadata = pod.get("metadata") or {}
            entry = written.get(metadata.get("name", ""))
            if entry is not None:
                key, value, when = entry
                annotations = metadata.get("annotations") or {}
                if annotations.get(key) == value or now - when > self.ttl_seconds:
                    del written[metadata["name"]]  # the watch caught up (or never will)
                else:
                    pod = {**pod, "metadata": {**metadata, "annotations": {**annotations, key: value}}}
            out.append(pod)
        return out


def _resource_version(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


class StatusExpectation:
    """One job as the operator's last status patch left it, until the watch shows it.

    kopf's `body` gets the patch only with the patch's watch event; until then the patch's response
    is the freshest view, so a pass never repeats a transition it has already made. resourceVersions
    are opaque strings (Kubernetes' API conventions): only their equality is used, never their
    order. After a patch the watch shows the version from before it (not caught up: keep the
    expected job), the expected version (caught up), or another one, an event still in flight
    from before the patch or a newer change: the version cannot tell which, so `view` answers None
    and the caller reads the job from the API server (`read`), which is at least as new as anything
    the watch showed before the read.
    """

    def __init__(self) -> None:
        self._expected: dict[str, Any] | None = None
        # Versions the watch showed that are known to be no newer than the expected job.
        self._older: set[str] = set()

    def patched(self, before: dict[str, Any], after: dict[str, Any]) -> None:
        """The status patch answered `after`; the watch showed `before` when it was sent."""
        if self._expected is not None:  # patched again before the watch showed the last patch
            self._older.add(_resource_version(self._expected))
        self._older.add(_resource_version(before))
        self._expected = after

    def read(self, live: dict[str, Any], current: dict[str, Any]) -> None:
        """`view` answered None for `live`, and the API server answered `current` after that."""
        self._expected = current
        self._older.add(_resource_version(live))

    def view(self, live: dict[str, Any]) -> dict[str, Any] | None:
        """The freshest view of the job, given what the watch shows now; None: read the job."""
        if self._expected is None:
            return live
        version = _resource_version(live)
        if version == _resource_version(self._expected):
            self._expected, self._older = None, set()
            return live
        if version in self._older:
            return self._expected
        return None
