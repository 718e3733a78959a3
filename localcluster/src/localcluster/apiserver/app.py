"""`APIServer`: the in-memory Kubernetes API server as a library (aiohttp on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import logging
import secrets
from pathlib import Path
from typing import Any

from aiohttp import web

from . import persistence, rbac
from .admission import DEFAULT_TOLERATION_SECONDS, PodAdmission
from .auth import Authenticator, Authorizer, authorizer_for
from .garbage import Controllers
from .handlers import Handlers
from .kubeconfig import write_kubeconfig
from .nodelifecycle import DEFAULT_NODE_MONITOR_GRACE_SECONDS, NodeLifecycleController
from .objects import ObjectAPI
from .resources import Registry
from .scheduler import Scheduler
from .simulated import SimulatedNodes
from .store import Store

log = logging.getLogger(__name__)

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


class APIServer:
    """Start with `await server.start()`; `server.url` is then `http://host:port`.

    `state_file` keeps objects across restarts; `kubeconfig` is written once the port is known.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        state_file: str | Path | None = None,
        kubeconfig: str | Path | None = None,
        node_name: str = "localnode",
        admin_token: str | None = None,
        history: int = 10000,
        bookmark_interval: float = 10.0,
        authorizer: Authorizer | None = None,
        authorization: str = "AlwaysAllow",
        node_monitor_grace_seconds: float = DEFAULT_NODE_MONITOR_GRACE_SECONDS,
        default_toleration_seconds: int = DEFAULT_TOLERATION_SECONDS,
        simulated_nodes: int = 0,
        simulated_node_capacity: dict[str, str] | None = None,
        simulated_pod_duration: float = 10.0,
    ) -> None:
        self.host = host
        self.port = port
        self.state_file = Path(state_file) if state_file else None
        self.kubeconfig_path = Path(kubeconfig) if kubeconfig else None
        self.node_name = node_name
        self.bookmark_interval = bookmark_interval
        self.store = Store(history=history)
        self.registry = Registry()
        self.api = ObjectAPI(self.store, self.registry, node_name)
        self.api.hooks.pod_admission = PodAdmission(self.store, default_toleration_seconds)
        self.node_monitor_grace_seconds = node_monitor_grace_seconds
        # Nodes that take pods without running them (simulated.py), for scale tests.
        self.simulated_nodes = simulated_nodes
        self.simulated_node_capacity = simulated_node_capacity
        self.simulated_pod_duration = simulated_pod_duration
        self.simulated: SimulatedNodes | None = None
        signing_key = Authenticator.new_key()
        token = admin_token or secrets.token_urlsafe(32)
        state = persistence.load(self.state_file) if self.state_file else None
        if state is not None:
            self.store.load(state.rv, state.objects)
            signing_key = state.signing_key
            token = admin_token or state.admin_token
            self.api.register_crds()
        self.admin_token = token
        self.authenticator = Authenticator(token, signing_key, self._sa_uid)
        self.authorizer = authorizer or authorizer_for(authorization, self.store)
        self.controllers: Controllers | None = None
        self.scheduler: Scheduler | None = None
        self.node_lifecycle: NodeLifecycleController | None = None
        self.saver: persistence.Saver | None = None
        self._runner: web.AppRunner | None = None
        self.url = ""

    def _sa_uid(self, namespace: str, name: str) -> str | None:
        sa = self.store.peek(("", "serviceaccounts"), namespace, name)
        return sa["metadata"].get("uid") if sa else None

    def _bootstrap(self) -> None:
        ns_info = self.registry.get("", "v1", "namespaces")
        assert ns_info is not None
        for ns in SYSTEM_NAMESPACES:
            self.api.ensure(ns_info, "", {"metadata": {"name": ns}})
        svc_info = self.registry.get("", "v1", "services")
        assert svc_info is not None
        self.api.ensure(
            svc_info,
            "default",
            {
                "metadata": {
                    "name": "kubernetes",
                    "namespace": "default",
                    "labels": {"component": "apiserver", "provider": "kubernetes"},
                },
                "spec": {
                    "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": self.port}],
                    "clusterIP": "10.96.0.1",
                },
            },
        )
        if self.authorizer.mode == "RBAC":
            # The default roles a real cluster bootstraps (kept when they exist: an admin may
            # have changed them).
            for obj in rbac.bootstrap_policy():
                resource = "clusterroles" if obj["kind"] == "ClusterRole" else "clusterrolebindings"
                info = self.registry.get(rbac.GROUP, "v1", resource)
                assert info is not None
                self.api.ensure(info, "", obj)

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        handlers = Handlers(self)
        app.router.add_route("*", "/{tail:.*}", handlers.dispatch)
        return app

    async def start(self) -> None:
        app = self.build_app()
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        server: Any = site._server
        sock = server.sockets[0]
        self.port = sock.getsockname()[1]
        self.url = f"http://{self.host}:{self.port}"
        self._bootstrap()
        if self.state_file is not None:
            # Writes a snapshot of what was loaded and bootstrapped, then journals every change.
            self.saver = persistence.Saver(
                self.state_file, self.store, self.authenticator.key, self.admin_token
            )
        self.controllers = Controllers(self.api)
        self.controllers.start()
        self.scheduler = Scheduler(self.api)
        self.scheduler.start()
        self.node_lifecycle = NodeLifecycleController(self.api, self.node_monitor_grace_seconds)
        self.node_lifecycle.start()
        if self.simulated_nodes > 0:
            self.simulated = SimulatedNodes(
                self.api,
                self.simulated_nodes,
                capacity=self.simulated_node_capacity,
                pod_duration=self.simulated_pod_duration,
                # Renewed well within the node lifecycle controller's grace, as the kubelet's Lease.
                heartbeat_seconds=min(10.0, max(0.2, self.node_monitor_grace_seconds / 5)),
            )
            self.simulated.start()
        if self.kubeconfig_path is not None:
            write_kubeconfig(self.kubeconfig_path, self.url, self.admin_token)

    async def stop(self) -> None:
        for part in (self.simulated, self.scheduler, self.node_lifecycle):
            if part is not None:
                await part.stop()
        self.scheduler = self.node_lifecycle = self.simulated = None
        if self.controllers is not None:
            await self.controllers.stop()
            self.controllers = None
        if self.saver is not None:
            self.saver.flush()  # state first: nothing below may lose it
        if self._runner is not None:
            try:
                await asyncio.wait_for(self._runner.cleanup(), timeout=5)
            except TimeoutError:
                log.warning("HTTP shutdown took longer than 5s; connections are dropped")
            self._runner = None
        if self.saver is not None:
            self.saver.close()
            self.saver = None
        log.info("stopped")

    async def __aenter__(self) -> APIServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
