"""The admission plugins a pod passes at creation that the scheduler and the node lifecycle
controller depend on:

- Priority: `spec.priorityClassName` resolved to `spec.priority` (and the class's
  `preemptionPolicy`); without a name, the `globalDefault` class or 0. An unknown name is
  refused (403, `no PriorityClass with name X was found`), as kube-apiserver does. The two
  built-in classes (`system-cluster-critical`, `system-node-critical`) always exist.
- DefaultTolerationSeconds: tolerations for `node.kubernetes.io/not-ready:NoExecute` and
  `node.kubernetes.io/unreachable:NoExecute` for `--default-toleration-seconds` (300) unless the
  pod tolerates them already.
"""

from __future__ import annotations

from typing import Any

from .errors import APIError
from .store import Store

Obj = dict[str, Any]
PC_STORAGE = ("scheduling.k8s.io", "priorityclasses")
NOT_READY_TAINT = "node.kubernetes.io/not-ready"
UNREACHABLE_TAINT = "node.kubernetes.io/unreachable"
DEFAULT_TOLERATION_SECONDS = 300
SYSTEM_CLASSES = {"system-cluster-critical": 2000000000, "system-node-critical": 2000001000}


class PodAdmission:
    def __init__(self, store: Store, default_toleration_seconds: int = DEFAULT_TOLERATION_SECONDS) -> None:
        self.store = store
        self.default_toleration_seconds = default_toleration_seconds

    def __call__(self, pod: Obj) -> None:
        self._priority(pod)
        self._default_tolerations(pod)

    def _priority(self, pod: Obj) -> None:
        spec = pod.setdefault("spec", {})
        name = spec.get("priorityClassName")
        if name:
            if name in SYSTEM_CLASSES:
                value, policy = SYSTEM_CLASSES[name], None
            else:
                pc = self.store.peek(PC_STORAGE, "", name)
                if pc is None:
                    pod_name = pod["metadata"].get("name") or pod["metadata"].get("generateName", "")
                    raise APIError(
                        403,
                        "Forbidden",
                        f'pods "{pod_name}" is forbidden: no PriorityClass with name {name} was found',
                        {"name": pod_name, "kind": "pods"},
                    )
                value, policy = int(pc.get("value") or 0), pc.get("preemptionPolicy")
        else:
            value, policy = 0, None
            for pc in self.store.objects.get(PC_STORAGE, {}).values():
                if pc.get("globalDefault"):
                    spec["priorityClassName"] = pc["metadata"]["name"]
                    value, policy = int(pc.get("value") or 0), pc.get("preemptionPolicy")
                    break
        spec["priority"] = value
        spec["preemptionPolicy"] = policy or spec.get("preemptionPolicy") or "PreemptLowerPriority"

    def _default_tolerations(self, pod: Obj) -> None:
        spec = pod.setdefault("spec", {})
        tolerations = list(spec.get("tolerations") or [])
        for key in (NOT_READY_TAINT, UNREACHABLE_TAINT):
            if any(
                (t.get("key") == key or (not t.get("key") and t.get("operator") == "Exists"))
                and t.get("effect") in ("NoExecute", "", None)
                for t in tolerations
            ):
                continue
            tolerations.append(
                {
                    "key": key,
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": self.default_toleration_seconds,
                }
            )
        spec["tolerations"] = tolerations
