"""Events and status writes of the in-process control plane (scheduler, node lifecycle
controller): core/v1 Events as client-go's recorder writes them, with a repeat of the same
event counted on the existing one (as its event correlator does) instead of a new object."""

from __future__ import annotations

import contextlib
import copy
import hashlib
import logging
from collections.abc import Callable
from typing import Any

from .errors import APIError
from .objects import ObjectAPI, WriteOptions, now_rfc3339

log = logging.getLogger(__name__)
Obj = dict[str, Any]


class Recorder:
    def __init__(self, api: ObjectAPI, component: str) -> None:
        self.api = api
        self.component = component

    def event(self, obj: Obj, type_: str, reason: str, message: str) -> None:
        info = self.api.registry.get("", "v1", "events")
        if info is None:
            return
        meta = obj["metadata"]
        namespace = meta.get("namespace") or "default"
        digest = hashlib.sha1(  # noqa: S324 - a name, not security
            f"{meta.get('uid')}/{reason}/{message}".encode()
        ).hexdigest()[:10]
        name = f"{meta['name']}.{digest}"
        now = now_rfc3339()
        current = self.api.store.peek(("", "events"), namespace, name)  # read; the write copies it
        with contextlib.suppress(APIError):
            if current is not None:
                new = copy.deepcopy(current)
                new["count"] = int(current.get("count") or 1) + 1
                new["lastTimestamp"] = now
                self.api.commit(
                    info, current, new, WriteOptions(field_manager=self.component), self.component, ""
                )
                return
            kind = "Pod" if "containers" in (obj.get("spec") or {}) else "Node"
            body = {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": name, "namespace": namespace},
                "involvedObject": {
                    "kind": kind,
                    "apiVersion": "v1",
                    "name": meta["name"],
                    **({"namespace": meta["namespace"]} if meta.get("namespace") else {}),
                    "uid": meta.get("uid", ""),
                    "resourceVersion": meta.get("resourceVersion", ""),
                },
                "reason": reason,
                "message": message,
                "type": type_,
                "source": {"component": self.component},
                "reportingComponent": self.component,
                "reportingInstance": "",
                "firstTimestamp": now,
                "lastTimestamp": now,
                "count": 1,
            }
            self.api.create(info, namespace, body, WriteOptions(field_manager=self.component))

    def update(
        self, storage: tuple[str, str], obj: Obj, change: Callable[[Obj], None], subresource: str = ""
    ) -> Obj | None:
        """Apply `change` to the current stored object and commit it; None when it is gone."""
        info = self.api.registry.for_storage(storage)
        meta = obj["metadata"]
        current = self.api.store.peek(storage, meta.get("namespace", ""), meta["name"])  # copied below
        if info is None or current is None or current["metadata"].get("uid") != meta.get("uid"):
            return None
        new = copy.deepcopy(current)
        change(new)
        try:
            return self.api.commit(
                info, current, new, WriteOptions(field_manager=self.component), self.component, subresource
            )
        except APIError as e:
            log.warning("%s: update of %s failed: %s", self.component, meta["name"], e)
            return None


def set_condition(obj: Obj, cond: Obj) -> None:
    """Set a status condition; lastTransitionTime moves only when its status flips."""
    conds = obj.setdefault("status", {}).setdefault("conditions", [])
    for i, c in enumerate(conds):
        if c.get("type") == cond["type"]:
            if c.get("status") == cond["status"]:
                cond = {
                    **cond,
                    "lastTransitionTime": c.get("lastTransitionTime") or cond.get("lastTransitionTime"),
                }
            conds[i] = {**c, **cond}
            return
    conds.append(cond)


def condition(obj: Obj, ctype: str) -> Obj | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype:
            return dict(c)
    return None
