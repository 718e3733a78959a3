"""The node agents' control endpoint: `POST /nodes/<name>/stop[?keepProcesses=true]` and
`POST /nodes/<name>/start`, on 127.0.0.1 with a bearer token; port and token are in
`<state-dir>/control.json` (mode 0600), which `python -m localcluster node stop|start` reads.
A real cluster has no such thing: it stands for pulling a machine's plug or network cable."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

from aiohttp import web

CONTROL_FILE = "control.json"


class ControlServer:
    def __init__(self, agents: dict[str, Any], state_dir: Path) -> None:
        self.agents = agents
        self.path = state_dir / CONTROL_FILE
        self.token = secrets.token_urlsafe(24)
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/nodes/{name}/{action}", self._handle)
        app.router.add_get("/nodes", self._list)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server: Any = site._server
        port = int(server.sockets[0].getsockname()[1])
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"url": f"http://127.0.0.1:{port}", "token": self.token}, f)
        tmp.replace(self.path)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.path.unlink(missing_ok=True)

    def _authorized(self, request: web.Request) -> bool:
        return secrets.compare_digest(request.headers.get("Authorization", ""), f"Bearer {self.token}")

    async def _list(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.json_response({"error": "unauthorized"}, status=401)
        return web.json_response({name: {"stopped": a.node_stopped} for name, a in self.agents.items()})

    async def _handle(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.json_response({"error": "unauthorized"}, status=401)
        name, action = request.match_info["name"], request.match_info["action"]
        agent = self.agents.get(name)
        if agent is None:
            known = ", ".join(sorted(self.agents))
            return web.json_response({"error": f'no node "{name}" runs here (nodes: {known})'}, status=404)
        if action == "stop":
            keep = request.query.get("keepProcesses", "").lower() in ("1", "true", "yes")
            await agent.stop_node(keep_processes=keep)
        elif action == "start":
            agent.start_node()
        else:
            return web.json_response({"error": f"unknown action {action!r} (stop, start)"}, status=404)
        return web.json_response({"node": name, "stopped": agent.node_stopped})
