"""`python -m localcluster.node`: run the node agents (one or several nodes) against an API
server's kubeconfig.

    python -m localcluster.node --kubeconfig PATH [--node-name localnode]
    python -m localcluster.node --kubeconfig PATH --node '{"name": "n1", "capacity": {"nvidia.com/gpu": "1"},
                                                          "labels": {...}, "taints": [...]}' --node ...

Several nodes run in this one process (see agent.py): on two cores one Python process and one
event loop for N nodes costs far less than N processes, and the hosts files see every pod of the
cluster without each node watching all pods. `<state-dir>/control.json` names a local HTTP
endpoint (with a token) through which `python -m localcluster node stop|start` stops and starts
a node.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
from dataclasses import replace
from pathlib import Path
from typing import Any

from localcluster.node.agent import AgentConfig, NodeAgent
from localcluster.node.control import ControlServer


def parse_args(argv: list[str] | None = None) -> list[AgentConfig]:
    p = argparse.ArgumentParser(prog="python -m localcluster.node", description=__doc__)
    p.add_argument("--kubeconfig", required=True, type=Path)
    p.add_argument("--node-name", default="localnode", help="the node's name when no --node is given")
    p.add_argument(
        "--node",
        action="append",
        default=[],
        metavar="JSON",
        help='one node of this process: {"name", "capacity", "labels", "taints"} (repeatable)',
    )
    p.add_argument("--state-dir", type=Path, default=Path(".local/localcluster/node"))
    p.add_argument(
        "--root",
        type=Path,
        default=Path.cwd(),
        help="default working directory of containers without workingDir (default: the current one)",
    )
    p.add_argument("--kubelet-port", type=int, default=0, help="port of the logs endpoint (0: any free)")
    p.add_argument("--isolation", choices=["auto", "mount", "user", "none"], default="auto")
    p.add_argument(
        "--pass-env",
        action="append",
        default=[],
        metavar="NAME",
        help="also pass this variable of the agent's environment to every container",
    )
    p.add_argument(
        "--unpullable-image",
        action="append",
        default=[],
        metavar="PATTERN",
        help="pulls of images matching this shell pattern fail (besides `.invalid` registries)",
    )
    p.add_argument(
        "--heartbeat-seconds",
        type=float,
        default=10.0,
        help="Lease renewal interval (the kubelet's: 10 s); node status every third beat",
    )
    p.add_argument("--log-level", default="INFO")
    a = p.parse_args(argv)
    logging.basicConfig(level=a.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    base = AgentConfig(
        kubeconfig=a.kubeconfig,
        node_name=a.node_name,
        state_dir=a.state_dir,
        root_dir=a.root,
        kubelet_port=a.kubelet_port,
        isolation=a.isolation,
        pass_env=tuple(a.pass_env),
        unpullable_images=tuple(a.unpullable_image),
        heartbeat_seconds=a.heartbeat_seconds,
    )
    if not a.node:
        return [base]
    configs = []
    for i, raw in enumerate(a.node):
        try:
            spec: Any = json.loads(raw)
        except ValueError as e:
            p.error(f"--node {raw!r}: not JSON ({e})")
        if not isinstance(spec, dict) or not spec.get("name"):
            p.error(f"--node {raw!r}: needs a name")
        configs.append(
            replace(
                base,
                node_name=str(spec["name"]),
                kubelet_port=a.kubelet_port if i == 0 else 0,
                capacity={str(k): str(v) for k, v in (spec.get("capacity") or {}).items()} or None,
                labels={str(k): str(v) for k, v in (spec.get("labels") or {}).items()},
                taints=list(spec.get("taints") or []),
            )
        )
    return configs


async def amain(configs: list[AgentConfig]) -> None:
    peers: list[NodeAgent] = []
    agents = [NodeAgent(c, peers) for c in configs]
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    for agent in agents:
        await agent.start()
        print(
            f"localcluster node agent {agent.config.node_name} running (kubelet port {agent.server.port})",
            flush=True,
        )
    control = ControlServer({a.config.node_name: a for a in agents}, configs[0].state_dir)
    await control.start()
    await stop.wait()
    logging.getLogger(__name__).info("stopping: terminating every pod process")
    await control.stop()
    await asyncio.gather(*(a.stop() for a in reversed(agents)), return_exceptions=True)


def main(argv: list[str] | None = None) -> None:
    asyncio.run(amain(parse_args(argv)))


if __name__ == "__main__":
    main()
