"""What the endpoints and endpointslice controllers keep up to date: for every Service with a
selector, the addresses of its pods (ready or not), so `kubectl describe svc` and anything that
resolves Service names (the node agent's cluster DNS) see them as on a real cluster."""

from __future__ import annotations

import contextlib
import copy
import hashlib
from typing import Any

from .deletion import DeleteOptions, delete
from .errors import APIError
from .objects import ObjectAPI, WriteOptions
from .selectors import labels_match, selector_from_label_selector

Obj = dict[str, Any]
MANAGER = "endpoint-controller"
SLICE_MANAGER = "endpointslice-controller"
SLICE_LABEL = "kubernetes.io/service-name"
PODS = ("", "pods")
SERVICES = ("", "services")
ENDPOINTS = ("", "endpoints")


def _ready(pod: Obj) -> bool:
    conds = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)


def _target_port(port: Obj, pod: Obj) -> int | None:
    target = port.get("targetPort", port.get("port"))
    if isinstance(target, int):
        return target
    if isinstance(target, str) and target.isdigit():
        return int(target)
    for c in (pod.get("spec") or {}).get("containers") or []:
        for cp in c.get("ports") or []:
            if cp.get("name") == target:
                return int(cp.get("containerPort", 0))
    return None


def _address(pod: Obj, service: str) -> Obj:
    spec = pod.get("spec") or {}
    meta = pod["metadata"]
    addr: Obj = {
        "ip": pod["status"]["podIP"],
        "nodeName": spec.get("nodeName", ""),
        "targetRef": {
            "kind": "Pod",
            "namespace": meta["namespace"],
            "name": meta["name"],
            "uid": meta["uid"],
        },
    }
    if spec.get("hostname") and spec.get("subdomain") == service:
        addr["hostname"] = spec["hostname"]
    return addr


class EndpointsController:
    def __init__(self, api: ObjectAPI) -> None:
        self.api = api
        self.store = api.store

    def run_once(self, namespaces: set[str] | None = None) -> None:
        """Bring the endpoints of the Services in `namespaces` (None: every namespace) up to date:
        only namespaces where a Service, a pod or an endpoints object changed need a pass."""
        if namespaces is not None and not namespaces:
            return
        ep_info = self.api.registry.get("", "v1", "endpoints")
        slice_info = self.api.registry.get("discovery.k8s.io", "v1", "endpointslices")
        if ep_info is None or slice_info is None:
            return
        if namespaces is None:
            namespaces = {ns for ns, _ in self.store.objects.get(SERVICES, {})}
            namespaces |= {ns for ns, _ in self.store.objects.get(ENDPOINTS, {})}
        # One namespace's objects at a time, from the store's namespace index: a pass over a few
        # changed namespaces does not walk every pod and Service of the cluster.
        for ns in sorted(namespaces):
            self._namespace(ep_info, slice_info, ns)

    def _namespace(self, ep_info: Any, slice_info: Any, ns: str) -> None:
        wanted: set[str] = set()
        pods_here = self.store.namespace_objects(PODS, ns)
        for _, svc in sorted(self.store.namespace_objects(SERVICES, ns).items()):
            spec = svc.get("spec") or {}
            selector = spec.get("selector")
            if not selector:
                continue
            name = svc["metadata"]["name"]
            wanted.add(name)
            reqs = selector_from_label_selector({"matchLabels": selector}) or []
            pods = [
                p
                for p in pods_here.values()
                if labels_match(reqs, p["metadata"].get("labels"))
                and (p.get("status") or {}).get("podIP")
                and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
            ]
            pods.sort(key=lambda p: p["metadata"]["name"])
            self._endpoints(ep_info, svc, pods)
            self._slice(slice_info, svc, pods)
        # Endpoints this controller made for Services that are gone (slices go by owner reference)
        for name, ep in sorted(self.store.namespace_objects(ENDPOINTS, ns).items()):
            managers = {m.get("manager") for m in ep["metadata"].get("managedFields") or []}
            if name not in wanted and managers == {MANAGER}:
                with contextlib.suppress(APIError):
                    delete(self.api, ep_info, ns, name, DeleteOptions())

    def _write(self, info: Any, ns: str, desired: Obj, manager: str) -> None:
        current = self.store.peek(info.storage, ns, desired["metadata"]["name"])  # copied to change
        opts = WriteOptions(field_manager=manager)
        with contextlib.suppress(APIError):
            if current is None:
                self.api.create(info, ns, desired, opts)
                return
            new = copy.deepcopy(current)
            for key in ("subsets", "endpoints", "ports", "addressType"):
                new.pop(key, None)
            new.update({k: v for k, v in desired.items() if k not in ("metadata", "apiVersion", "kind")})
            new["metadata"]["labels"] = desired["metadata"].get("labels", current["metadata"].get("labels"))
            if new != current:
                self.api.commit(info, current, new, opts, manager, "")

    def _endpoints(self, info: Any, svc: Obj, pods: list[Obj]) -> None:
        spec = svc["spec"]
        name = svc["metadata"]["name"]
        publish = bool(spec.get("publishNotReadyAddresses"))
        subsets: list[Obj] = []
        for pod in pods:
            ports = []
            for p in spec.get("ports") or []:
                tp = _target_port(p, pod)
                if tp is not None:
                    entry = {"port": tp, "protocol": p.get("protocol", "TCP")}
                    if p.get("name"):
                        entry["name"] = p["name"]
                    ports.append(entry)
            ready = (_ready(pod) or publish) and not pod["metadata"].get("deletionTimestamp")
            subset = next((s for s in subsets if s["ports"] == ports), None)
            if subset is None:
                subset = {"ports": ports}
                subsets.append(subset)
            subset.setdefault("addresses" if ready else "notReadyAddresses", []).append(_address(pod, name))
        body: Obj = {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {
                "name": name,
                "namespace": svc["metadata"]["namespace"],
                "labels": svc["metadata"].get("labels") or {},
            },
        }
        if subsets:
            body["subsets"] = [{k: v for k, v in s.items() if v} for s in subsets]
        if not body["metadata"]["labels"]:
            body["metadata"].pop("labels")
        self._write(info, svc["metadata"]["namespace"], body, MANAGER)

    def _slice(self, info: Any, svc: Obj, pods: list[Obj]) -> None:
        spec = svc["spec"]
        ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
        ports = []
        for p in spec.get("ports") or []:
            tp = _target_port(p, pods[0]) if pods else None
            entry: Obj = {"name": p.get("name", ""), "protocol": p.get("protocol", "TCP")}
            if tp is not None:
                entry["port"] = tp
            ports.append(entry)
        endpoints = []
        for pod in pods:
            terminating = bool(pod["metadata"].get("deletionTimestamp"))
            ready = _ready(pod) and not terminating
            ep: Obj = {
                "addresses": [pod["status"]["podIP"]],
                "conditions": {"ready": ready, "serving": _ready(pod), "terminating": terminating},
                "nodeName": (pod.get("spec") or {}).get("nodeName", ""),
                "targetRef": {
                    "kind": "Pod",
                    "namespace": ns,
                    "name": pod["metadata"]["name"],
                    "uid": pod["metadata"]["uid"],
                },
            }
            if (pod.get("spec") or {}).get("hostname") and (pod.get("spec") or {}).get("subdomain") == name:
                ep["hostname"] = pod["spec"]["hostname"]
            endpoints.append(ep)
        suffix = hashlib.sha256(f"{ns}/{name}".encode()).hexdigest()[:5]
        body: Obj = {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": f"{name}-{suffix}",
                "namespace": ns,
                "labels": {
                    SLICE_LABEL: name,
                    "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
                },
                "ownerReferences": [
                    {
                        "apiVersion": "v1",
                        "kind": "Service",
                        "name": name,
                        "uid": svc["metadata"]["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "addressType": "IPv4",
            "endpoints": endpoints,
            "ports": ports,
        }
        self._write(info, ns, body, SLICE_MANAGER)
