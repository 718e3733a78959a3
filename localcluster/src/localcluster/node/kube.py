"""A small asyncio Kubernetes REST client: just what the node agent needs.

The agent talks plain REST (JSON over aiohttp) with the kubeconfig's server URL and bearer token.
The official clients would work too, but a watch loop that resumes from a resourceVersion and
re-lists on 410 is a few lines here and keeps the agent free of a heavy synchronous client.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml

log = logging.getLogger(__name__)

JSON = dict[str, Any]


@dataclass(frozen=True)
class KubeConfig:
    server: str
    token: str | None = None

    @classmethod
    def load(cls, path: str | Path) -> KubeConfig:
        """Read the current context's server and bearer token from a kubeconfig file."""
        data: dict[str, Any] = yaml.safe_load(Path(path).read_text()) or {}
        contexts: dict[str, dict[str, Any]] = {
            c["name"]: c.get("context", {}) for c in data.get("contexts") or []
        }
        clusters: dict[str, dict[str, Any]] = {
            c["name"]: c.get("cluster", {}) for c in data.get("clusters") or []
        }
        users: dict[str, dict[str, Any]] = {
            u["name"]: u.get("user", {}) or {} for u in data.get("users") or []
        }
        current = data.get("current-context") or next(iter(contexts), None)
        ctx: dict[str, Any] = contexts.get(current, {}) if current else {}
        cluster = clusters.get(ctx.get("cluster", ""))
        if cluster is None:
            cluster = next(iter(clusters.values()), {})
        user = users.get(ctx.get("user", ""))
        if user is None:
            user = next(iter(users.values()), {})
        server = str(cluster.get("server", "")).rstrip("/")
        if not server:
            raise ValueError(f"kubeconfig {path} names no server")
        token = user.get("token")
        if token is None and user.get("tokenFile"):
            token = Path(user["tokenFile"]).read_text().strip()
        return cls(server=server, token=token)


class ApiError(Exception):
    def __init__(self, status: int, body: Any, method: str = "", path: str = "") -> None:
        self.status = status
        self.body = body
        msg = body.get("message") if isinstance(body, dict) else str(body)[:300]
        super().__init__(f"{method} {path}: HTTP {status}: {msg}")


class Gone(Exception):
    """The watch's resourceVersion is too old: the caller re-lists."""


class KubeClient:
    def __init__(self, config: KubeConfig, *, timeout: float = 30.0) -> None:
        self.config = config
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self.cut = False

    def disconnect(self) -> None:
        """Cut this client off the API server (a stopped node): every request fails as a
        refused connection would, until `reconnect()` (the caller ends its open watches)."""
        self.cut = True

    def reconnect(self) -> None:
        self.cut = False

    def _check_cut(self) -> None:
        if self.cut:
            raise aiohttp.ClientConnectionError("node stopped: no connection to the API server")

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            headers = {"Accept": "application/json", "User-Agent": "localcluster-node/0.1"}
            if self.config.token:
                headers["Authorization"] = f"Bearer {self.config.token}"
            self._session = aiohttp.ClientSession(headers=headers)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> JSON:
        self._check_cut()
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": content_type} if data is not None else {}
        # Waiting for one of the session's connections (aiohttp keeps 100) does not count: when
        # hundreds of pods start at once their requests queue there, as a kubelet's wait behind its
        # client-side rate limit, instead of failing after 30 s as a mount the pod retries with a
        # FailedMount event each. Connecting and each read still time out.
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self._timeout, sock_read=self._timeout)
        async with self.session.request(
            method, self.config.server + path, params=params, data=data, headers=headers, timeout=timeout
        ) as resp:
            text = await resp.text()
            try:
                payload: Any = json.loads(text) if text else {}
            except ValueError:
                payload = text
            if resp.status >= 400:
                raise ApiError(resp.status, payload, method, path)
            return payload if isinstance(payload, dict) else {}

    async def get(self, path: str, params: Mapping[str, str] | None = None) -> JSON:
        return await self.request("GET", path, params=params)

    async def get_or_none(self, path: str) -> JSON | None:
        try:
            return await self.get(path)
        except ApiError as e:
            if e.status == 404:
                return None
            raise

    async def watch(self, path: str, params: Mapping[str, str]) -> AsyncIterator[JSON]:
        """Yield watch events until the server closes the stream; raise Gone on 410."""
        self._check_cut()
        query = dict(params)
        query["watch"] = "true"
        query.setdefault("allowWatchBookmarks", "true")
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=None)
        async with self.session.get(self.config.server + path, params=query, timeout=timeout) as resp:
            if resp.status == 410:
                raise Gone()
            if resp.status >= 400:
                raise ApiError(resp.status, await resp.text(), "WATCH", path)
            buf = b""
            async for chunk in resp.content.iter_any():
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    obj = event.get("object") or {}
                    if event.get("type") == "ERROR":
                        if obj.get("code") == 410:
                            raise Gone()
                        raise ApiError(int(obj.get("code") or 500), obj, "WATCH", path)
                    yield event


async def backoff_sleep(attempt: int, *, base: float = 0.2, cap: float = 5.0) -> None:
    await asyncio.sleep(min(cap, base * (2 ** min(attempt, 10))))
