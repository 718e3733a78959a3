"""Apply a reconcile Decision through the Kubernetes API.

The kubernetes client is synchronous; its calls run in worker threads so the operator's event
loop keeps serving watches: threads of the operator's own, writes apart from reads, not the
event loop's default executor (6 threads on 2 cores, shared with kopf's own work), so that one
job's writes do not queue behind every other job's and a read is never stuck behind a burst of
writes. Queued writes go out by lane (`writing.Lane`): what creates a gang before what moves
the gangs that exist along. Every write is idempotent as the reconcile decision expects:
creating what exists (409) and deleting what is gone (404) count as done.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar, cast

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from trainjob_operator.api import constants
from trainjob_operator.controller import metrics
from trainjob_operator.controller.writing import Lane, LanedWriter
from trainjob_operator.reconciling import ChildKind, CreateRefusal

logger = logging.getLogger(__name__)

# The children the operator tracks by existence, by the kind in their manifest.
CHILD_KINDS: dict[str, ChildKind] = {kind.value: kind for kind in ChildKind}
# Writes in flight at once (each waits on the API server, not on this process's CPU), and reads.
WRITE_THREADS = 16
READ_THREADS = 2

_T = TypeVar("_T")


class _GatesChanged(Exception):
    """A gate removal's JSON patch test failed: the pod's gates were not the ones observed."""


class KubernetesActions:
    """The writes the operator makes, and the one read besides its watches (`get_job`); one
    instance per operator process."""

    def __init__(
        self,
        api_client: client.ApiClient,
        write_threads: int = WRITE_THREADS,
        read_threads: int = READ_THREADS,
    ) -> None:
        # One keep-alive connection per thread, no more and no fewer (urllib3's default pool
        # holds 10 and discards the connections of the threads beyond).
        api_client.rest_client.pool_manager.connection_pool_kw["maxsize"] = write_threads + read_threads
        self.core = client.CoreV1Api(api_client)
        self.rbac = client.RbacAuthorizationV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self._writes = LanedWriter(write_threads, "api-write")
        metrics.watch_write_queues(self._writes.queued)
        self._reads = ThreadPoolExecutor(read_threads, thread_name_prefix="api-read")

    def close(self) -> None:
        """End the write threads once the writes queued are done (the read threads end at exit)."""
        self._writes.shutdown()

    async def _write(self, lane: Lane, call: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        return await asyncio.wrap_future(self._writes.submit(lane, functools.partial(call, *args, **kwargs)))

    async def _write_unread(self, lane: Lane, call: Callable[..., Any], *args: Any, **kwargs: Any) -> bytes:
        """A write whose answer is not turned into the client's model (V1Pod, V1Secret...):
        nothing reads it, and that deserialization costs more CPU than the request."""
        return await self._write(lane, _reading_raw(call, *args, **kwargs))

    async def _read_raw(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> bytes:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._reads, _reading_raw(call, *args, **kwargs))

    async def _read(self, call: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._reads, functools.partial(call, *args, **kwargs))

    def _creator(self, kind: str) -> Callable[..., Any]:
        creators: dict[str, Callable[..., Any]] = {
            "Pod": self.core.create_namespaced_pod,
            "Secret": self.core.create_namespaced_secret,
            "Service": self.core.create_namespaced_service,
            "ServiceAccount": self.core.create_namespaced_service_account,
            "Role": self.rbac.create_namespaced_role,
            "RoleBinding": self.rbac.create_namespaced_role_binding,
        }
        return creators[kind]

    async def create(self, namespace: str, manifest: dict[str, Any]) -> bool:
        """Create the object; False when it already existed."""
        create = self._creator(str(manifest["kind"]))
        metrics.API_WRITES.labels("create").inc()
        try:
            await self._write_unread(Lane.CREATE, create, namespace, manifest)
        except ApiException as error:
            if error.status == 409:
                return False
            raise
        return True

    async def create_pod(self, namespace: str, manifest: dict[str, Any]) -> CreateRefusal | None:
        """Create a worker pod (existing already counts as created); the API server's answer
        when it refuses it for a reason of its own (a 4xx: a quota, admission, validation),
        which the job's status then shows. Throttling (429) and server errors raise, as for
        every write: the pass is retried."""
        try:
            await self.create(namespace, manifest)
        except ApiException as error:
            status = int(error.status or 0)
            if not 400 <= status < 500 or status == 429:
                raise
            return _refusal(str(manifest["metadata"]["name"]), status, error)
        return None

    async def delete_pod(self, namespace: str, name: str, grace_period_seconds: int | None = None) -> None:
        """SIGTERM first, so the SDK flushes its reports; SIGKILL after the grace period (None: the
        pod's own)."""
        metrics.API_WRITES.labels("delete").inc()
        try:
            await self._write_unread(
                Lane.PROGRESS,
                self.core.delete_namespaced_pod,
                name,
                namespace,
                grace_period_seconds=grace_period_seconds,
            )
        except ApiException as error:
            if error.status != 404:
                raise

    async def remove_scheduling_gate(self, namespace: str, name: str, gates: tuple[str, ...]) -> str | None:
        """Remove the gang's gate, conditional on the gates observed (a JSON patch `test`).
        Kubernetes lets gates only be removed once a pod exists, so a failed test (422) means a
        gate came off since the observation. Then the pod is read once: without the gang's gate,
        the removal is done (an earlier pass made it; the watch has not shown it yet); with it, the
        patch is made again against the gates read. Returns the resourceVersion of a pod without
        the gang's gate (None: the pod is gone, or its gates changed again). The response is not
        turned into a V1Pod (the kubernetes client's deserialization cost more CPU than the
        request at 8000 pods).

        Without the read, a pod watch lagging behind (1000 jobs x 8 pods on 2 cores: past the
        5 minutes the operator's expectations last) made every pass send the same removal again:
        123.7 gate removals per job instead of 8, which kept the watch behind."""
        try:
            data = await self._patch_gates(namespace, name, gates)
        except _GatesChanged:
            current = await self._read_pod_gates(namespace, name)
            if current is None:
                return None
            resource_version, gates_now = current
            if constants.GANG_SCHEDULING_GATE not in gates_now:
                return resource_version
            try:
                data = await self._patch_gates(namespace, name, gates_now)
            except _GatesChanged:
                return None
        if data is None:
            return None
        try:
            return str(json.loads(data)["metadata"]["resourceVersion"])
        except (ValueError, KeyError, TypeError):
            return None

    async def _patch_gates(self, namespace: str, name: str, gates: tuple[str, ...]) -> bytes | None:
        """The patched pod as bytes; None when it is gone; `_GatesChanged` on a failed test."""
        remaining = [{"name": gate} for gate in gates if gate != constants.GANG_SCHEDULING_GATE]
        patch: list[dict[str, Any]] = [
            {"op": "test", "path": "/spec/schedulingGates", "value": [{"name": gate} for gate in gates]},
            {"op": "replace", "path": "/spec/schedulingGates", "value": remaining}
            if remaining
            else {"op": "remove", "path": "/spec/schedulingGates"},
        ]
        metrics.API_WRITES.labels("patch").inc()
        try:
            return await self._write_unread(
                Lane.PROGRESS, self.core.patch_namespaced_pod, name, namespace, patch
            )
        except ApiException as error:
            if error.status == 404:
                return None
            if error.status == 422:
                logger.info("scheduling gates of pod %s/%s changed meanwhile; reading it", namespace, name)
                raise _GatesChanged from None
            raise

    async def _read_pod_gates(self, namespace: str, name: str) -> tuple[str, tuple[str, ...]] | None:
        """The pod's resourceVersion and scheduling gates, or None when it is gone."""

        try:
            data = await self._read_raw(self.core.read_namespaced_pod, name, namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        pod = json.loads(data)
        gates = tuple(str(g.get("name")) for g in (pod.get("spec") or {}).get("schedulingGates") or [])
        return str((pod.get("metadata") or {}).get("resourceVersion") or ""), gates

    async def annotate_pod(self, namespace: str, name: str, key: str, value: str) -> bool:
        """Set one annotation (a JSON merge patch, which leaves the others as they are); False
        when the pod is gone. The response is not deserialized (see `remove_scheduling_gate`)."""
        patch = {"metadata": {"annotations": {key: value}}}
        metrics.API_WRITES.labels("patch").inc()
        try:
            await self._write_unread(
                Lane.PROGRESS,
                self.core.patch_namespaced_pod,
                name,
                namespace,
                patch,
                _content_type="application/merge-patch+json",
            )
        except ApiException as error:
            if error.status == 404:
                return False
            raise
        return True

    async def delete_job(self, namespace: str, name: str) -> None:
        metrics.API_WRITES.labels("delete").inc()
        try:
            await self._write(
                Lane.PROGRESS,
                self.custom.delete_namespaced_custom_object,
                constants.GROUP,
                constants.VERSION,
                namespace,
                constants.PLURAL,
                name,
                propagation_policy="Background",
            )
        except ApiException as error:
            if error.status != 404:
                raise

    async def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The TrainJob as the API server has it now, or None when it is gone."""
        try:
            result = await self._read(
                self.custom.get_namespaced_custom_object,
                constants.GROUP,
                constants.VERSION,
                namespace,
                constants.PLURAL,
                name,
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return cast(dict[str, Any], result)

    async def patch_status(
        self, namespace: str, name: str, patch: dict[str, Any], lane: Lane = Lane.PROGRESS
    ) -> dict[str, Any] | None:
        """Merge-patch `.status`; the job as it is afterwards, or None when it is gone. `lane`:
        `Lane.CREATE` for the patch of a pass that creates (it goes ahead of those creations)."""
        metrics.API_WRITES.labels("patch").inc()
        try:
            result = await self._write(
                lane,
                self.custom.patch_namespaced_custom_object_status,
                constants.GROUP,
                constants.VERSION,
                namespace,
                constants.PLURAL,
                name,
                {"status": patch},
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return cast(dict[str, Any], result)


def _reading_raw(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Callable[[], bytes]:
    """The call, made to return the answer's body as bytes, read in the worker thread (which
    returns the connection to the pool), without the client's deserialization."""

    def call_and_read() -> bytes:
        response = call(*args, _preload_content=False, **kwargs)
        return bytes(response.data)

    return call_and_read


def _refusal(pod: str, status: int, error: ApiException) -> CreateRefusal:
    """What the API server's Status says (kubectl prints its message), or the bare HTTP answer."""
    try:
        body = json.loads(error.body or "")
    except (TypeError, ValueError):
        body = None
    if not isinstance(body, dict):
        body = {}
    reason = body.get("reason")
    message = body.get("message")
    return CreateRefusal(
        pod=pod,
        code=status,
        reason=reason if isinstance(reason, str) and reason else str(error.reason or status),
        message=message if isinstance(message, str) and message else str(error.body or error.reason or ""),
    )
