"""CustomResourceDefinitions: checking them, and the resources each one serves."""

from __future__ import annotations

from typing import Any

from .errors import invalid
from .resources import ResourceInfo

Obj = dict[str, Any]


def prepare_crd(crd: Obj) -> None:
    """Defaults and checks a CRD as the real server does, raising 422 Invalid; sets its status."""
    name = crd["metadata"].get("name", "")
    spec = crd.setdefault("spec", {})
    names = spec.setdefault("names", {})
    causes: list[dict[str, str]] = []
    group = spec.get("group", "")
    if not group:
        causes.append({"reason": "FieldValueRequired", "message": "Required value", "field": "spec.group"})
    elif "." not in group:
        causes.append(
            {
                "reason": "FieldValueInvalid",
                "message": f'Invalid value: "{group}": should be a domain with at least one dot',
                "field": "spec.group",
            }
        )
    for key in ("plural", "kind"):
        if not names.get(key):
            causes.append(
                {"reason": "FieldValueRequired", "message": "Required value", "field": f"spec.names.{key}"}
            )
    if names.get("plural") and group and name != f"{names['plural']}.{group}":
        causes.append(
            {
                "reason": "FieldValueInvalid",
                "message": f'Invalid value: "{name}": must be spec.names.plural+"."+spec.group',
                "field": "metadata.name",
            }
        )
    if spec.get("scope") not in ("Namespaced", "Cluster"):
        causes.append(
            {
                "reason": "FieldValueNotSupported",
                "message": f'Unsupported value: "{spec.get("scope", "")}": '
                'supported values: "Cluster", "Namespaced"',
                "field": "spec.scope",
            }
        )
    versions = spec.get("versions") or []
    if not versions:
        causes.append({"reason": "FieldValueRequired", "message": "Required value", "field": "spec.versions"})
    elif (storage_count := sum(1 for v in versions if v.get("storage"))) != 1:
        causes.append(
            {
                "reason": "FieldValueInvalid",
                "message": f"Invalid value: {storage_count}: must have exactly one version marked as "
                "storage version",
                "field": "spec.versions",
            }
        )
    if causes:
        raise invalid("CustomResourceDefinition", "apiextensions.k8s.io", name, causes)
    if names.get("kind"):
        names.setdefault("singular", names["kind"].lower())
        names.setdefault("listKind", names["kind"] + "List")
    spec.setdefault("conversion", {"strategy": "None"})
    for v in versions:
        v.setdefault("served", True)
        v.setdefault("storage", False)


def crd_status(crd: Obj, now: str, old_status: Obj | None) -> Obj:
    """Established and NamesAccepted at once: there is no controller to wait for."""
    spec = crd["spec"]
    storage = [v["name"] for v in spec.get("versions", []) if v.get("storage")]
    stored = list((old_status or {}).get("storedVersions") or [])
    for v in storage:
        if v not in stored:
            stored.append(v)
    old_conditions = {c.get("type"): c for c in (old_status or {}).get("conditions") or []}

    def cond(ctype: str, reason: str, message: str) -> Obj:
        prev = old_conditions.get(ctype)
        return {
            "type": ctype,
            "status": "True",
            "lastTransitionTime": prev["lastTransitionTime"]
            if prev and prev.get("status") == "True"
            else now,
            "reason": reason,
            "message": message,
        }

    return {
        "acceptedNames": {k: v for k, v in spec["names"].items()},
        "conditions": [
            cond("NamesAccepted", "NoConflicts", "no conflicts found"),
            cond("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        ],
        "storedVersions": stored,
    }


def resources_for_crd(crd: Obj) -> list[ResourceInfo]:
    spec = crd["spec"]
    names = spec["names"]
    group = spec["group"]
    out: list[ResourceInfo] = []
    for v in spec.get("versions", []):
        if not v.get("served", True):
            continue
        sub = v.get("subresources") or {}
        subresources: dict[str, str] = {}
        if "status" in sub:
            subresources["status"] = ""
        if "scale" in sub:
            subresources["scale"] = "Scale"
        schema = (v.get("schema") or {}).get("openAPIV3Schema")
        out.append(
            ResourceInfo(
                group=group,
                version=v["name"],
                resource=names["plural"],
                kind=names["kind"],
                namespaced=spec.get("scope") == "Namespaced",
                singular=names.get("singular", names["kind"].lower()),
                short_names=list(names.get("shortNames") or []),
                categories=list(names.get("categories") or []),
                subresources=subresources,
                storage=(group, names["plural"]),
                builtin=False,
                schema=schema,
                printer_columns=list(v.get("additionalPrinterColumns") or []),
                scale=sub.get("scale"),
                crd_name=crd["metadata"]["name"],
                storage_version=bool(v.get("storage")),
            )
        )
    return out
