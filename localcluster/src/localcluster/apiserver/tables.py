"""`meta.k8s.io/v1` Table output (what `kubectl get` asks for): CRD printer columns evaluated
with JSONPath, and columns like the real server's for common built-in kinds."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from .resources import ResourceInfo

Obj = dict[str, Any]
Column = dict[str, Any]


def human_duration(seconds: float) -> str:
    """Kubernetes' short human duration (`duration.HumanDuration`)."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        rem = s % 60
        return f"{minutes}m{rem}s" if rem else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        rem = minutes % 60
        return f"{hours}h{rem}m" if rem else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rem = hours % 24
        return f"{hours // 24}d{rem}h" if rem else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = hours // 24
        rem = days % 365
        return f"{days // 365}y{rem}d" if rem else f"{days // 365}y"
    return f"{hours // 24 // 365}y"


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def age(value: Any) -> str:
    t = parse_time(value)
    if t is None:
        return "<unknown>"
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return human_duration((datetime.now(UTC) - t).total_seconds())


# -- JSONPath (the subset printer columns use) ------------------------------------------

_TOKEN = re.compile(r"\.\.?([A-Za-z0-9_\-]+|\*)|\[(\d+|\*|'[^']*'|\"[^\"]*\"|\?\(.+?\))\]|\.(?=\[)")


def jsonpath(obj: Any, expr: str) -> list[Any]:
    """Evaluate `.a.b[0].c`, `[*]`, `['key.with.dots']` and `[?(@.type=="Ready")]`."""
    expr = expr.strip()
    if expr.startswith("{") and expr.endswith("}"):
        expr = expr[1:-1]
    if expr.startswith("$"):
        expr = expr[1:]
    current = [obj]
    pos = 0
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if not m:
            return []
        pos = m.end()
        name, bracket = m.group(1), m.group(2)
        nxt: list[Any] = []
        if name is not None:
            for c in current:
                if name == "*":
                    if isinstance(c, dict):
                        nxt.extend(c.values())
                    elif isinstance(c, list):
                        nxt.extend(c)
                elif isinstance(c, dict) and name in c:
                    nxt.append(c[name])
        elif bracket is not None:
            for c in current:
                if bracket == "*":
                    if isinstance(c, list):
                        nxt.extend(c)
                    elif isinstance(c, dict):
                        nxt.extend(c.values())
                elif bracket.isdigit():
                    if isinstance(c, list) and int(bracket) < len(c):
                        nxt.append(c[int(bracket)])
                elif bracket[0] in "'\"":
                    if isinstance(c, dict) and bracket[1:-1] in c:
                        nxt.append(c[bracket[1:-1]])
                elif bracket.startswith("?(") and isinstance(c, list):
                    nxt.extend(i for i in c if _filter(i, bracket[2:-1]))
        else:
            continue
        current = nxt
    return current


def _filter(item: Any, cond: str) -> bool:
    m = re.fullmatch(r"\s*@((?:\.[A-Za-z0-9_\-]+)+)\s*(==|!=)\s*(['\"])(.*)\3\s*", cond)
    if not m:
        m2 = re.fullmatch(r"\s*@((?:\.[A-Za-z0-9_\-]+)+)\s*", cond)
        return bool(m2 and jsonpath(item, m2.group(1)))
    values = jsonpath(item, m.group(1))
    found = bool(values) and str(values[0]) == m.group(4)
    return found if m.group(2) == "==" else not found


# -- columns ------------------------------------------------------------------------


def _col(name: str, type_: str = "string", description: str = "", priority: int = 0, fmt: str = "") -> Column:
    return {"name": name, "type": type_, "format": fmt, "description": description, "priority": priority}


NAME = _col("Name", fmt="name", description="Name must be unique within a namespace.")
AGE = _col(
    "Age",
    description="CreationTimestamp is a timestamp representing the server time when this object was created.",
)


def _pod_row(p: Obj) -> list[Any]:
    spec = p.get("spec") or {}
    status = p.get("status") or {}
    containers = spec.get("containers") or []
    statuses = status.get("containerStatuses") or []
    ready = sum(1 for s in statuses if s.get("ready"))
    restarts = sum(int(s.get("restartCount") or 0) for s in statuses)
    reason = status.get("reason") or status.get("phase") or "Pending"
    if any(
        c.get("type") == "PodScheduled" and c.get("reason") == "SchedulingGated"
        for c in status.get("conditions") or []
    ):
        reason = "SchedulingGated"  # as kubectl's pod printer shows a gated pod
    for s in statuses:
        state = s.get("state") or {}
        if state.get("waiting", {}).get("reason"):
            reason = state["waiting"]["reason"]
        elif state.get("terminated"):
            term = state["terminated"]
            reason = term.get("reason") or (
                f"Signal:{term['signal']}" if term.get("signal") else f"ExitCode:{term.get('exitCode', 0)}"
            )
    if status.get("phase") == "Succeeded" and reason in ("Succeeded", "Completed"):
        reason = "Completed"
    if p["metadata"].get("deletionTimestamp"):
        reason = "Terminating"
    pod_ip = status.get("podIP") or "<none>"
    return [
        p["metadata"]["name"],
        f"{ready}/{len(containers)}",
        reason,
        str(restarts),
        age(p["metadata"].get("creationTimestamp")),
        pod_ip,
        spec.get("nodeName") or "<none>",
        "<none>",
        "<none>",
    ]


def _service_row(s: Obj) -> list[Any]:
    spec = s.get("spec") or {}
    ports = ",".join(
        f"{p.get('port')}{'/' + str(p['nodePort']) if p.get('nodePort') else ''}/{p.get('protocol', 'TCP')}"
        for p in spec.get("ports") or []
    )
    return [
        s["metadata"]["name"],
        spec.get("type", "ClusterIP"),
        spec.get("clusterIP") or "<none>",
        ",".join(spec.get("externalIPs") or []) or "<none>",
        ports or "<none>",
        age(s["metadata"].get("creationTimestamp")),
        ",".join(f"{k}={v}" for k, v in (spec.get("selector") or {}).items()) or "<none>",
    ]


def _event_row(e: Obj) -> list[Any]:
    inv = e.get("involvedObject") or e.get("regarding") or {}
    last = e.get("lastTimestamp") or e.get("eventTime") or e["metadata"].get("creationTimestamp")
    return [
        age(last),
        e.get("type", ""),
        e.get("reason", ""),
        f"{str(inv.get('kind', '')).lower()}/{inv.get('name', '')}",
        e.get("message") or e.get("note") or "",
    ]


def _node_row(n: Obj) -> list[Any]:
    conds = (n.get("status") or {}).get("conditions") or []
    ready = next((c for c in conds if c.get("type") == "Ready"), None)
    status = "Ready" if ready and ready.get("status") == "True" else "NotReady" if ready else "Unknown"
    roles = sorted(
        k.split("/", 1)[1]
        for k in (n["metadata"].get("labels") or {})
        if k.startswith("node-role.kubernetes.io/")
    )
    version = ((n.get("status") or {}).get("nodeInfo") or {}).get("kubeletVersion", "")
    return [
        n["metadata"]["name"],
        status,
        ",".join(roles) or "<none>",
        age(n["metadata"].get("creationTimestamp")),
        version,
    ]


def _deploy_row(d: Obj) -> list[Any]:
    spec = d.get("spec") or {}
    st = d.get("status") or {}
    return [
        d["metadata"]["name"],
        f"{st.get('readyReplicas', 0)}/{spec.get('replicas', 1)}",
        st.get("updatedReplicas", 0),
        st.get("availableReplicas", 0),
        age(d["metadata"].get("creationTimestamp")),
    ]


BUILTIN_TABLES: dict[tuple[str, str], tuple[list[Column], Callable[[Obj], list[Any]]]] = {
    ("", "pods"): (
        [
            NAME,
            _col("Ready", description="The aggregate readiness state of this pod for accepting traffic."),
            _col("Status", description="The aggregate status of the containers in this pod."),
            _col(
                "Restarts", description="The number of times the containers in this pod have been restarted."
            ),
            AGE,
            _col("IP", priority=1, description="IP address allocated to the pod."),
            _col("Node", priority=1, description="Name of the Node this pod is bound to."),
            _col("Nominated Node", priority=1, description="Nominated node."),
            _col("Readiness Gates", priority=1, description="Readiness gates."),
        ],
        _pod_row,
    ),
    ("", "services"): (
        [
            NAME,
            _col("Type"),
            _col("Cluster-IP"),
            _col("External-IP"),
            _col("Port(s)"),
            AGE,
            _col("Selector", priority=1),
        ],
        _service_row,
    ),
    ("", "namespaces"): (
        [NAME, _col("Status"), AGE],
        lambda o: [
            o["metadata"]["name"],
            (o.get("status") or {}).get("phase", "Active"),
            age(o["metadata"].get("creationTimestamp")),
        ],
    ),
    ("", "configmaps"): (
        [NAME, _col("Data", "integer"), AGE],
        lambda o: [
            o["metadata"]["name"],
            len(o.get("data") or {}) + len(o.get("binaryData") or {}),
            age(o["metadata"].get("creationTimestamp")),
        ],
    ),
    ("", "secrets"): (
        [NAME, _col("Type"), _col("Data", "integer"), AGE],
        lambda o: [
            o["metadata"]["name"],
            o.get("type", "Opaque"),
            len(o.get("data") or {}),
            age(o["metadata"].get("creationTimestamp")),
        ],
    ),
    ("", "serviceaccounts"): (
        [NAME, _col("Secrets", "integer"), AGE],
        lambda o: [
            o["metadata"]["name"],
            len(o.get("secrets") or []),
            age(o["metadata"].get("creationTimestamp")),
        ],
    ),
    ("", "events"): (
        [_col("Last Seen"), _col("Type"), _col("Reason"), _col("Object"), _col("Message")],
        _event_row,
    ),
    ("", "nodes"): ([NAME, _col("Status"), _col("Roles"), AGE, _col("Version")], _node_row),
    ("apps", "deployments"): (
        [NAME, _col("Ready"), _col("Up-to-date", "integer"), _col("Available", "integer"), AGE],
        _deploy_row,
    ),
    ("apiextensions.k8s.io", "customresourcedefinitions"): (
        [NAME, _col("Created At", "date")],
        lambda o: [o["metadata"]["name"], o["metadata"].get("creationTimestamp", "")],
    ),
    ("coordination.k8s.io", "leases"): (
        [NAME, _col("Holder"), AGE],
        lambda o: [
            o["metadata"]["name"],
            (o.get("spec") or {}).get("holderIdentity", ""),
            age(o["metadata"].get("creationTimestamp")),
        ],
    ),
}


def _cell(value: list[Any], col: dict[str, Any]) -> Any:
    if not value:
        return None
    typ = col.get("type", "string")
    if typ == "date":
        return age(value[0]) if parse_time(value[0]) else value[0]
    if len(value) == 1:
        v = value[0]
        if typ == "integer" and isinstance(v, int | float) and not isinstance(v, bool):
            return int(v)
        if typ == "number" and isinstance(v, int | float):
            return v
        if typ == "boolean" and isinstance(v, bool):
            return v
        if isinstance(v, dict | list):
            return json.dumps(v, separators=(",", ":"))
        return v if typ == "string" and isinstance(v, str) else str(v) if typ == "string" else v
    return ",".join(v if isinstance(v, str) else json.dumps(v) for v in value)


def columns_and_rower(info: ResourceInfo) -> tuple[list[Column], Callable[[Obj], list[Any]]]:
    if not info.builtin:
        cols = info.printer_columns or [
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
        ]
        defs = [NAME] + [
            _col(
                c["name"],
                c.get("type", "string"),
                c.get("description", ""),
                c.get("priority", 0),
                c.get("format", ""),
            )
            for c in cols
        ]

        def rower(o: Obj) -> list[Any]:
            return [o["metadata"]["name"]] + [_cell(jsonpath(o, c.get("jsonPath", "")), c) for c in cols]

        return defs, rower
    if info.storage in BUILTIN_TABLES:
        return BUILTIN_TABLES[info.storage]
    if info.namespaced:
        return [NAME, AGE], lambda o: [o["metadata"]["name"], age(o["metadata"].get("creationTimestamp"))]
    return [NAME, _col("Created At", "date")], lambda o: [
        o["metadata"]["name"],
        o["metadata"].get("creationTimestamp", ""),
    ]


def to_table(
    info: ResourceInfo, objects: list[Obj], include_object: str, list_meta: dict[str, Any] | None = None
) -> Obj:
    cols, rower = columns_and_rower(info)
    rows = []
    for o in objects:
        row: dict[str, Any] = {"cells": rower(o)}
        if include_object == "Object":
            row["object"] = o
        elif include_object != "None":
            row["object"] = {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": o.get("metadata", {}),
            }
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta or {},
        "columnDefinitions": cols,
        "rows": rows,
    }
