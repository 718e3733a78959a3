"""`trainjob operator`: kopf with our settings, scope, peering, liveness and metrics."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, cast

import kopf
from kubernetes import client, config
from prometheus_client import start_http_server

from trainjob_operator.controller.acting import KubernetesActions
from trainjob_operator.controller.handlers import Controller, registry, watch_nodes
from trainjob_operator.in_cluster import InClusterAccess, in_cluster_access
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


class _DiffBaseOfJobs(kopf.AnnotationsDiffBaseStorage):
    """kopf builds a diff base (a deep copy of the object, less what it ignores) on every watch
    event of every watched kind, though only its change and daemon handlers read it, and the
    operator has none on pods: at thousands of pod events that was ~15% of the operator's CPU.
    A pod's diff base is empty; a TrainJob's is kopf's own."""

    def build(self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None) -> kopf.BodyEssence:
        if body.get("kind") == "Pod":
            return cast(kopf.BodyEssence, {})
        return super().build(body=body, extra_fields=extra_fields)


def tune_garbage_collector() -> None:
    """A full garbage collection at most every 1000 middle ones instead of every 10 (Python's
    default); young and middle collections as by default.

    The operator's heap grows with what it watches (the pod index, kopf's state per object), and
    each watch event's decoded JSON outlives a young collection or two while kopf batches it
    (0.1 s), so it is promoted and soon dies there. Those promotions kept triggering full
    collections of the whole heap: at 1000 TrainJobs x 8 pods, 72 of them took 51 s of the
    operator's 197 CPU seconds, and the young and middle ones 22 s more (`bench/RESULTS.md`,
    "Round five"). With this setting the same scenario made 2 or 3. Garbage in cycles that
    reached the oldest generation waits longer to be freed, at most 7 million allocations (a few
    minutes of a busy operator); what refcounting frees, nearly all of it, is freed at once."""
    gc.set_threshold(700, 10, 1000)


def _in_cluster(options: OperatorOptions) -> InClusterAccess | None:
    """The pod's API server (trainjob_operator.in_cluster), unless a kubeconfig was named; None
    outside a pod."""
    if options.kubeconfig:
        return None
    return in_cluster_access(plain_http=options.settings.api_plain_http)


def _login(settings: kopf.OperatorSettings, options: OperatorOptions) -> kopf.ConnectionInfo | None:
    """In a pod, its ServiceAccount token against the API server the pod's environment names;
    elsewhere the kubeconfig (`--kubeconfig` or $KUBECONFIG). kopf's own ServiceAccount login is
    not used: it assumes https://kubernetes.default.svc, which the local cluster does not serve."""
    access = _in_cluster(options)
    if access is None:
        return kopf.login_with_kubeconfig(settings=settings)
    return kopf.ConnectionInfo(
        server=access.server,
        ca_path=str(access.ca_file) if access.ca_file else None,
        token=access.token() or None,
        default_namespace=access.namespace,
        trust_env=settings.networking.trust_env,
    )


def _api_client(options: OperatorOptions) -> client.ApiClient:
    if options.kubeconfig:
        return cast(client.ApiClient, config.new_client_from_config(config_file=options.kubeconfig))
    access = _in_cluster(options)
    if access is not None:
        return client.ApiClient(access.kubernetes_configuration())
    config.load_kube_config()
    return client.ApiClient()


def _configure(settings: kopf.OperatorSettings, options: OperatorOptions) -> None:
    # Our handlers' own log lines stay logs; only warnings become Events on the object.
    settings.posting.level = logging.WARNING
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="trainjob.dev")
    settings.persistence.diffbase_storage = _DiffBaseOfJobs(prefix="trainjob.dev")
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
    """Run the operator until SIGINT/SIGTERM. Raises InClusterError at once, not at kopf's first
    login, when the pod's API server cannot be reached as asked."""
    _in_cluster(options)
    tune_garbage_collector()
    if options.kubeconfig:
        # kopf logs in with the kubeconfig named by KUBECONFIG.
        os.environ["KUBECONFIG"] = options.kubeconfig
    if options.metrics_port is not None:
        start_http_server(options.metrics_port)

    @kopf.on.login(registry=registry)
    def login(settings: kopf.OperatorSettings, **_: Any) -> kopf.ConnectionInfo | None:
        return _login(settings, options)

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        _configure(settings, options)
        memo.controller = Controller(
            actions=KubernetesActions(_api_client(options)), settings=options.settings
        )

    @kopf.on.cleanup(registry=registry)
    def close(memo: kopf.Memo, **_: Any) -> None:
        controller: Controller | None = getattr(memo, "controller", None)
        if controller is not None:  # None: the operator stopped before its startup handler ran
            controller.actions.close()

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
