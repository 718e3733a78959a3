"""Events the node agent records about a pod, as the kubelet's event recorder writes them.

A core/v1 Event with `source.component: kubelet`, the node as host and reporting instance, and
the container as `involvedObject.fieldPath` (`spec.containers{NAME}`). A repeat of the same event
(same object, field path, type, reason and message) bumps `count` and `lastTimestamp` of the one
already written, as client-go's event correlator aggregates repeats. Recording is best effort,
as in the kubelet: a failed write is logged and dropped, never retried at the pod's expense.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from localcluster.node.kube import ApiError, KubeClient
from localcluster.node.status import now_iso

log = logging.getLogger(__name__)

JSON = dict[str, Any]


def container_field_path(kind: str, name: str) -> str:
    """`spec.initContainers{NAME}` for init containers and sidecars, else `spec.containers{NAME}`."""
    return f"spec.initContainers{{{name}}}" if kind in ("init", "sidecar") else f"spec.containers{{{name}}}"


class EventRecorder:
    def __init__(self, client: KubeClient, node_name: str) -> None:
        self._client = client
        self._node = node_name
        self._written: dict[tuple[str, str, str, str, str], tuple[str, int]] = {}

    async def record(self, pod: JSON, field_path: str, type_: str, reason: str, message: str) -> None:
        meta = pod.get("metadata") or {}
        ns, name, uid = meta.get("namespace") or "default", meta.get("name", ""), meta.get("uid", "")
        key = (uid, field_path, type_, reason, message)
        now = now_iso()
        try:
            if key in self._written:
                event_name, count = self._written[key]
                await self._client.request(
                    "PATCH",
                    f"/api/v1/namespaces/{ns}/events/{event_name}",
                    body={"count": count + 1, "lastTimestamp": now},
                    content_type="application/strategic-merge-patch+json",
                )
                self._written[key] = (event_name, count + 1)
                return
            event_name = f"{name}.{time.time_ns():x}"
            body: JSON = {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": event_name, "namespace": ns},
                "involvedObject": {
                    "kind": "Pod",
                    "namespace": ns,
                    "name": name,
                    "uid": uid,
                    "apiVersion": "v1",
                    "resourceVersion": meta.get("resourceVersion", ""),
                    **({"fieldPath": field_path} if field_path else {}),
                },
                "reason": reason,
                "message": message,
                "source": {"component": "kubelet", "host": self._node},
                "firstTimestamp": now,
                "lastTimestamp": now,
                "count": 1,
                "type": type_,
                "eventTime": None,
                "reportingComponent": "kubelet",
                "reportingInstance": self._node,
            }
            await self._client.request("POST", f"/api/v1/namespaces/{ns}/events", body=body)
            self._written[key] = (event_name, 1)
        except (ApiError, OSError) as e:
            log.warning("event %s for pod %s/%s not recorded: %s", reason, ns, name, e)

    def forget(self, uid: str) -> None:
        """Drop what is kept for a pod that is gone."""
        for key in [k for k in self._written if k[0] == uid]:
            del self._written[key]
