"""`trainjob local up|down|status`: the whole product on this machine, without Docker."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from trainjob_operator.local.extra import installed_local_cluster

DEFAULT_DIRECTORY = Path(".local/trainjob")


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "local",
        help="run a local cluster, SeaweedFS and the operator on this machine",
        description="Start (up), stop (down) or inspect (status) a single-machine cluster: an API server "
        "that kubectl, Helm and kopf talk to, a node agent that runs pods as local processes (images are "
        "ignored: each container's command runs in this Python environment), SeaweedFS as the S3 store, "
        "and the TrainJob operator.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    up = actions.add_parser("up", help="start everything and run until interrupted")
    up.add_argument("--dir", type=Path, default=DEFAULT_DIRECTORY, help="state directory (%(default)s)")
    up.add_argument(
        "--namespace",
        "-n",
        action="append",
        default=[],
        help="prepare this namespace with the S3 credentials Secret (repeatable; default: default)",
    )
    up.add_argument("--no-operator", action="store_true", help="do not start the operator")
    up.add_argument("--no-dashboard", action="store_true", help="do not serve `trainjob dashboard`")
    up.add_argument(
        "--unpullable-image",
        action="append",
        default=[],
        metavar="PATTERN",
        help="images matching this shell pattern fail to pull (ErrImagePull), as do those of "
        "`.invalid` registries; repeatable",
    )
    if installed_local_cluster():  # without the local extra `up` refuses in one line (local/extra.py)
        from localcluster.nodeflags import add_node_flags

        add_node_flags(up)
    up.set_defaults(func=run_up)
    down = actions.add_parser("down", help="stop a local cluster started with `up`")
    down.add_argument("--dir", type=Path, default=DEFAULT_DIRECTORY, help="state directory (%(default)s)")
    down.set_defaults(func=run_down)
    status = actions.add_parser("status", help="say whether a local cluster runs, and how to reach it")
    status.add_argument("--dir", type=Path, default=DEFAULT_DIRECTORY, help="state directory (%(default)s)")
    status.set_defaults(func=run_status)
    if installed_local_cluster():
        from localcluster.nodeflags import add_node_command, run_node_command

        add_node_command(actions, DEFAULT_DIRECTORY, lambda d: d / "cluster")
        actions.choices["node"].set_defaults(func=run_node_command)


def run_up(args: argparse.Namespace) -> int:
    from trainjob_operator.local.extra import require_local_extra

    require_local_extra("local up")
    from localcluster.cluster import ClusterError
    from localcluster.nodeflags import node_options
    from trainjob_operator.local.stack import LocalStack, read_stack_info

    try:
        nodes = node_options(args)
    except ClusterError as e:
        print(f"trainjob local up: {e}")
        return 2
    if read_stack_info(args.dir) is not None:
        print(f"a local cluster already runs in {args.dir}: `trainjob local down --dir {args.dir}` stops it")
        return 1
    left = _left_behind(args.dir)
    if left:
        print(left, file=sys.stderr)
        return 1
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stack = LocalStack(
        args.dir,
        namespaces=tuple(args.namespace) or ("default",),
        with_operator=not args.no_operator,
        with_dashboard=not args.no_dashboard,
        unpullable_images=tuple(args.unpullable_image),
        cluster_options=nodes,
    )
    with stack:
        assert stack.seaweedfs is not None
        print(f"local cluster up in {args.dir.resolve()}")
        print(f"S3 (SeaweedFS): {stack.seaweedfs.endpoint} bucket {stack.seaweedfs.bucket}")
        if stack.dashboard_url:
            print(f"dashboard: {stack.dashboard_url}")
        print(f"export KUBECONFIG={stack.kubeconfig}", flush=True)
        stop.wait()
        print("stopping the local cluster", flush=True)
    return 0


def run_down(args: argparse.Namespace) -> int:
    import os
    import time

    from trainjob_operator.local.extra import LOCAL_CLUSTER, require_local_extra

    # It finds what a killed `up` left behind with the local cluster's own tools.
    require_local_extra("local down", parts=(LOCAL_CLUSTER,))
    from trainjob_operator.local.stack import read_stack_info

    info = read_stack_info(args.dir)
    if info is None:
        stopped = _stop_left_behind(args.dir)
        if stopped:
            print(f"stopped what an earlier `up` left running in {args.dir}:")
            for line in stopped:
                print(f"  {line}")
        else:
            print(f"no local cluster runs in {args.dir}")
        return 0
    owner = int(info.get("ownerPid") or 0)
    if owner:
        with contextlib.suppress(ProcessLookupError):
            os.kill(owner, signal.SIGTERM)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and read_stack_info(args.dir) is not None:
            time.sleep(0.2)
    if read_stack_info(args.dir) is not None:
        print(f"the local cluster in {args.dir} did not stop within 60 s", flush=True)
        return 1
    # Its `up` is finishing (a signal now would cut its exit short); then, what it could not stop.
    from localcluster.cluster import pid_alive

    deadline = time.monotonic() + 30
    while owner and pid_alive(owner) and time.monotonic() < deadline:
        time.sleep(0.1)
    _stop_left_behind(args.dir)
    print("local cluster stopped")
    return 0


def _left_behind(directory: Path) -> str:
    """What holds `directory` with no `up` running there, said plainly; "" when nothing does."""
    from localcluster.lifetime import holders

    left = holders(directory)
    if not left:
        return ""
    lines = "\n".join(f"  {h}" for h in left)
    return (
        f"no local cluster runs in {directory}, but an earlier `trainjob local up` that was killed left "
        f"processes that hold it:\n{lines}\nstop them with: trainjob local down --dir {directory}"
    )


def _stop_left_behind(directory: Path) -> list[str]:
    """Stop every process that holds `directory`, and the pods of its node agent; what was stopped."""
    from localcluster.cluster import kill_pod_leftovers
    from localcluster.lifetime import stop_holders

    stopped = [str(h) for h in stop_holders(directory)]
    pods = kill_pod_leftovers(directory / "cluster" / "node")
    stopped += [f"pod process group {pgid}" for pgid in pods]
    return stopped


def run_status(args: argparse.Namespace) -> int:
    from trainjob_operator.local.extra import LOCAL_CLUSTER, require_local_extra

    require_local_extra("local status", parts=(LOCAL_CLUSTER,))
    from trainjob_operator.local.stack import read_stack_info

    info = read_stack_info(args.dir)
    if info is None:
        print(_left_behind(args.dir) or f"no local cluster runs in {args.dir}")
        return 1
    print(f"local cluster runs in {args.dir.resolve()}")
    print(f"S3 (SeaweedFS): {info['s3Endpoint']} bucket {info['bucket']}")
    if info.get("dashboard"):
        print(f"dashboard: {info['dashboard']}")
    print(f"export KUBECONFIG={info['kubeconfig']}")
    return 0
