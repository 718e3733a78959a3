"""How many workers of an elastic gang fit the cluster (README.md, "Elastic gangs"). Pure.

The operator sees the Nodes (a cluster-wide install watches them) but not every other workload's
pods, so "what fits" is judged the way the scheduler filters a node, from what the Node says:

- a node counts only if it is Ready, not cordoned (`spec.unschedulable`), its labels match the
  template's `nodeSelector`, and the template tolerates its `NoSchedule`/`NoExecute` taints;
- such a node holds `floor(allocatable / request)` workers for the most constraining resource the
  worker pod requests (its containers' requests summed, an init container's if larger), and at
  most `allocatable.pods` pods; a pod that requests nothing fits any such node without bound;
- the gang fits the sum over nodes, at most spec.workers.

Other workloads' requests are not subtracted (the operator does not watch their pods), nor the
coordinator sidecar's on rank 0, so the estimate can be optimistic. That is safe: an attempt whose
pods then stay unschedulable past the grace shrinks to the pods the scheduler did place, which
is what fits by the scheduler's own judgement.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from kubernetes.utils.quantity import parse_quantity

from .observation import NodeObservation, NodeReadiness

_HARD_EFFECTS = frozenset({"NoSchedule", "NoExecute"})


def pod_requests(template: Mapping[str, Any]) -> dict[str, Decimal]:
    """What one worker pod asks the scheduler for, as the scheduler adds it up: the containers'
    requests summed, raised to any init container's that asks for more."""
    spec = template.get("spec") or {}
    total: dict[str, Decimal] = {}
    for container in spec.get("containers") or []:
        for name, amount in _requests_of(container).items():
            total[name] = total.get(name, Decimal(0)) + amount
    for container in spec.get("initContainers") or []:
        for name, amount in _requests_of(container).items():
            total[name] = max(total.get(name, Decimal(0)), amount)
    return {name: amount for name, amount in total.items() if amount > 0}


def _quantity(text: Any) -> Decimal:
    """A Kubernetes quantity ("500m", "1Gi") as a number; raises ValueError when it is none."""
    return Decimal(parse_quantity(text))


def _requests_of(container: Any) -> dict[str, Decimal]:
    if not isinstance(container, dict):
        return {}
    resources = container.get("resources") or {}
    # A resource with a limit and no request requests its limit (the API server's defaulting).
    limits, asked = resources.get("limits"), resources.get("requests")
    requests = {**(limits if isinstance(limits, dict) else {}), **(asked if isinstance(asked, dict) else {})}
    parsed: dict[str, Decimal] = {}
    for name, text in requests.items():
        try:
            parsed[str(name)] = _quantity(text)
        except (ValueError, TypeError, InvalidOperation):
            continue  # the API server refuses such a pod; the attempt says so
    return parsed


def _tolerated(taint: Mapping[str, Any], tolerations: Iterable[Any]) -> bool:
    for toleration in tolerations:
        if not isinstance(toleration, dict):
            continue
        effect = toleration.get("effect")
        if effect and effect != taint.get("effect"):
            continue
        key = toleration.get("key")
        if toleration.get("operator") == "Exists":
            if not key or key == taint.get("key"):
                return True
        elif key == taint.get("key") and (toleration.get("value") or "") == (taint.get("value") or ""):
            return True
    return False


def node_admits(node: NodeObservation, template: Mapping[str, Any]) -> bool:
    """Whether the scheduler could place a worker pod on the node at all (capacity aside)."""
    if node.ready is not NodeReadiness.TRUE or node.unschedulable:
        return False
    spec = template.get("spec") or {}
    selector = spec.get("nodeSelector") or {}
    if any(node.labels.get(str(key)) != str(value) for key, value in selector.items()):
        return False
    tolerations = spec.get("tolerations") or []
    return all(
        taint.get("effect") not in _HARD_EFFECTS or _tolerated(taint, tolerations) for taint in node.taints
    )


def workers_on(node: NodeObservation, requests: Mapping[str, Decimal], most: int) -> int:
    """How many worker pods the node holds by its allocatable amounts (at most `most`)."""
    room = most
    pods = node.allocatable.get("pods")
    if pods is not None:
        room = min(room, _count(pods, Decimal(1)))
    for name, amount in requests.items():
        room = min(room, _count(node.allocatable.get(name, "0"), amount))
    return max(room, 0)


def _count(allocatable: str, request: Decimal) -> int:
    try:
        return int(_quantity(allocatable) // request)
    except (ValueError, TypeError, InvalidOperation):
        return 0


def workers_that_fit(template: Mapping[str, Any], nodes: Iterable[NodeObservation], most: int) -> int | None:
    """The largest gang (at most `most`) that the nodes hold, or None when no node is known (the
    operator does not watch Nodes): then nothing can be judged."""
    known = list(nodes)
    if not known:
        return None
    requests = pod_requests(template)
    fit = sum(workers_on(node, requests, most) for node in known if node_admits(node, template))
    return min(fit, most)
