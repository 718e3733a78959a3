"""DELETE: preconditions, grace periods (pods), finalizers and propagation policies (orphan,
foreground, background), namespaces and CRDs that terminate, and what the answer is for each
kind (the object or a Status)."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from .errors import conflict, not_found, status_details
from .objects import (
    CRD_CLEANUP,
    CRD_STORAGE,
    NODE_STORAGE,
    NS_STORAGE,
    POD_STORAGE,
    ObjectAPI,
    now_rfc3339,
)
from .resources import ResourceInfo
from .store import Obj

# Kinds whose DELETE answers the deleted object rather than a Status: the registries that set
# `ReturnDeletedObject: true` in Kubernetes (pkg/registry/*/storage), the namespace registry (its
# own Delete) and custom resources (apiextensions-apiserver's customresource store). Others
# answer a Success Status, unless the object is only marked for deletion (a grace period,
# finalizers): then every kind answers the object as it now is.
RETURNS_DELETED = {
    ("", "pods"),
    ("", "services"),
    ("", "serviceaccounts"),
    ("", "persistentvolumes"),
    ("", "persistentvolumeclaims"),
    ("", "namespaces"),
    ("apiextensions.k8s.io", "customresourcedefinitions"),
    ("storage.k8s.io", "storageclasses"),
}


@dataclass
class DeleteOptions:
    grace_period: int | None = None
    propagation: str | None = None
    precondition_uid: str | None = None
    precondition_rv: str | None = None
    dry_run: bool = False


def delete(api: ObjectAPI, info: ResourceInfo, namespace: str, name: str, d: DeleteOptions) -> Obj:
    """Returns the object (still there, or as last seen) or a success Status."""
    ns = namespace if info.namespaced else ""
    obj = api.store.peek(info.storage, ns, name)  # read only: the write below copies it
    if obj is None:
        raise not_found(info.resource, info.group, name)
    meta = obj["metadata"]
    if d.precondition_uid and d.precondition_uid != meta.get("uid"):
        raise conflict(
            info.resource,
            info.group,
            name,
            f"Precondition failed: UID in precondition: {d.precondition_uid}, "
            f"UID in object meta: {meta.get('uid')}",
        )
    if d.precondition_rv and d.precondition_rv != meta.get("resourceVersion"):
        raise conflict(
            info.resource,
            info.group,
            name,
            "Precondition failed: ResourceVersion in precondition: "
            f"{d.precondition_rv}, ResourceVersion in object meta: {meta.get('resourceVersion')}",
        )
    finalizers = list(meta.get("finalizers") or [])
    propagation = d.propagation
    if propagation == "Orphan" and "orphan" not in finalizers:
        finalizers.append("orphan")
    elif propagation == "Foreground" and "foregroundDeletion" not in finalizers:
        finalizers.append("foregroundDeletion")
    if propagation in ("Foreground", "Background"):
        finalizers = [f for f in finalizers if f != "orphan"]
    if propagation in ("Orphan", "Background"):
        finalizers = [f for f in finalizers if f != "foregroundDeletion"]
    if info.storage == CRD_STORAGE and CRD_CLEANUP not in finalizers and _crd_has_objects(api, obj):
        finalizers.append(CRD_CLEANUP)
    grace = _grace(api, info, obj, d)
    is_ns = info.storage == NS_STORAGE
    if grace > 0 or finalizers or is_ns:
        new = copy.deepcopy(obj)
        nm = new["metadata"]
        now = datetime.now(UTC)
        if grace > 0:
            previous = nm.get("deletionGracePeriodSeconds")
            if nm.get("deletionTimestamp") and previous is not None and previous <= grace:
                return api.output(info, obj)
            nm["deletionTimestamp"] = (now + timedelta(seconds=grace)).strftime("%Y-%m-%dT%H:%M:%SZ")
            nm["deletionGracePeriodSeconds"] = grace
        elif not nm.get("deletionTimestamp"):
            nm["deletionTimestamp"] = now.strftime("%Y-%m-%dT%H:%M:%SZ")
            nm["deletionGracePeriodSeconds"] = 0
        elif grace == 0 and nm.get("deletionGracePeriodSeconds"):
            nm["deletionGracePeriodSeconds"] = 0
        if finalizers:
            nm["finalizers"] = finalizers
        if is_ns:
            new.setdefault("status", {})["phase"] = "Terminating"
        if info.storage == CRD_STORAGE:
            conds = new.setdefault("status", {}).setdefault("conditions", [])
            if not any(c.get("type") == "Terminating" for c in conds):
                conds.append(
                    {
                        "type": "Terminating",
                        "status": "True",
                        "lastTransitionTime": now_rfc3339(),
                        "reason": "InstanceDeletionInProgress",
                        "message": "CustomResource deletion is in progress",
                    }
                )
        blocked = grace > 0 or api.blocked(info, new)
        if blocked:
            if d.dry_run:
                return api.output(info, new)
            if api.same(obj, new):
                return api.output(info, obj)
            stored = api.put(info.storage, new)
            return api.output(info, stored)
    if d.dry_run:
        return api.output(info, obj)
    gone = api.remove(info.storage, ns, name)
    if info.storage in RETURNS_DELETED or not info.builtin:
        return api.output(info, gone or obj)
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": status_details(
            {"name": name, "group": info.group, "kind": info.resource, "uid": meta.get("uid")}
        ),
    }


def _grace(api: ObjectAPI, info: ResourceInfo, obj: Obj, d: DeleteOptions) -> int:
    if info.storage != POD_STORAGE:
        return 0
    spec = obj.get("spec") or {}
    if d.grace_period is not None:
        grace = max(0, d.grace_period)
    else:
        grace = int(spec.get("terminationGracePeriodSeconds", 30) or 0)
    if (obj.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return 0
    node = spec.get("nodeName")
    # No node agent to stop the containers (no Node object): nothing to wait for, as the pod
    # garbage collector would eventually decide for pods bound to a vanished node.
    if not node or api.store.peek(NODE_STORAGE, "", node) is None:
        return 0
    return grace


def _crd_has_objects(api: ObjectAPI, crd: Obj) -> bool:
    spec = crd.get("spec") or {}
    storage = (spec.get("group", ""), (spec.get("names") or {}).get("plural", ""))
    return bool(api.store.objects.get(storage))
