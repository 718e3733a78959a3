"""`trainjob local up` killed hard leaves nothing running, and what an earlier `up` left is found.

`up` is SIGKILLed (as a closed terminal or the OOM killer would): its API server, node agent and
pods, SeaweedFS, operator and dashboard stop with it, and the next `up` in the same directory starts. A
process that still holds the directory (here one that names it, as each child does) is shown by
`status` and by a refused `up`, and `down` stops it; `python -m localcluster` does the same.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from localcluster.cluster import pid_alive
from localcluster.lifetime import holders

REPO_ROOT = Path(__file__).resolve().parents[2]


def trainjob(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trainjob_operator", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO_ROOT,
        check=False,
    )


def start_up(directory: Path, *flags: str) -> subprocess.Popen[str]:
    """`trainjob local up` until it prints the kubeconfig line."""
    up = subprocess.Popen(
        [sys.executable, "-m", "trainjob_operator", "local", "up", "--dir", str(directory), *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO_ROOT,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
        start_new_session=True,
    )
    assert up.stdout is not None
    lines = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = up.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("export KUBECONFIG="):
            return up
    up.kill()
    up.wait()
    raise AssertionError("`trainjob local up` did not come up:\n" + "".join(lines))


def wait_gone(pids: list[int], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(pid_alive(p) for p in pids):
            return
        time.sleep(0.2)
    raise AssertionError(f"still running after {timeout}s: {[p for p in pids if pid_alive(p)]}")


def run_pod(kubeconfig: str, name: str, image: str, until: str, accept: Callable[[str], bool]) -> str:
    """`kubectl run` a pod that sleeps; its container's `until` JSONPath once `accept` takes it."""
    kubectl = [str(Path(sys.executable).parent / "kubectl"), "--kubeconfig", kubeconfig]
    command = ["--command", "--", "python", "-c", "import time; time.sleep(300)"]
    run = [*kubectl, "run", name, f"--image={image}", "--restart=Never", *command]
    subprocess.run(run, check=True, capture_output=True, timeout=60)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        out = subprocess.run(
            [*kubectl, "get", "pod", name, "-o", f"jsonpath={{.status.containerStatuses[0].{until}}}"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if accept(out.stdout):
            return out.stdout
        time.sleep(0.2)
    raise AssertionError(f"pod {name}: {until} not as expected within 60s")


def sleeper_pid(kubeconfig: str) -> int:
    """A pod that runs until stopped; the pid of its container's process."""
    container_id = run_pod(kubeconfig, "sleeper", "local", "containerID", lambda v: v.startswith("local://"))
    return int(container_id.removeprefix("local://"))


@pytest.fixture
def state(tmp_path: Path) -> Iterator[Path]:
    """The state directory; whatever still holds it at the end is stopped by pid."""
    directory = tmp_path / "trainjob"
    try:
        yield directory
    finally:
        for h in holders(directory):
            with contextlib.suppress(ProcessLookupError):
                os.kill(h.pid, signal.SIGKILL)


def test_sigkilled_up_leaves_nothing_running_and_up_starts_again(state: Path) -> None:
    up = start_up(state)
    try:
        info = json.loads((state / "stack.json").read_text())
        children = [int(p) for p in info["pids"].values() if p]
        expected = {"apiserver", "agent", "seaweedfs", "operator", "dashboard"}
        assert set(info["pids"]) == expected and len(children) == len(expected)
        children.append(sleeper_pid(info["kubeconfig"]))
        os.kill(up.pid, signal.SIGKILL)
        up.wait()
        wait_gone(children)
        assert holders(state) == []
        status = trainjob("local", "status", "--dir", str(state))
        assert status.returncode == 1 and status.stdout.strip() == f"no local cluster runs in {state}"
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
    # The next `up` starts (without operator and dashboard: quicker) and passes node flags on.
    again = start_up(state, "--no-operator", "--no-dashboard", "--unpullable-image", "example.com/private/*")
    try:
        kubeconfig = json.loads((state / "stack.json").read_text())["kubeconfig"]
        failed = ("ErrImagePull", "ImagePullBackOff")
        image = "example.com/private/app:1"
        run_pod(kubeconfig, "private", image, "state.waiting.reason", failed.__contains__)
        down = trainjob("local", "down", "--dir", str(state), timeout=120)
        assert down.returncode == 0 and "local cluster stopped" in down.stdout, down.stdout + down.stderr
        assert again.wait(timeout=60) == 0
    finally:
        if again.poll() is None:
            again.kill()
            again.wait()


def test_what_holds_the_directory_is_named_refused_and_stopped(state: Path) -> None:
    """A leftover that outlived its `up` (one started from a thread gets no parent-death signal)."""
    (state / "seaweedfs").mkdir(parents=True)
    leftover = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(300)", f"-dir={state / 'seaweedfs'}"],
        start_new_session=True,
    )
    try:
        status = trainjob("local", "status", "--dir", str(state))
        assert status.returncode == 1
        assert f"no local cluster runs in {state}, but an earlier `trainjob local up`" in status.stdout
        assert f"pid {leftover.pid}: " in status.stdout
        assert f"stop them with: trainjob local down --dir {state}" in status.stdout

        up = trainjob("local", "up", "--dir", str(state))
        assert up.returncode == 1 and f"pid {leftover.pid}: " in up.stderr, up.stdout + up.stderr
        assert not (state / "stack.json").exists(), "nothing was started"

        lc = subprocess.run(
            [sys.executable, "-m", "localcluster", "status", "--dir", str(state)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert lc.returncode == 1 and f"pid {leftover.pid}: " in lc.stdout
        assert f"python -m localcluster down --dir {state}" in lc.stdout

        down = trainjob("local", "down", "--dir", str(state))
        assert down.returncode == 0, down.stderr
        assert f"stopped what an earlier `up` left running in {state}:" in down.stdout
        assert f"pid {leftover.pid}: " in down.stdout
        assert leftover.wait(timeout=30) == -signal.SIGTERM
        assert trainjob("local", "status", "--dir", str(state)).stdout.strip() == (
            f"no local cluster runs in {state}"
        )
    finally:
        if leftover.poll() is None:
            leftover.kill()
        leftover.wait()
