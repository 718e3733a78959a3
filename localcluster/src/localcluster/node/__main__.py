"""`python -m localcluster.node`: run the node agent against an API server's kubeconfig."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from pathlib import Path

from localcluster.node.agent import AgentConfig, NodeAgent


def parse_args(argv: list[str] | None = None) -> AgentConfig:
    p = argparse.ArgumentParser(prog="python -m localcluster.node", description=__doc__)
    p.add_argument("--kubeconfig", required=True, type=Path)
    p.add_argument("--node-name", default="localnode")
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
    p.add_argument("--log-level", default="INFO")
    a = p.parse_args(argv)
    logging.basicConfig(level=a.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return AgentConfig(
        kubeconfig=a.kubeconfig,
        node_name=a.node_name,
        state_dir=a.state_dir,
        root_dir=a.root,
        kubelet_port=a.kubelet_port,
        isolation=a.isolation,
        pass_env=tuple(a.pass_env),
        unpullable_images=tuple(a.unpullable_image),
    )


async def amain(config: AgentConfig) -> None:
    agent = NodeAgent(config)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await agent.start()
    print(
        f"localcluster node agent {config.node_name} running (kubelet port {agent.server.port})", flush=True
    )
    await stop.wait()
    logging.getLogger(__name__).info("stopping: terminating every pod process")
    await agent.stop()


def main(argv: list[str] | None = None) -> None:
    asyncio.run(amain(parse_args(argv)))


if __name__ == "__main__":
    main()
