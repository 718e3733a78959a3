"""`python -m localcluster up|down|status`: a whole local cluster from the command line.

    python -m localcluster up [--dir DIR] [--kubeconfig PATH] [--state-file PATH] [--root DIR]
    python -m localcluster down [--dir DIR]
    python -m localcluster status [--dir DIR]
    python -m localcluster node stop NAME [--keep-processes] [--dir DIR]
    python -m localcluster node start NAME [--dir DIR]

`up` starts the API server and the node agent, prints the kubeconfig path and an
`export KUBECONFIG=...` line, and runs until SIGINT/SIGTERM, then stops everything it started.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from localcluster.cluster import (
    ClusterError,
    LocalCluster,
    cluster_running,
    pid_alive,
    read_info,
    stop_by_info,
)
from localcluster.lifetime import Holder, holders
from localcluster.nodeflags import add_node_command, add_node_flags, node_options, run_node_command

DEFAULT_DIR = Path(".local/localcluster")


def _up(a: argparse.Namespace) -> int:
    try:
        nodes = node_options(a)
    except ClusterError as e:
        print(f"localcluster up: {e}", file=sys.stderr)
        return 2
    running = cluster_running(a.dir)
    if running is not None:
        print(
            f"a local cluster already runs from {a.dir} (pid {running.get('pid')}); `down` it first",
            file=sys.stderr,
        )
        return 1
    left = holders(a.dir)
    if left:
        print(_left_behind(a.dir, left), file=sys.stderr)
        return 1
    if read_info(a.dir) is not None:
        # What a crashed `up` left behind (a lone API server, orphaned pods) goes first.
        stop_by_info(a.dir)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    cluster = LocalCluster(
        a.dir,
        root=a.root,
        state_file=a.state_file,
        kubeconfig=a.kubeconfig,
        node_name=a.node_name,
        port=a.port,
        isolation=a.isolation,
        pass_env=a.pass_env,
        unpullable_images=a.unpullable_image,
        **nodes,
    )
    try:
        cluster.start()
    except ClusterError as e:
        print(f"localcluster up failed: {e}", file=sys.stderr)
        return 1
    try:
        pids = cluster.pids
        print(f"localcluster: API server {cluster.url} (pid {pids['apiserver']})", flush=True)
        print(
            f"localcluster: nodes {', '.join(cluster.node_names)} (agent pid {pids['agent']}), "
            f"state in {cluster.directory}"
        )
        print(f"kubeconfig: {cluster.kubeconfig}")
        print(f"export KUBECONFIG={cluster.kubeconfig}", flush=True)
        while not stop.wait(1.0):
            try:
                cluster.check_alive()
            except ClusterError as e:
                print(f"localcluster: {e}", file=sys.stderr, flush=True)
                return 1
        return 0
    finally:
        print("localcluster: stopping", flush=True)
        cluster.stop()


def _down(a: argparse.Namespace) -> int:
    if stop_by_info(a.dir):
        print(f"localcluster in {a.dir} stopped")
    else:
        print(f"no local cluster runs from {a.dir}")
    return 0


def _left_behind(directory: Path, left: list[Holder]) -> str:
    lines = "\n".join(f"  {h}" for h in left)
    return (
        f"no local cluster runs from {directory}, but an earlier `up` that was killed left processes "
        f"that hold it:\n{lines}\nstop them with: python -m localcluster down --dir {directory}"
    )


def _status(a: argparse.Namespace) -> int:
    info = cluster_running(a.dir)
    owner = int((info or {}).get("pid") or 0)
    if info is None or not (owner and pid_alive(owner)):
        left = holders(a.dir)
        print(_left_behind(a.dir, left) if left else f"not running ({a.dir})")
        return 1
    print(
        f"running: API server {info.get('url')} (pid {info.get('apiserver')}), agent pid {info.get('agent')}"
    )
    print(f"export KUBECONFIG={info.get('kubeconfig')}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m localcluster", description="A single-machine Kubernetes.")
    sub = p.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the API server and the node agent; stop them on SIGINT/SIGTERM")
    up.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="state directory (default: %(default)s)")
    up.add_argument(
        "--kubeconfig",
        type=Path,
        default=None,
        help="where to write the kubeconfig (default: DIR/kubeconfig)",
    )
    up.add_argument(
        "--state-file", type=Path, default=None, help="the API server keeps its objects in this file"
    )
    up.add_argument(
        "--root", type=Path, default=Path.cwd(), help="working directory of containers (default: .)"
    )
    up.add_argument("--port", type=int, default=0, help="API server port (default: any free one)")
    up.add_argument("--node-name", default="localnode")
    up.add_argument("--isolation", choices=["auto", "mount", "user", "none"], default="auto")
    up.add_argument("--pass-env", action="append", default=[], metavar="NAME")
    up.add_argument(
        "--unpullable-image",
        action="append",
        default=[],
        metavar="PATTERN",
        help="images matching this shell pattern fail to pull (ErrImagePull), as do those of "
        "`.invalid` registries; repeatable",
    )
    add_node_flags(up)
    for name in ("down", "status"):
        s = sub.add_parser(name)
        s.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    add_node_command(sub, DEFAULT_DIR, lambda d: d)
    a = p.parse_args(argv)
    a.dir = a.dir.resolve()
    handlers = {"up": _up, "down": _down, "status": _status, "node": run_node_command}
    return handlers[a.command](a)


if __name__ == "__main__":
    sys.exit(main())
