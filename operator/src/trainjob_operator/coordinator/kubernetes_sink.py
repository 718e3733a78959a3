"""The coordinator's status sink on a cluster: a merge patch of its own TrainJob's status.

It authenticates with the projected ServiceAccount token only the coordinator container mounts;
that account's Role allows `get`/`patch` of `trainjobs/status` for this one job, so a patch can
never touch the spec or another job. The token file is re-read for every request because the
kubelet rotates it.

In a pod the API server is `KUBERNETES_SERVICE_HOST:KUBERNETES_SERVICE_PORT`, over TLS verified
with the mounted `ca.crt`. The local cluster serves plain HTTP and mounts an empty `ca.crt`;
without a CA the sink speaks HTTP (and says so in its log once).
"""

from __future__ import annotations

import json
import logging
import os
import ssl
from pathlib import Path
from typing import Any

import aiohttp

from trainjob_operator.api import constants
from trainjob_operator.coordinator.sinks import StatusSink

logger = logging.getLogger(__name__)

SERVICE_ACCOUNT_DIR = Path(constants.SERVICE_ACCOUNT_MOUNT_DIR)


class StatusPatchError(RuntimeError):
    """The API server refused or could not take the patch; the publisher retries it."""


class KubernetesStatusSink(StatusSink):
    def __init__(
        self,
        *,
        namespace: str,
        job: str,
        server: str | None = None,
        credentials_dir: Path = SERVICE_ACCOUNT_DIR,
    ) -> None:
        self.namespace = namespace
        self.job = job
        self.credentials_dir = credentials_dir
        ca_file = credentials_dir / "ca.crt"
        has_ca = ca_file.exists() and ca_file.stat().st_size > 0
        self._ssl: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=str(ca_file)) if has_ca else False
        )
        self.server = server or _in_cluster_server(tls=has_ca)
        if not has_ca:
            logger.warning("no %s: talking to the API server at %s without TLS", ca_file, self.server)
        self.url = (
            f"{self.server}/apis/{constants.GROUP}/{constants.VERSION}/namespaces/{namespace}/"
            f"{constants.PLURAL}/{job}/status"
        )
        self._session: aiohttp.ClientSession | None = None

    def _token(self) -> str:
        return (self.credentials_dir / "token").read_text().strip()

    async def read(self) -> dict[str, Any] | None:
        """GET of this job's status (the Role allows get on trainjobs/status for it)."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))
        headers = {"Authorization": f"Bearer {self._token()}", "Accept": "application/json"}
        async with self._session.get(self.url, headers=headers, ssl=self._ssl) as response:
            if response.status >= 300:
                return None
            return _status_of(await response.json(content_type=None))

    async def publish(self, patch: dict[str, Any]) -> dict[str, Any] | None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))
        headers = {
            "Authorization": f"Bearer {self._token()}",
            "Content-Type": "application/merge-patch+json",
            "Accept": "application/json",
        }
        body = json.dumps({"status": patch})
        async with self._session.patch(self.url, data=body, headers=headers, ssl=self._ssl) as response:
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


def _in_cluster_server(*, tls: bool) -> str:
    host = os.environ.get("KUBERNETES_SERVICE_HOST")
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    if not host:
        raise RuntimeError(
            "--status-sink kubernetes needs KUBERNETES_SERVICE_HOST (set in every pod); "
            "outside a cluster use --status-sink file:PATH"
        )
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    return f"{'https' if tls else 'http'}://{host}:{port}"
