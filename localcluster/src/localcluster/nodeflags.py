"""The node flags `python -m localcluster up` and `trainjob local up` share, and the
`node stop|start` command both offer (one definition, so the two CLIs cannot drift)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from localcluster.cluster import ClusterError, load_nodes_file, node_control, parse_capacity


def add_node_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("nodes")
    g.add_argument("--nodes", type=int, default=None, metavar="N", help="number of nodes (default: 1)")
    g.add_argument(
        "--node-capacity",
        default=None,
        metavar="LIST",
        help="every node's capacity, e.g. cpu=4,memory=8Gi,nvidia.com/gpu=1 "
        "(default: this machine's, at least 32 cpu and 64Gi)",
    )
    g.add_argument(
        "--nodes-file",
        type=Path,
        default=None,
        metavar="PATH",
        help="YAML `nodes: [{name, capacity, labels, taints}]` for nodes that differ",
    )
    g.add_argument(
        "--node-monitor-grace-seconds",
        type=float,
        default=None,
        metavar="S",
        help="a node silent this long becomes Unknown and unreachable (default: Kubernetes' 50)",
    )
    g.add_argument(
        "--default-toleration-seconds",
        type=int,
        default=None,
        metavar="S",
        help="how long pods tolerate an unreachable/not-ready node (default: Kubernetes' 300)",
    )
    g.add_argument(
        "--simulated-nodes",
        type=int,
        default=None,
        metavar="N",
        help="N more nodes sim-node-1..N whose pods go Running and exit 0 without a process (scale tests)",
    )
    g.add_argument(
        "--simulated-node-capacity",
        default=None,
        metavar="LIST",
        help="each simulated node's capacity (default: cpu=32,memory=256Gi,pods=110)",
    )
    g.add_argument(
        "--simulated-pod-duration",
        type=float,
        default=None,
        metavar="S",
        help="seconds a simulated pod runs before exiting 0, unless its annotation "
        "localcluster.io/simulated-duration says (default: 10)",
    )


def node_options(a: argparse.Namespace) -> dict[str, Any]:
    """LocalCluster keyword arguments from the flags; ClusterError on bad input."""
    opts: dict[str, Any] = {}
    if a.nodes_file is not None:
        specs = load_nodes_file(a.nodes_file)
        if a.nodes is not None and a.nodes != len(specs):
            raise ClusterError(f"--nodes {a.nodes} but {a.nodes_file} names {len(specs)} nodes")
        opts["node_specs"] = specs
    elif a.nodes is not None:
        if a.nodes < 1:
            raise ClusterError(f"--nodes must be at least 1 (got {a.nodes})")
        opts["nodes"] = a.nodes
    if a.node_capacity:
        opts["node_capacity"] = parse_capacity(a.node_capacity)
    if a.node_monitor_grace_seconds is not None:
        if a.node_monitor_grace_seconds <= 0:
            raise ClusterError("--node-monitor-grace-seconds must be positive")
        opts["node_monitor_grace_seconds"] = a.node_monitor_grace_seconds
    if a.default_toleration_seconds is not None:
        if a.default_toleration_seconds < 0:
            raise ClusterError("--default-toleration-seconds must not be negative")
        opts["default_toleration_seconds"] = a.default_toleration_seconds
    if a.simulated_nodes is not None:
        if a.simulated_nodes < 0:
            raise ClusterError(f"--simulated-nodes must not be negative (got {a.simulated_nodes})")
        opts["simulated_nodes"] = a.simulated_nodes
    if a.simulated_node_capacity:
        opts["simulated_node_capacity"] = parse_capacity(a.simulated_node_capacity)
    if a.simulated_pod_duration is not None:
        if a.simulated_pod_duration < 0:
            raise ClusterError("--simulated-pod-duration must not be negative")
        opts["simulated_pod_duration"] = a.simulated_pod_duration
    return opts


def add_node_command(
    sub: argparse._SubParsersAction[Any], dir_default: Path, cluster_dir: Callable[[Path], Path]
) -> None:
    node = sub.add_parser("node", help="stop (lose) or start a node of the running cluster")
    actions = node.add_subparsers(dest="node_action", required=True, metavar="ACTION")
    for action, help_text in (
        ("stop", "stop a node's heartbeats; its pods' processes die unless --keep-processes"),
        ("start", "bring a stopped node back"),
    ):
        s = actions.add_parser(action, help=help_text)
        s.add_argument("name", help="the node's name (kubectl get nodes)")
        s.add_argument("--dir", type=Path, default=dir_default, help="state directory (default: %(default)s)")
        if action == "stop":
            s.add_argument(
                "--keep-processes",
                action="store_true",
                help="leave its pods' processes running (a network partition, not a crash)",
            )
        s.set_defaults(node_cluster_dir=cluster_dir)


def run_node_command(a: argparse.Namespace) -> int:
    import sys

    directory = a.node_cluster_dir(a.dir.resolve())
    try:
        node_control(directory, a.name, a.node_action, keep_processes=getattr(a, "keep_processes", False))
    except ClusterError as e:
        print(f"node {a.node_action} {a.name}: {e}", file=sys.stderr)
        return 1
    if a.node_action == "stop":
        what = "processes keep running" if a.keep_processes else "its pods' processes were killed"
        print(f"node {a.name} stopped ({what})")
    else:
        print(f"node {a.name} started")
    return 0
