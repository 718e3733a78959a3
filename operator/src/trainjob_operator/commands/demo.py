"""`trainjob demo` (`make demo`): the digits example on a fresh local cluster, watched live.

It starts `trainjob local up --dir DIR` as a background process (so that with --keep the stack
outlives the demo and `trainjob local down --dir DIR` stops it), applies a copy of
deploy/examples/digits.yaml with kubectl, shows progress until the job finishes, optionally kills a
worker halfway (--chaos), then reports the best checkpoint and plots the metric history.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from trainjob_operator import views
from trainjob_operator.api import constants
from trainjob_operator.client import CommandError, Kube, connect
from trainjob_operator.follow import follow_jobs
from trainjob_operator.job_storage import open_job_storage
from trainjob_operator.plotting import plot_history

DEFAULT_DIRECTORY = Path(".local/demo")
EXAMPLE = Path("deploy/examples/digits.yaml")
PLOT = Path("demo-output/digits-metrics.png")
NAMESPACE = "default"
# About a minute of training on two cores: 12 steps an epoch at this pace, plus evaluation.
STEP_SLEEP = 0.3
DEFAULT_EPOCHS = 10
STACK_START_TIMEOUT = 180.0
JOB_TIMEOUT = 900.0
# What the demo leaves in its directory; anything else there means the directory is not ours.
STATE_ENTRIES = {"cluster", "seaweedfs", "operator.log", "stack.json", "local-up.log", "digits.yaml"}


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the digits example on a fresh local cluster and watch it (make demo)",
        description="Start a local cluster (API server, node agent, SeaweedFS, the operator) in DIR, "
        "`kubectl apply` the digits example (2 DDP workers), show live progress until it finishes, "
        "then print where the best checkpoint is and write a plot of the metric history to "
        f"{PLOT}. Everything it started is stopped at the end unless --keep.",
    )
    parser.add_argument(
        "--chaos", action="store_true", help="SIGKILL a worker's trainer halfway: watch the gang resume"
    )
    parser.add_argument(
        "--keep", action="store_true", help="leave the cluster running (then `trainjob local down --dir DIR`)"
    )
    parser.add_argument(
        "--dir", type=Path, default=DEFAULT_DIRECTORY, help="state directory of the cluster (%(default)s)"
    )
    parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS, help="epochs to train (%(default)s)")
    parser.set_defaults(func=run)


@dataclass
class BackgroundStack:
    """A `trainjob local up` process and what it wrote about itself."""

    process: subprocess.Popen[bytes]
    directory: Path
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def kubeconfig(self) -> str:
        return str(self.info["kubeconfig"])

    def pids(self) -> dict[str, int]:
        named = {name: int(pid) for name, pid in (self.info.get("pids") or {}).items() if pid}
        return {"local up": self.process.pid, **named}


@dataclass
class Chaos:
    """Kill one worker's trainer once the job is halfway and has a committed checkpoint."""

    kube: Kube
    epochs: int
    done: bool = False

    def __call__(self, job: dict[str, Any], display: views.ProgressDisplay) -> str | None:
        status = views.status_of(job)
        halfway = int(status.get("iteration") or 0) >= max(1, self.epochs // 2)
        if self.done or not halfway or not status.get("latestCheckpoint") or status.get("phase") != "Running":
            return None
        attempt = int(status.get("attempt") or 0)
        rank = int((job.get("spec") or {}).get("workers", 1)) - 1
        pids = trainer_pids(self.kube, views.job_name(job), attempt=attempt, rank=rank, running_only=True)
        if not pids:
            return None
        pid = next(iter(pids.values()))
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        self.done = True
        message = (
            f"chaos: SIGKILL the trainer of rank {rank} (pid {pid}) at iteration {status.get('iteration')}; "
            f"the gang restarts from checkpoint {status['latestCheckpoint'].get('iteration')}"
        )
        display.say(f"[yellow]{message}[/yellow]")
        return message


def run(args: argparse.Namespace) -> int:
    from trainjob_operator.local.extra import require_local_extra

    require_local_extra("demo")
    from trainjob_operator.local.stack import read_stack_info

    console = views.make_console()
    root = Path.cwd()
    if not (root / EXAMPLE).is_file():
        raise CommandError(f"run the demo from the repository root: {EXAMPLE} is not in {root}")
    if args.epochs < 1:
        raise CommandError("--epochs must be at least 1")
    directory: Path = args.dir
    if read_stack_info(directory) is not None:
        raise CommandError(
            f"a local cluster already runs in {directory}: `trainjob local down --dir {directory}` stops it"
        )
    clear_previous_run(directory)
    # `kill PID` (and `trainjob local down` on a --keep run) must still stop what the demo started.
    signal.signal(signal.SIGTERM, signal.default_int_handler)

    console.rule("[bold]1. a local cluster: API server, node agent, SeaweedFS (S3), the TrainJob operator")
    stack = start_stack(directory, root, console)
    seen_pids: dict[str, int] = {}
    succeeded = False
    try:
        for name, pid in stack.pids().items():
            seen_pids[name] = pid
        console.print(
            "started: " + ", ".join(f"{name} {pid}" for name, pid in stack.pids().items()), soft_wrap=True
        )
        kube = connect(argparse.Namespace(kubeconfig=stack.kubeconfig, namespace=NAMESPACE))

        console.rule("[bold]2. submit the digits example (2 DDP workers) with kubectl")
        manifest_path = write_manifest(root / EXAMPLE, directory / "digits.yaml", epochs=args.epochs)
        job_name = yaml.safe_load(manifest_path.read_text())["metadata"]["name"]
        kubectl_apply(manifest_path, stack.kubeconfig, console)

        console.rule(
            "[bold]3. training" + (" (with chaos: a worker is killed halfway)" if args.chaos else "")
        )
        chaos = Chaos(kube, args.epochs) if args.chaos else None

        def on_poll(job: dict[str, Any], display: views.ProgressDisplay) -> str | None:
            for pod_name, pid in trainer_pids(kube, job_name).items():
                seen_pids[f"trainer {pod_name}"] = pid
            return chaos(job, display) if chaos is not None else None

        started = time.monotonic()
        final = follow_jobs(kube, [(NAMESPACE, job_name)], console, timeout=JOB_TIMEOUT, on_poll=on_poll)[
            job_name
        ]
        elapsed = time.monotonic() - started
        if not console.is_terminal:
            console.print(views.progress_view(final, elapsed=elapsed))

        console.rule("[bold]4. result")
        succeeded = report(kube, final, elapsed, console, stack, keep=args.keep)
    finally:
        if args.keep:
            console.print("the local cluster keeps running:")
            console.print(f"  export KUBECONFIG={stack.kubeconfig}")
            console.print(f"  trainjob local down --dir {directory}   # stops it")
        else:
            stop_stack(stack, seen_pids, console)
    return 0 if succeeded else 1


def report(
    kube: Kube, job: dict[str, Any], elapsed: float, console: Console, stack: BackgroundStack, *, keep: bool
) -> bool:
    """Print the outcome, the best checkpoint and the plot; whether the job succeeded."""
    status = views.status_of(job)
    name = views.job_name(job)
    phase = status.get("phase")
    restarts = int(status.get("restarts") or 0)
    console.print(
        f"TrainJob {name} {views.phase_text(phase).markup} after {views.duration(elapsed)}: iteration "
        f"{views.iteration_text(job)}, attempt {status.get('attempt', 0)}, {restarts} restart(s)"
        + (f" ({status['message']})" if status.get("message") and phase != "Succeeded" else "")
    )
    console.print(f"final metrics: {views.compact_metrics(status.get('metrics'), limit=10) or '-'}")
    best = status.get("bestCheckpoint") or {}
    if best:
        score_name = ((job.get("spec") or {}).get("checkpoints") or {}).get("scoreAttribute")
        score = (best.get("metrics") or {}).get(score_name) if score_name else None
        console.print(
            f"best checkpoint: {best['uri']} (iteration {best.get('iteration')}"
            + (f", {score_name}={views.format_value(score)}" if score is not None else "")
            + ")",
            soft_wrap=True,
        )
        prefix = "" if keep else f"(with --keep, while the cluster runs) KUBECONFIG={stack.kubeconfig} "
        console.print(
            f"  fetch it: {prefix}trainjob checkpoints download {name} --iteration {best.get('iteration')} "
            f"./{name}-best",
            soft_wrap=True,
        )
    else:
        console.print("best checkpoint: none committed")
    try:
        points = open_job_storage(kube, job).metric_history()
        if points:
            plot_history(points, PLOT, title=f"TrainJob {name}: metric history")
            console.print(f"metric history plot: {PLOT} ({len(points)} iterations)")
        else:
            console.print("metric history plot: none (no history in storage)")
    except (CommandError, ValueError, OSError) as error:
        console.print(f"metric history plot: not written ({error})")
    return phase == "Succeeded"


# ---- the stack ------------------------------------------------------------------------------


def clear_previous_run(directory: Path) -> None:
    """Start from nothing: an earlier run's S3 data would make the job resume from its checkpoints."""
    if not directory.exists():
        return
    foreign = {entry.name for entry in directory.iterdir()} - STATE_ENTRIES
    if foreign:
        raise CommandError(
            f"{directory} holds files the demo did not write ({', '.join(sorted(foreign))}); "
            "pick another --dir"
        )
    shutil.rmtree(directory)


def start_stack(directory: Path, root: Path, console: Console) -> BackgroundStack:
    from trainjob_operator.local.stack import read_stack_info

    directory.mkdir(parents=True, exist_ok=True)
    log_path = directory / "local-up.log"
    command = [sys.executable, "-m", "trainjob_operator", "local", "up", "--dir", str(directory)]
    console.print(f"$ trainjob local up --dir {directory}   (log: {log_path})")
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            command,
            cwd=root,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    stack = BackgroundStack(process, directory)
    deadline = time.monotonic() + STACK_START_TIMEOUT
    try:
        while (info := read_stack_info(directory)) is None or int(info.get("ownerPid") or 0) != process.pid:
            if process.poll() is not None or time.monotonic() > deadline:
                tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-20:])
                raise CommandError(f"the local cluster did not start (see {log_path}):\n{tail}")
            time.sleep(0.3)
    except BaseException:
        stop_stack(stack, {}, console)
        raise
    stack.info = info
    console.print(f"S3 (SeaweedFS): {info['s3Endpoint']}, bucket {info['bucket']}")
    if info.get("dashboard"):
        console.print(f"dashboard: {info['dashboard']}  (open it to watch the job train)")
    return stack


def stop_stack(stack: BackgroundStack, seen_pids: dict[str, int], console: Console) -> None:
    """SIGTERM `local up` (it stops the operator, every pod, the API server and SeaweedFS), then make
    sure no process the demo started is left."""
    console.print("stopping the local cluster ...")
    if stack.process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(stack.process.pid, signal.SIGTERM)
        try:
            stack.process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(stack.process.pid, signal.SIGKILL)
            stack.process.wait()
    everything = {**seen_pids, **stack.pids()}
    deadline = time.monotonic() + 10
    while (
        alive := {name: pid for name, pid in everything.items() if pid_alive(pid)}
    ) and time.monotonic() < deadline:
        time.sleep(0.2)
    # The stack's own processes are killed if `local up` left them; a trainer pid seen long ago may
    # belong to another process by now, so those are only reported.
    own = stack.pids()
    for name, pid in alive.items():
        if own.get(name) == pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    stopped = ", ".join(f"{name} {pid}" for name, pid in everything.items() if name not in alive)
    console.print(f"stopped processes: {stopped}", soft_wrap=True)
    if alive:
        console.print(
            f"[red]still running after the stop: {', '.join(f'{n} {p}' for n, p in alive.items())}[/red]"
        )


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ---- the job --------------------------------------------------------------------------------


def write_manifest(example: Path, target: Path, *, epochs: int) -> Path:
    """The example with a demo's pace: fewer epochs, a short sleep per step, quick restarts."""
    manifest = yaml.safe_load(example.read_text())
    spec = manifest["spec"]
    spec["config"] = {**(spec.get("config") or {}), "epochs": epochs, "step_sleep": STEP_SLEEP}
    spec.setdefault("failurePolicy", {})["backoffSeconds"] = 1
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(
        f"# {example} with a demo's pace (trainjob demo): epochs {epochs}, step_sleep {STEP_SLEEP}\n"
        + yaml.safe_dump(manifest, sort_keys=False)
    )
    return target


def kubectl_apply(manifest: Path, kubeconfig: str, console: Console) -> None:
    kubectl = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which("kubectl")
    if kubectl is None:
        raise CommandError("kubectl is not installed (the project's environment provides one: make install)")
    console.print(f"$ export KUBECONFIG={kubeconfig}")
    console.print(f"$ kubectl apply -f {manifest}")
    result = subprocess.run(
        [kubectl, "apply", "-f", str(manifest), "-n", NAMESPACE],
        env={**os.environ, "KUBECONFIG": kubeconfig},
        capture_output=True,
        text=True,
        timeout=60,
    )
    console.print((result.stdout + result.stderr).rstrip(), markup=False)
    if result.returncode != 0:
        raise CommandError(f"kubectl apply exited {result.returncode}")


def trainer_pids(
    kube: Kube, job: str, *, attempt: int | None = None, rank: int | None = None, running_only: bool = False
) -> dict[str, int]:
    """Pod name -> pid of the job's trainer containers (a local pod's container ID is `local://<pid>`)."""
    found: dict[str, int] = {}
    for pod in kube.job_pods(job, attempt=attempt, rank=rank):
        pod_name = str(pod.metadata.name if pod.metadata else "")
        for container in (pod.status.container_statuses if pod.status else None) or []:
            container_id = str(container.container_id or "")
            running = container.state is not None and container.state.running is not None
            if container.name != constants.TRAINER_CONTAINER or not container_id.startswith("local://"):
                continue
            if running or not running_only:
                found[pod_name] = int(container_id.removeprefix("local://"))
    return found
