"""`python -m localcluster up/status/down` and `LocalCluster`: every process started is stopped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from localcluster import LocalCluster
from localcluster.cluster import INFO_FILE, terminate_pid
from tests.localcluster.node_fixtures import REPO_ROOT, Kube, container_pid, phase, pid_alive, pod, py


def wait_for(check: Callable[[], object], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError("timed out")


def run_sleeper(cluster: LocalCluster) -> int:
    """A running pod (with a child process in its group); returns its main pid."""
    ns = "up-test"
    cluster.api(
        "POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
    )
    kube = Kube(cluster, ns)
    code = "import subprocess, time; subprocess.Popen(['sleep', '600']); time.sleep(600)"
    kube.create(pod("sleeper", [{"name": "main", "command": py(code)}]))
    return container_pid(kube.wait_ready("sleeper"), "main")


def group_members(pgid: int) -> list[int]:
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if os.getpgid(int(d.name)) == pgid and pid_alive(int(d.name)):
                    pids.append(int(d.name))
            except OSError:
                pass
    return pids


def test_up_status_down_stops_every_process(tmp_path: Path) -> None:
    state = tmp_path / "lc"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    up = subprocess.Popen(
        [sys.executable, "-m", "localcluster", "up", "--dir", str(state), "--root", str(REPO_ROOT)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    )
    pids: list[int] = [up.pid]
    try:
        assert up.stdout is not None
        lines = []
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            line = up.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("export KUBECONFIG="):
                break
        assert lines and lines[-1].startswith("export KUBECONFIG="), "".join(lines)
        kubeconfig = lines[-1].split("=", 1)[1].strip()
        assert Path(kubeconfig) == state / "kubeconfig"
        info = json.loads((state / INFO_FILE).read_text())
        pids += [info["apiserver"], info["agent"]]
        assert all(pid_alive(p) for p in pids)

        status = subprocess.run(
            [sys.executable, "-m", "localcluster", "status", "--dir", str(state)],
            capture_output=True,
            text=True,
        )
        assert status.returncode == 0 and "running" in status.stdout

        out = subprocess.run(
            ["kubectl", "--kubeconfig", kubeconfig, "get", "nodes", "-o", "name"],
            capture_output=True,
            text=True,
        )
        assert out.stdout.strip() == "node/localnode", out.stderr

        # A pod through the running cluster, found by its pid.
        cluster = LocalCluster(state)
        cluster.url, cluster.token = info["url"], _token(Path(kubeconfig))
        pod_pid = run_sleeper(cluster)
        # Ready comes when python starts; its sleep child follows a moment later.
        wait_for(lambda: len(group_members(pod_pid)) >= 2, timeout=30)
        members = group_members(pod_pid)  # python and its sleep child
        pids += members

        down = subprocess.run(
            [sys.executable, "-m", "localcluster", "down", "--dir", str(state)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert down.returncode == 0 and "stopped" in down.stdout, down.stdout + down.stderr
        up.wait(timeout=30)
        assert up.returncode == 0
        wait_for(lambda: not any(pid_alive(p) for p in pids), timeout=30)
        status = subprocess.run(
            [sys.executable, "-m", "localcluster", "status", "--dir", str(state)],
            capture_output=True,
            text=True,
        )
        assert status.returncode == 1 and "not running" in status.stdout
    finally:
        for p in reversed(pids):
            terminate_pid(p, timeout=5)
        if up.poll() is None:
            up.kill()
        up.wait()


def test_local_cluster_context_manager_stops_pods_and_servers(tmp_path: Path) -> None:
    with LocalCluster(tmp_path / "c", root=REPO_ROOT) as cluster:
        assert cluster.url.startswith("http://127.0.0.1:")
        assert cluster.kubeconfig.exists()
        servers = list(cluster.pids.values())
        pod_pid = run_sleeper(cluster)
        members = group_members(pod_pid)
        assert pod_pid in members
    try:
        wait_for(lambda: not any(pid_alive(p) for p in [*servers, *members]), timeout=30)
    finally:
        for p in [*members, *servers]:
            terminate_pid(p, timeout=2)


def test_agent_sigterm_stops_its_pods_and_sigkilled_agent_leftovers_are_killed(tmp_path: Path) -> None:
    cluster = LocalCluster(tmp_path / "c", root=REPO_ROOT)
    cluster.start()
    new_pid = 0
    try:
        pod_pid = run_sleeper(cluster)
        assert cluster.agent is not None
        # A crashed agent (SIGKILL) leaves its pods running; stop() kills them from the pid file.
        os.kill(cluster.agent.pid, signal.SIGKILL)
        cluster.agent.wait()
        assert pid_alive(pod_pid)
        # A new agent on the same state directory kills the orphans and runs the pod afresh.
        cluster._start_agent()
        wait_for(lambda: not pid_alive(pod_pid), timeout=30)
        kube = Kube(cluster, "up-test")
        kube.wait_pod(
            "sleeper", lambda p: container_pid(p, "main") != pod_pid and "running" in str(p), timeout=60
        )
        new_pid = container_pid(kube.wait_ready("sleeper"), "main")
        assert pid_alive(new_pid)
    finally:
        cluster.stop()
    wait_for(lambda: not pid_alive(pod_pid) and not (new_pid and pid_alive(new_pid)), timeout=10)


@pytest.mark.parametrize("sig", [signal.SIGTERM])
def test_api_server_restart_is_survived(tmp_path: Path, sig: int) -> None:
    """The agent reconnects when the API server comes back (same state file and port)."""
    state_file = tmp_path / "state.json"
    cluster = LocalCluster(tmp_path / "c", root=REPO_ROOT, state_file=state_file)
    cluster.start()
    try:
        pod_pid = run_sleeper(cluster)
        port = int(cluster.url.rsplit(":", 1)[1])
        assert cluster.apiserver is not None
        cluster.apiserver.send_signal(sig)
        cluster.apiserver.wait(timeout=30)
        cluster.port = port
        cluster._start_apiserver()
        kube = Kube(cluster, "up-test")
        # The pod kept running, and the agent reports to the new server: a new pod runs too.
        assert pid_alive(pod_pid)
        kube.create(
            pod("after", [{"name": "main", "command": py("print('after restart')")}], restartPolicy="Never")
        )
        kube.wait_phase("after", "Succeeded", timeout=60)
        assert kube.kubectl("logs", "after").stdout.strip() == "after restart"
    finally:
        cluster.stop()
    wait_for(lambda: not pid_alive(pod_pid), timeout=10)


def _token(kubeconfig: Path) -> str:
    import yaml

    data = yaml.safe_load(kubeconfig.read_text())
    return str(data["users"][0]["user"]["token"])


def test_an_emptydir_where_a_symlinked_venv_lives_does_not_hide_python(tmp_path: Path) -> None:
    """The project's `.venv` is a symlink into a scratch directory (a venv under /tmp): a pod that
    mounts an emptyDir there must still run with that Python (the mount is withheld), not with
    whatever `python` comes next on PATH."""
    scratch = tmp_path / "scratch"  # stands in for /tmp
    (scratch / "venv").mkdir(parents=True)
    real_venv = Path(sys.executable).parent.parent
    for entry in ("bin", "lib", "pyvenv.cfg"):
        (scratch / "venv" / entry).symlink_to(real_venv / entry)
    (tmp_path / "project-venv").symlink_to(scratch / "venv")
    python = tmp_path / "project-venv" / "bin" / "python"
    with LocalCluster(tmp_path / "c", root=REPO_ROOT, python=str(python)) as cluster:
        ns = "hide-test"
        cluster.api(
            "POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
        )
        kube = Kube(cluster, ns)
        container = {
            "name": "main",
            "command": py("import sys; print('ran with', sys.executable)"),
            "volumeMounts": [{"name": "scratch", "mountPath": str(scratch)}],
        }
        kube.create(
            pod("scratch", [container], restartPolicy="Never", volumes=[{"name": "scratch", "emptyDir": {}}])
        )
        p = kube.wait_phase("scratch", "Succeeded", "Failed")
        logs = kube.kubectl("logs", "scratch").stdout
        assert phase(p) == "Succeeded", (p["status"], logs)
        assert logs.strip() == f"ran with {python}"


def test_holders_are_the_processes_naming_the_directory_but_not_the_caller(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    sleep = "import time; time.sleep(60)"
    starts = {
        "path under it": [sys.executable, "-c", sleep, str(state / "cluster" / "kubeconfig")],
        "flag=value": [sys.executable, "-c", sleep, f"-dir={state}"],
        "a sibling": [sys.executable, "-c", sleep, f"{state}2"],
    }
    procs = {name: subprocess.Popen(argv) for name, argv in starts.items()}
    try:
        # Asked through `timeout`, whose own arguments name the directory too.
        code = (
            "import sys; from localcluster.lifetime import holders; "
            "print([h.pid for h in holders(sys.argv[1])])"
        )
        out = subprocess.run(
            ["timeout", "60", sys.executable, "-c", code, str(state)],
            capture_output=True,
            text=True,
            check=True,
        )
        found = json.loads(out.stdout)
        assert sorted(found) == sorted([procs["path under it"].pid, procs["flag=value"].pid]), out.stdout
    finally:
        for p in procs.values():
            p.kill()
            p.wait()
