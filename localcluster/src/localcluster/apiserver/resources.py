"""The registry of served resources: built-in kinds and the kinds CRDs add."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ALL_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
CREATE_ONLY = ["create"]


@dataclass
class ResourceInfo:
    group: str
    version: str
    resource: str  # plural, lower case
    kind: str
    namespaced: bool
    singular: str = ""
    short_names: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    verbs: list[str] = field(default_factory=lambda: list(ALL_VERBS))
    # subresource name -> kind answered there (status: same kind)
    subresources: dict[str, str] = field(default_factory=dict)
    # where objects live; two API groups may serve one storage (core and events.k8s.io events)
    storage: tuple[str, str] = ("", "")
    builtin: bool = True
    # CRD-only parts, per served version
    schema: dict[str, Any] | None = None
    printer_columns: list[dict[str, Any]] = field(default_factory=list)
    scale: dict[str, Any] | None = None
    crd_name: str = ""
    storage_version: bool = True
    # create-only "virtual" kinds (reviews) are never stored
    virtual: bool = False

    def __post_init__(self) -> None:
        if not self.singular:
            self.singular = self.kind.lower()
        if self.storage == ("", ""):
            self.storage = (self.group, self.resource)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def list_kind(self) -> str:
        return self.kind + "List"

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources

    def qualified_kind(self) -> str:
        return f"{self.kind}.{self.group}" if self.group else self.kind


def _core(
    resource: str,
    kind: str,
    namespaced: bool = True,
    short: list[str] | None = None,
    sub: dict[str, str] | None = None,
    verbs: list[str] | None = None,
    categories: list[str] | None = None,
) -> ResourceInfo:
    return ResourceInfo(
        "",
        "v1",
        resource,
        kind,
        namespaced,
        short_names=short or [],
        subresources=sub or {},
        verbs=verbs or list(ALL_VERBS),
        categories=categories or [],
    )


def _gv(
    group: str,
    version: str,
    resource: str,
    kind: str,
    namespaced: bool = True,
    short: list[str] | None = None,
    sub: dict[str, str] | None = None,
    verbs: list[str] | None = None,
    categories: list[str] | None = None,
    virtual: bool = False,
) -> ResourceInfo:
    return ResourceInfo(
        group,
        version,
        resource,
        kind,
        namespaced,
        short_names=short or [],
        subresources=sub or {},
        verbs=verbs or list(ALL_VERBS),
        categories=categories or [],
        virtual=virtual,
    )


STATUS = {"status": ""}
SCALE_STATUS = {"status": "", "scale": "Scale"}
ALL = ["all"]


def builtin_resources() -> list[ResourceInfo]:
    no_dc = [v for v in ALL_VERBS if v != "deletecollection"]
    return [
        _core("namespaces", "Namespace", False, ["ns"], {"status": "", "finalize": ""}, no_dc),
        _core("nodes", "Node", False, ["no"], {"status": "", "proxy": "NodeProxyOptions"}),
        _core(
            "pods",
            "Pod",
            short=["po"],
            sub={
                "status": "",
                "log": "Pod",
                "binding": "Binding",
                "eviction": "Eviction",
                "ephemeralcontainers": "",
                "exec": "PodExecOptions",
                "portforward": "PodPortForwardOptions",
            },
            categories=ALL,
        ),
        _core(
            "services",
            "Service",
            short=["svc"],
            sub={"status": "", "proxy": "ServiceProxyOptions"},
            categories=ALL,
        ),
        _core("endpoints", "Endpoints", short=["ep"]),
        _core("configmaps", "ConfigMap", short=["cm"]),
        _core("secrets", "Secret"),
        _core("serviceaccounts", "ServiceAccount", short=["sa"], sub={"token": "TokenRequest"}),
        _core("events", "Event", short=["ev"]),
        _core("persistentvolumeclaims", "PersistentVolumeClaim", short=["pvc"], sub=STATUS),
        _core("persistentvolumes", "PersistentVolume", False, ["pv"], STATUS),
        _core("limitranges", "LimitRange", short=["limits"]),
        _core("resourcequotas", "ResourceQuota", short=["quota"], sub=STATUS),
        _core("podtemplates", "PodTemplate"),
        _core(
            "replicationcontrollers", "ReplicationController", short=["rc"], sub=SCALE_STATUS, categories=ALL
        ),
        _gv("apps", "v1", "deployments", "Deployment", short=["deploy"], sub=SCALE_STATUS, categories=ALL),
        _gv("apps", "v1", "statefulsets", "StatefulSet", short=["sts"], sub=SCALE_STATUS, categories=ALL),
        _gv("apps", "v1", "daemonsets", "DaemonSet", short=["ds"], sub=STATUS, categories=ALL),
        _gv("apps", "v1", "replicasets", "ReplicaSet", short=["rs"], sub=SCALE_STATUS, categories=ALL),
        _gv("apps", "v1", "controllerrevisions", "ControllerRevision"),
        _gv("batch", "v1", "jobs", "Job", sub=STATUS, categories=ALL),
        _gv("batch", "v1", "cronjobs", "CronJob", short=["cj"], sub=STATUS, categories=ALL),
        _gv(
            "autoscaling",
            "v2",
            "horizontalpodautoscalers",
            "HorizontalPodAutoscaler",
            short=["hpa"],
            sub=STATUS,
        ),
        _gv("coordination.k8s.io", "v1", "leases", "Lease"),
        ResourceInfo(
            "events.k8s.io", "v1", "events", "Event", True, short_names=["ev"], storage=("", "events")
        ),
        _gv("rbac.authorization.k8s.io", "v1", "roles", "Role"),
        _gv("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding"),
        _gv("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False),
        _gv("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False),
        _gv(
            "apiextensions.k8s.io",
            "v1",
            "customresourcedefinitions",
            "CustomResourceDefinition",
            False,
            ["crd", "crds"],
            STATUS,
            categories=["api-extensions"],
        ),
        _gv("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice"),
        # stored only: no aggregation (requests for the groups they name are not proxied)
        _gv("apiregistration.k8s.io", "v1", "apiservices", "APIService", False, sub=STATUS),
        _gv("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", short=["pdb"], sub=STATUS),
        _gv("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", short=["netpol"]),
        _gv("networking.k8s.io", "v1", "ingresses", "Ingress", short=["ing"], sub=STATUS),
        _gv("networking.k8s.io", "v1", "ingressclasses", "IngressClass", False),
        _gv("scheduling.k8s.io", "v1", "priorityclasses", "PriorityClass", False, ["pc"]),
        _gv("storage.k8s.io", "v1", "storageclasses", "StorageClass", False, ["sc"]),
        _gv(
            "admissionregistration.k8s.io",
            "v1",
            "validatingwebhookconfigurations",
            "ValidatingWebhookConfiguration",
            False,
        ),
        _gv(
            "admissionregistration.k8s.io",
            "v1",
            "mutatingwebhookconfigurations",
            "MutatingWebhookConfiguration",
            False,
        ),
        _gv(
            "authentication.k8s.io",
            "v1",
            "tokenreviews",
            "TokenReview",
            False,
            verbs=CREATE_ONLY,
            virtual=True,
        ),
        _gv(
            "authentication.k8s.io",
            "v1",
            "selfsubjectreviews",
            "SelfSubjectReview",
            False,
            verbs=CREATE_ONLY,
            virtual=True,
        ),
        _gv(
            "authorization.k8s.io",
            "v1",
            "selfsubjectaccessreviews",
            "SelfSubjectAccessReview",
            False,
            verbs=CREATE_ONLY,
            virtual=True,
        ),
        _gv(
            "authorization.k8s.io",
            "v1",
            "subjectaccessreviews",
            "SubjectAccessReview",
            False,
            verbs=CREATE_ONLY,
            virtual=True,
        ),
        _gv(
            "authorization.k8s.io",
            "v1",
            "selfsubjectrulesreviews",
            "SelfSubjectRulesReview",
            False,
            verbs=CREATE_ONLY,
            virtual=True,
        ),
        _gv(
            "authorization.k8s.io",
            "v1",
            "localsubjectaccessreviews",
            "LocalSubjectAccessReview",
            True,
            verbs=CREATE_ONLY,
            virtual=True,
        ),
    ]


# Groups listed first in discovery, in the order the real server prefers.
GROUP_ORDER = [
    "",
    "apiregistration.k8s.io",
    "apps",
    "events.k8s.io",
    "authentication.k8s.io",
    "authorization.k8s.io",
    "autoscaling",
    "batch",
    "certificates.k8s.io",
    "networking.k8s.io",
    "policy",
    "rbac.authorization.k8s.io",
    "storage.k8s.io",
    "admissionregistration.k8s.io",
    "apiextensions.k8s.io",
    "scheduling.k8s.io",
    "coordination.k8s.io",
    "discovery.k8s.io",
]


class Registry:
    """Which (group, version, resource) the server answers, and where objects live."""

    def __init__(self) -> None:
        self._by_gvr: dict[tuple[str, str, str], ResourceInfo] = {}
        self._order: list[tuple[str, str, str]] = []
        for info in builtin_resources():
            self.add(info)

    def add(self, info: ResourceInfo) -> None:
        key = (info.group, info.version, info.resource)
        if key not in self._by_gvr:
            self._order.append(key)
        self._by_gvr[key] = info

    def remove_crd(self, crd_name: str) -> list[ResourceInfo]:
        removed = [i for i in self._by_gvr.values() if i.crd_name == crd_name]
        for info in removed:
            key = (info.group, info.version, info.resource)
            del self._by_gvr[key]
            self._order.remove(key)
        return removed

    def get(self, group: str, version: str, resource: str) -> ResourceInfo | None:
        return self._by_gvr.get((group, version, resource))

    def all(self) -> list[ResourceInfo]:
        return [self._by_gvr[k] for k in self._order]

    def for_storage(self, storage: tuple[str, str]) -> ResourceInfo | None:
        """The preferred resource that serves a storage (first registered wins)."""
        for info in self.all():
            if info.storage == storage and info.storage_version:
                return info
        for info in self.all():
            if info.storage == storage:
                return info
        return None

    def by_kind(self, api_version: str, kind: str) -> ResourceInfo | None:
        group, _, version = api_version.rpartition("/")
        for info in self._by_gvr.values():
            if info.group == group and info.version == version and info.kind == kind:
                return info
        return None

    def groups(self) -> list[tuple[str, list[str]]]:
        """(group, versions preferred first) for every served API group, core first."""
        versions: dict[str, list[str]] = {}
        for info in self.all():
            vs = versions.setdefault(info.group, [])
            if info.version not in vs:
                vs.append(info.version)
        ordered = [g for g in GROUP_ORDER if g in versions] + sorted(
            g for g in versions if g not in GROUP_ORDER
        )
        return [(g, _sort_versions(versions[g])) for g in ordered]

    def resources_in(self, group: str, version: str) -> list[ResourceInfo]:
        return [i for i in self.all() if i.group == group and i.version == version]


def _version_priority(v: str) -> tuple[int, int, int, str]:
    """Kubernetes version priority: GA > beta > alpha, higher numbers first, others last."""
    import re

    m = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", v)
    if not m:
        return (3, 0, 0, v)
    major = int(m.group(1))
    stage = {None: 0, "beta": 1, "alpha": 2}[m.group(2)]
    minor = int(m.group(3) or 0)
    return (stage, -major, -minor, v)


def _sort_versions(versions: list[str]) -> list[str]:
    return sorted(versions, key=_version_priority)
