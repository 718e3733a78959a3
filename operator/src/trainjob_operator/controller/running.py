"""`trainjob operator`: kopf with our settings, scope, peering, liveness and metrics."""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import kopf
from kubernetes import client, config
from prometheus_client import start_http_server

from trainjob_operator.controller.acting import KubernetesActions
from trainjob_operator.controller.handlers import Controller, registry, watch_nodes
from trainjob_operator.reconciling import OperatorSettings

logger = logging.getLogger(__name__)

FINALIZER = "trainjob.dev/operator"

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


@dataclass(frozen=True)
class OperatorOptions:
    """What `trainjob operator` is started with (its flags)."""

    kubeconfig: str | None = None
    namespaces: tuple[str, ...] = ()  # empty: every namespace (cluster scope)
    peering: str | None = None  # None: standalone (one replica); else the KopfPeering name
    priority: int = 0
    liveness_port: int | None = None
    metrics_port: int | None = None
    settings: OperatorSettings = field(default_factory=OperatorSettings)


def _ca_file(account: Path = SERVICE_ACCOUNT_DIR) -> Path | None:
    """The mounted cluster CA; the local cluster mounts none, or an empty file."""
    ca = account / "ca.crt"
    return ca if ca.exists() and ca.stat().st_size > 0 else None


def _in_cluster_server(account: Path = SERVICE_ACCOUNT_DIR) -> str | None:
    """In a pod with a ServiceAccount token: the API server from KUBERNETES_SERVICE_HOST/PORT, as
    client-go finds it. Over HTTPS with the mounted CA; the local cluster serves plain HTTP and
    publishes no CA, so without one it is HTTP. None outside a pod."""
    host = os.environ.get("KUBERNETES_SERVICE_HOST")
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    if not host or not (account / "token").exists():
        return None
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    return f"{'https' if _ca_file(account) else 'http'}://{host}:{port}"


@kopf.on.login(registry=registry)
def login(settings: kopf.OperatorSettings, **_: Any) -> kopf.ConnectionInfo | None:
    """In a pod, its ServiceAccount token against the API server the pod's environment names;
    elsewhere the kubeconfig (`--kubeconfig` or $KUBECONFIG). kopf's own ServiceAccount login is
    not used: it assumes https://kubernetes.default.svc, which the local cluster does not serve."""
    server = _in_cluster_server()
    if server is None:
        return kopf.login_with_kubeconfig(settings=settings)
    ca = _ca_file()
    namespace = SERVICE_ACCOUNT_DIR / "namespace"
    return kopf.ConnectionInfo(
        server=server,
        ca_path=str(ca) if ca else None,
        token=(SERVICE_ACCOUNT_DIR / "token").read_text().strip() or None,
        default_namespace=namespace.read_text().strip() if namespace.exists() else None,
        trust_env=settings.networking.trust_env,
    )


def _api_client(kubeconfig: str | None) -> client.ApiClient:
    if kubeconfig:
        return cast(client.ApiClient, config.new_client_from_config(config_file=kubeconfig))  # type: ignore[no-untyped-call]
    server = _in_cluster_server()
    if server is not None and server.startswith("http:"):
        configuration = client.Configuration()
        configuration.host = server
        token_file = SERVICE_ACCOUNT_DIR / "token"

        def refresh(conf: client.Configuration) -> None:
            # The kubelet rotates the projected token; read it before every request.
            conf.api_key["authorization"] = "Bearer " + token_file.read_text().strip()

        configuration.refresh_api_key_hook = refresh  # type: ignore[assignment]
        refresh(configuration)
        return client.ApiClient(configuration)
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    return client.ApiClient()


def _configure(settings: kopf.OperatorSettings, options: OperatorOptions) -> None:
    # Our handlers' own log lines stay logs; only warnings become Events on the object.
    settings.posting.level = logging.WARNING
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="trainjob.dev")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="trainjob.dev")
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 60
    if options.namespaces:
        # Watching namespaces and CRDs needs cluster-scoped reads that a namespaced install's Roles
        # cannot grant; the CRD is installed before the operator, and the namespaces are given.
        settings.scanning.disabled = True
    if options.peering is not None:
        settings.peering.name = options.peering
        settings.peering.priority = options.priority


def run(options: OperatorOptions) -> None:
    """Run the operator until SIGINT/SIGTERM."""
    if options.kubeconfig:
        # kopf logs in with the kubeconfig named by KUBECONFIG.
        os.environ["KUBECONFIG"] = options.kubeconfig
    if options.metrics_port is not None:
        start_http_server(options.metrics_port)

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        _configure(settings, options)
        memo.controller = Controller(
            actions=KubernetesActions(_api_client(options.kubeconfig)), settings=options.settings
        )

    if not options.namespaces:
        # Reading Nodes needs a cluster-scoped grant, which a namespaced install does not have;
        # there a lost node is noticed by its pods' DisruptionTarget (the taint manager) instead.
        watch_nodes()
    liveness = f"http://0.0.0.0:{options.liveness_port}/healthz" if options.liveness_port else None
    scope: dict[str, Any] = (
        {"namespaces": list(options.namespaces)} if options.namespaces else {"clusterwide": True}
    )
    logger.info(
        "operator starting: %s",
        "namespaces " + ",".join(options.namespaces) if options.namespaces else "all namespaces",
    )
    if options.peering is not None:
        # kopf logs a pause only when an acting replica yields; one that starts below a running
        # replica waits silently, so say here how this one ranks.
        logger.info(
            "peering through %s with priority %d: the highest-priority live replica acts, the others wait",
            options.peering,
            options.priority,
        )
    asyncio.run(
        kopf.operator(
            registry=registry,
            standalone=options.peering is None,
            peering_name=options.peering,
            priority=options.priority,
            liveness_endpoint=liveness,
            memo=kopf.Memo(),
            **scope,
        )
    )
