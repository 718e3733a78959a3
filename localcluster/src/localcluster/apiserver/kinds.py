"""What the real API server does to particular built-in kinds on create and update (defaults,
allocations, derived fields), kept apart from the generic REST semantics."""

from __future__ import annotations

import base64
import copy
import ipaddress
import re
from collections.abc import Callable
from typing import Any

from .errors import invalid

Obj = dict[str, Any]


def _pod_defaults(spec: dict[str, Any]) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    spec.setdefault("enableServiceLinks", True)
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    spec.setdefault("priority", 0)
    if "serviceAccount" in spec and "serviceAccountName" not in spec:
        spec["serviceAccountName"] = spec["serviceAccount"]
    spec.setdefault("serviceAccountName", "default")
    spec["serviceAccount"] = spec["serviceAccountName"]
    for key in ("containers", "initContainers"):
        for c in spec.get(key) or []:
            if not isinstance(c, dict):
                continue
            image = str(c.get("image", ""))
            tag = image.rsplit("/", 1)[-1]
            latest = ":" not in tag or tag.endswith(":latest")
            c.setdefault("imagePullPolicy", "Always" if latest and "@" not in image else "IfNotPresent")
            c.setdefault("terminationMessagePath", "/dev/termination-log")
            c.setdefault("terminationMessagePolicy", "File")
            c.setdefault("resources", {})
            for port in c.get("ports") or []:
                if isinstance(port, dict):
                    port.setdefault("protocol", "TCP")
    for vol in spec.get("volumes") or []:
        if isinstance(vol, dict):
            for src in ("secret", "configMap"):
                if isinstance(vol.get(src), dict):
                    vol[src].setdefault("defaultMode", 420)
            if isinstance(vol.get("projected"), dict):
                vol["projected"].setdefault("defaultMode", 420)


def qos_class(spec: dict[str, Any]) -> str:
    """Guaranteed when every container's requests equal its limits for cpu and memory,
    BestEffort when none sets any, Burstable otherwise (requests default to limits)."""
    containers = [
        c for c in (spec.get("containers") or []) + (spec.get("initContainers") or []) if isinstance(c, dict)
    ]
    any_set = False
    guaranteed = True
    for c in containers:
        res = c.get("resources") or {}
        limits = res.get("limits") or {}
        requests = {**limits, **(res.get("requests") or {})}
        if limits or requests:
            any_set = True
        for key in ("cpu", "memory"):
            if key not in limits or str(requests.get(key)) != str(limits.get(key)):
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed and containers else "Burstable"


def _template_defaults(obj: Obj) -> None:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    template = spec.get("template")
    if isinstance(template, dict) and isinstance(template.get("spec"), dict):
        _pod_defaults(template["spec"])
        template.setdefault("metadata", {})


_POD_MUTABLE = (
    "`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,"
    "`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` "
    "(allow it to be set to 1 if it was previously negative)"
)


def _check_pod_update(old: Obj, new: Obj) -> None:
    """A pod's spec is immutable but for a few fields, as the real server enforces."""

    def comparable(spec: dict[str, Any]) -> dict[str, Any]:
        c = copy.deepcopy(spec)
        for key in ("containers", "initContainers"):
            for container in c.get(key) or []:
                if isinstance(container, dict):
                    container.pop("image", None)
        for key in (
            "activeDeadlineSeconds",
            "tolerations",
            "terminationGracePeriodSeconds",
            "schedulingGates",
        ):
            c.pop(key, None)
        return c

    if comparable(old.get("spec") or {}) != comparable(new.get("spec") or {}):
        raise invalid(
            "Pod",
            "",
            new["metadata"]["name"],
            [
                {
                    "reason": "FieldValueForbidden",
                    "message": f"Forbidden: pod updates may not change fields other than {_POD_MUTABLE}",
                    "field": "spec",
                }
            ],
        )


def _check_immutable_data(kind: str, old: Obj, new: Obj) -> None:
    if not old.get("immutable"):
        return
    causes = []
    for key in ("data", "binaryData") if kind == "ConfigMap" else ("data",):
        if (old.get(key) or {}) != (new.get(key) or {}):
            causes.append(
                {
                    "reason": "FieldValueForbidden",
                    "message": "Forbidden: field is immutable when `immutable` is set",
                    "field": key,
                }
            )
    if not new.get("immutable"):
        causes.append(
            {
                "reason": "FieldValueForbidden",
                "message": "Forbidden: field is immutable when `immutable` is set",
                "field": "immutable",
            }
        )
    if causes:
        raise invalid(kind, "", new["metadata"]["name"], causes)


_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_ENV_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")


def _c(reason: str, field: str, message: str) -> dict[str, str]:
    return {"reason": reason, "field": field, "message": message}


def validate_pod_spec(spec: dict[str, Any], path: str = "spec") -> list[dict[str, str]]:
    """The checks of the real server that an operator building pods is most likely to trip."""
    causes: list[dict[str, str]] = []
    volumes = spec.get("volumes") or []
    volume_names: set[str] = set()
    for i, vol in enumerate(volumes):
        name = vol.get("name", "") if isinstance(vol, dict) else ""
        if not name:
            causes.append(_c("FieldValueRequired", f"{path}.volumes[{i}].name", "Required value"))
        elif name in volume_names:
            causes.append(
                _c("FieldValueDuplicate", f"{path}.volumes[{i}].name", f'Duplicate value: "{name}"')
            )
        volume_names.add(name)
    restart = spec.get("restartPolicy", "Always")
    if restart not in ("Always", "OnFailure", "Never"):
        causes.append(
            _c(
                "FieldValueNotSupported",
                f"{path}.restartPolicy",
                f'Unsupported value: "{restart}": supported values: "Always", "OnFailure", "Never"',
            )
        )
    seen: set[str] = set()
    for key in ("initContainers", "containers"):
        for i, c in enumerate(spec.get(key) or []):
            where = f"{path}.{key}[{i}]"
            if not isinstance(c, dict):
                causes.append(_c("FieldValueTypeInvalid", where, "Invalid value: must be an object"))
                continue
            name = c.get("name", "")
            if not name:
                causes.append(_c("FieldValueRequired", f"{where}.name", "Required value"))
            elif not _DNS_LABEL.fullmatch(name) or len(name) > 63:
                causes.append(
                    _c(
                        "FieldValueInvalid",
                        f"{where}.name",
                        f'Invalid value: "{name}": a lowercase RFC 1123 label must consist of lower '
                        "case alphanumeric characters or '-', and must start and end with an alphanumeric "
                        "character",
                    )
                )
            elif name in seen:
                causes.append(_c("FieldValueDuplicate", f"{where}.name", f'Duplicate value: "{name}"'))
            seen.add(name)
            # No image check: images are ignored locally (the node agent runs commands), so local
            # pods may leave it out; a real cluster requires it on Pods (not on templates).
            if key == "initContainers" and c.get("restartPolicy") not in (None, "Always"):
                causes.append(
                    _c(
                        "FieldValueNotSupported",
                        f"{where}.restartPolicy",
                        f'Unsupported value: "{c["restartPolicy"]}": supported values: "Always"',
                    )
                )
            for j, env in enumerate(c.get("env") or []):
                env_name = env.get("name", "") if isinstance(env, dict) else ""
                if not env_name:
                    causes.append(_c("FieldValueRequired", f"{where}.env[{j}].name", "Required value"))
                elif not _ENV_NAME.fullmatch(env_name):
                    causes.append(
                        _c(
                            "FieldValueInvalid",
                            f"{where}.env[{j}].name",
                            f'Invalid value: "{env_name}": a valid environment variable name must consist '
                            "of alphabetic characters, digits, '_', '-', or '.', and must not start with a "
                            "digit",
                        )
                    )
            mount_paths: set[str] = set()
            for j, mount in enumerate(c.get("volumeMounts") or []):
                if not isinstance(mount, dict):
                    continue
                mname = mount.get("name", "")
                if mname not in volume_names:
                    causes.append(
                        _c("FieldValueNotFound", f"{where}.volumeMounts[{j}].name", f'Not found: "{mname}"')
                    )
                mpath = mount.get("mountPath", "")
                if not mpath:
                    causes.append(
                        _c("FieldValueRequired", f"{where}.volumeMounts[{j}].mountPath", "Required value")
                    )
                elif mpath in mount_paths:
                    causes.append(
                        _c(
                            "FieldValueInvalid",
                            f"{where}.volumeMounts[{j}].mountPath",
                            f'Invalid value: "{mpath}": must be unique',
                        )
                    )
                mount_paths.add(mpath)
            for j, port in enumerate(c.get("ports") or []):
                cp = port.get("containerPort") if isinstance(port, dict) else None
                if not isinstance(cp, int) or not 0 < cp < 65536:
                    causes.append(
                        _c(
                            "FieldValueInvalid" if cp is not None else "FieldValueRequired",
                            f"{where}.ports[{j}].containerPort",
                            f"Invalid value: {cp}: must be between 1 and 65535, inclusive"
                            if cp is not None
                            else "Required value",
                        )
                    )
    return causes


def validate_service(obj: Obj) -> list[dict[str, str]]:
    spec = obj.get("spec") or {}
    causes: list[dict[str, str]] = []
    ports = spec.get("ports") or []
    if not ports and spec.get("clusterIP") != "None" and spec.get("type", "ClusterIP") != "ExternalName":
        causes.append(_c("FieldValueRequired", "spec.ports", "Required value"))
    names: set[str] = set()
    for i, port in enumerate(ports):
        if not isinstance(port, dict):
            continue
        p = port.get("port")
        if not isinstance(p, int) or not 0 < p < 65536:
            causes.append(
                _c(
                    "FieldValueInvalid",
                    f"spec.ports[{i}].port",
                    f"Invalid value: {p}: must be between 1 and 65535, inclusive",
                )
            )
        name = port.get("name", "")
        if len(ports) > 1 and not name:
            causes.append(_c("FieldValueRequired", f"spec.ports[{i}].name", "Required value"))
        elif name and name in names:
            causes.append(_c("FieldValueDuplicate", f"spec.ports[{i}].name", f'Duplicate value: "{name}"'))
        names.add(name)
    return causes


class KindHooks:
    """Per-kind preparation for create and update, and a ClusterIP allocator. `pod_admission`
    (set by the server: priority and default tolerations, see admission.py) runs on every new pod."""

    def __init__(self, node_name: str) -> None:
        self.node_name = node_name
        self.pod_admission: Callable[[Obj], None] | None = None
        self._cluster_ips = ipaddress.ip_network("10.96.0.0/12")
        self._next_ip = 10

    # -- create ---------------------------------------------------------------
    def on_create(self, kind: str, group: str, obj: Obj, allocated_ips: set[str]) -> None:
        if group == "" and kind == "Pod":
            spec = obj.setdefault("spec", {})
            if not spec.get("containers"):
                raise invalid(
                    "Pod",
                    "",
                    obj["metadata"].get("name", ""),
                    [
                        {
                            "reason": "FieldValueRequired",
                            "message": "Required value",
                            "field": "spec.containers",
                        }
                    ],
                )
            if self.pod_admission is not None:
                self.pod_admission(obj)
            _pod_defaults(spec)
            causes = validate_pod_spec(spec)
            if causes:
                raise invalid("Pod", "", obj["metadata"].get("name", ""), causes)
            # spec.nodeName stays as given: the scheduler binds the pod (scheduler.py).
            status = obj.setdefault("status", {})
            status.setdefault("phase", "Pending")
            status.setdefault("qosClass", qos_class(spec))
        elif group == "" and kind == "Secret":
            self._secret(obj)
        elif group == "" and kind == "Service":
            causes = validate_service(obj)
            if causes:
                raise invalid("Service", "", obj["metadata"].get("name", ""), causes)
            self._service(obj, None, allocated_ips)
        elif group == "" and kind == "Namespace":
            obj.setdefault("spec", {})["finalizers"] = ["kubernetes"]
            obj["status"] = {"phase": "Active"}
            obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = obj["metadata"]["name"]
        elif group == "policy" and kind == "PodDisruptionBudget":
            # the status a new budget has until the disruption controller computes it (its
            # counts are not omitempty)
            obj["status"] = {
                "disruptionsAllowed": 0,
                "currentHealthy": 0,
                "desiredHealthy": 0,
                "expectedPods": 0,
            }
        elif group in ("apps", "batch"):
            _template_defaults(obj)
            template = (obj.get("spec") or {}).get("template")
            if isinstance(template, dict) and isinstance(template.get("spec"), dict):
                causes = validate_pod_spec(template["spec"], "spec.template.spec")
                if causes:
                    raise invalid(kind, group, obj["metadata"].get("name", ""), causes)
            spec = obj.get("spec")
            if isinstance(spec, dict) and kind in ("Deployment", "ReplicaSet", "StatefulSet"):
                spec.setdefault("replicas", 1)
                spec.setdefault("revisionHistoryLimit", 10)
            if kind == "CronJob" and isinstance(spec, dict):
                jt = spec.get("jobTemplate")
                if isinstance(jt, dict):
                    _template_defaults(jt)
        elif group == "" and kind == "ConfigMap":
            pass

    # -- update ---------------------------------------------------------------
    def on_update(self, kind: str, group: str, old: Obj, new: Obj, allocated_ips: set[str]) -> None:
        if group == "" and kind in ("Secret", "ConfigMap"):
            if kind == "Secret":
                self._secret(new)
            _check_immutable_data(kind, old, new)
        elif group == "" and kind == "Service":
            self._service(new, old, allocated_ips)
        elif group == "" and kind == "Pod":
            spec = new.setdefault("spec", {})
            old_spec = old.get("spec", {})
            if old_spec.get("nodeName") and not spec.get("nodeName"):
                spec["nodeName"] = old_spec["nodeName"]
            _pod_defaults(spec)
            _check_pod_update(old, new)
        elif group == "" and kind == "Namespace":
            new["spec"] = old.get("spec", {})
            new.setdefault("metadata", {}).setdefault("labels", {})["kubernetes.io/metadata.name"] = new[
                "metadata"
            ]["name"]
        elif group in ("apps", "batch"):
            _template_defaults(new)

    # -- helpers --------------------------------------------------------------
    @staticmethod
    def _secret(obj: Obj) -> None:
        string_data = obj.pop("stringData", None)
        if isinstance(string_data, dict):
            data = obj.setdefault("data", {}) or {}
            for key, value in string_data.items():
                data[key] = base64.b64encode(str(value).encode()).decode()
            obj["data"] = data
        obj.setdefault("type", "Opaque")

    def _allocate_ip(self, allocated: set[str]) -> str:
        while True:
            self._next_ip += 1
            ip = str(self._cluster_ips[self._next_ip])
            if ip not in allocated:
                return ip

    def _service(self, obj: Obj, old: Obj | None, allocated: set[str]) -> None:
        spec = obj.setdefault("spec", {})
        old_spec = (old or {}).get("spec", {})
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        if spec["type"] != "ExternalName":
            if not spec.get("clusterIP") and old_spec.get("clusterIP"):
                # the allocated address survives updates that do not mention it, as on a real cluster
                spec["clusterIP"] = old_spec["clusterIP"]
                spec.setdefault("clusterIPs", old_spec.get("clusterIPs", [old_spec["clusterIP"]]))
            if not spec.get("clusterIP"):
                spec["clusterIP"] = self._allocate_ip(allocated)
            spec.setdefault("clusterIPs", [spec["clusterIP"]])
            spec.setdefault("ipFamilies", ["IPv4"])
            spec.setdefault("ipFamilyPolicy", "SingleStack")
            spec.setdefault("internalTrafficPolicy", "Cluster")
        for port in spec.get("ports") or []:
            if isinstance(port, dict):
                port.setdefault("protocol", "TCP")
                if "port" in port:
                    port.setdefault("targetPort", port["port"])
        obj.setdefault("status", {}).setdefault("loadBalancer", {})
