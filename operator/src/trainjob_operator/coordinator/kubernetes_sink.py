"""The coordinator's status sink on a cluster: a merge patch of its own TrainJob's status.

It authenticates with the projected ServiceAccount token only the coordinator container mounts;
that account's Role allows `get`/`patch` of `trainjobs/status` for this one job, so a patch can
never touch the spec or another job. The API server, its CA and the token (re-read for every
request, because the kubelet rotates it) come from `trainjob_operator.in_cluster`, as for the
operator and the CLI; plain HTTP only with `--api-plain-http`.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import aiohttp

from trainjob_operator.api import constants
from trainjob_operator.coordinator.sinks import StatusSink
from trainjob_operator.in_cluster import InClusterAccess

logger = logging.getLogger(__name__)


class StatusPatchError(RuntimeError):
    """The API server refused or could not take the patch; the publisher retries it."""


class KubernetesStatusSink(StatusSink):
    def __init__(self, *, namespace: str, job: str, access: InClusterAccess) -> None:
        self.namespace = namespace
        self.job = job
        self.access = access
        self._ssl = access.ssl_context()
        if access.plain_http:
            logger.warning("talking to the API server at %s without TLS (--api-plain-http)", access.server)
        self.url = (
            f"{access.server}/apis/{constants.GROUP}/{constants.VERSION}/namespaces/{namespace}/"
            f"{constants.PLURAL}/{job}/status"
        )
        self._session: aiohttp.ClientSession | None = None

    async def read(self) -> dict[str, Any] | None:
        """GET of this job's status (the Role allows get on trainjobs/status for it)."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))
        headers = {"Authorization": f"Bearer {self.access.token()}", "Accept": "application/json"}
        tls: dict[str, Any] = {} if self._ssl is None else {"ssl": self._ssl}
        async with self._session.get(self.url, headers=headers, **tls) as response:
            if response.status >= 300:
                return None
            return _status_of(await response.json(content_type=None))

    async def publish(self, patch: dict[str, Any]) -> dict[str, Any] | None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))
        headers = {
            "Authorization": f"Bearer {self.access.token()}",
            "Content-Type": "application/merge-patch+json",
            "Accept": "application/json",
        }
        body = json.dumps({"status": patch})
        tls: dict[str, Any] = {} if self._ssl is None else {"ssl": self._ssl}
        async with self._session.patch(self.url, data=body, headers=headers, **tls) as response:
            if response.status == 404:
                # The job is gone (deleted while its pods stop): nothing left to update.
                logger.info("TrainJob %s/%s is gone; status patch dropped", self.namespace, self.job)
                return None
            if response.status >= 300:
                text = (await response.text())[:500]
                raise StatusPatchError(
                    f"status patch of {self.namespace}/{self.job}: {response.status} {text}"
                )
            try:
                return _status_of(await response.json(content_type=None))
            except ValueError:
                return None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _status_of(job: Any) -> dict[str, Any] | None:
    status = job.get("status") if isinstance(job, dict) else None
    return status if isinstance(status, dict) else None
