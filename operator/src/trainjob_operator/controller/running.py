"""`trainjob operator`: kopf with our settings, scope, peering, liveness and metrics."""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass, field
from typing import Any, cast

import kopf
from kubernetes import client, config
from prometheus_client import start_http_server

from trainjob_operator.controller.acting import KubernetesActions
from trainjob_operator.controller.handlers import Controller, registry
from trainjob_operator.reconciling import OperatorSettings

logger = logging.getLogger(__name__)

FINALIZER = "trainjob.dev/operator"


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


def _api_client(kubeconfig: str | None) -> client.ApiClient:
    if kubeconfig:
        return cast(client.ApiClient, config.new_client_from_config(config_file=kubeconfig))  # type: ignore[no-untyped-call]
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

    liveness = f"http://0.0.0.0:{options.liveness_port}/healthz" if options.liveness_port else None
    scope: dict[str, Any] = (
        {"namespaces": list(options.namespaces)} if options.namespaces else {"clusterwide": True}
    )
    logger.info(
        "operator starting: %s",
        "namespaces " + ",".join(options.namespaces) if options.namespaces else "all namespaces",
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
