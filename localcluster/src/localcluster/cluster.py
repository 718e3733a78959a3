"""Start and stop a whole local cluster: the API server and the node agent, as subprocesses.

    with LocalCluster() as cluster:          # a temporary directory, free ports
        subprocess.run(["kubectl", "--kubeconfig", str(cluster.kubeconfig), "get", "nodes"])

Every process is started in its own session and stopped by its pid: the node agent first (it
stops every pod process it started; pods it could not stop are killed from its pid file), then
the API server. The directory holds `kubeconfig`, `apiserver.log`, `node.log`, the agent's
state (`node/`) and `localcluster.json` (pids, URL), which `python -m localcluster down` reads.

Nodes: `nodes=N` (names `<node_name>-1..N`; one node keeps `node_name`), `node_capacity`
({"cpu": "4", "nvidia.com/gpu": "1"}, over what the machine has) or `node_specs` (from a nodes
file: name, capacity, labels, taints per node). One agent process serves them all (see
node/__main__.py); `stop_node` / `start_node` lose and restore one.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from localcluster.lifetime import die_with_parent, stop_holders

INFO_FILE = "localcluster.json"
POD_PIDS_FILE = "pod-pids.json"  # written by the node agent into its state dir
_LISTENING = re.compile(r"listening on (http://\S+)")


class ClusterError(RuntimeError):
    pass


def parse_capacity(text: str) -> dict[str, str]:
    """`cpu=4,memory=8Gi,nvidia.com/gpu=1` -> {"cpu": "4", ...}; every value a quantity."""
    from localcluster.node.quantity import parse_quantity

    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ClusterError(f"node capacity {part!r}: expected RESOURCE=QUANTITY (e.g. cpu=4,memory=8Gi)")
        try:
            parse_quantity(value.strip())
        except ValueError:
            raise ClusterError(f"node capacity {part!r}: {value.strip()!r} is not a quantity") from None
        out[name.strip()] = value.strip()
    return out


def load_nodes_file(path: str | Path) -> list[dict[str, Any]]:
    """A YAML/JSON nodes file: `nodes: [{name, capacity, labels, taints}]` (or the bare list)."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ClusterError(f"nodes file {path}: {e}") from None
    if isinstance(data, dict):
        data = data.get("nodes")
    if not isinstance(data, list) or not data:
        raise ClusterError(f"nodes file {path}: expected a non-empty list under `nodes:`")
    nodes: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, entry in enumerate(data):
        where = f"nodes file {path}, node {i + 1}"
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"]:
            raise ClusterError(f"{where}: needs a name")
        if entry["name"] in seen:
            raise ClusterError(f"{where}: the name {entry['name']!r} is given twice")
        unknown = set(entry) - {"name", "capacity", "labels", "taints"}
        if unknown:
            raise ClusterError(f"{where}: unknown fields {sorted(unknown)} (name, capacity, labels, taints)")
        seen.add(entry["name"])
        capacity = entry.get("capacity") or {}
        if not isinstance(capacity, dict):
            raise ClusterError(f"{where}: capacity must be a mapping")
        cap = parse_capacity(",".join(f"{k}={v}" for k, v in capacity.items()))
        labels = entry.get("labels") or {}
        if not isinstance(labels, dict):
            raise ClusterError(f"{where}: labels must be a mapping")
        taints = entry.get("taints") or []
        if not isinstance(taints, list) or not all(
            isinstance(t, dict)
            and t.get("key")
            and t.get("effect") in ("NoSchedule", "PreferNoSchedule", "NoExecute")
            for t in taints
        ):
            raise ClusterError(
                f"{where}: taints must be a list of {{key, value, effect}} with effect NoSchedule, "
                "PreferNoSchedule or NoExecute"
            )
        nodes.append(
            {
                "name": entry["name"],
                "capacity": cap,
                "labels": {str(k): str(v) for k, v in labels.items()},
                "taints": [
                    {k: str(v) for k, v in t.items() if k in ("key", "value", "effect")} for t in taints
                ],
            }
        )
    return nodes


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False  # 0 and negatives would address process groups
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) is not running any more.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def terminate_pid(pid: int, timeout: float = 10.0, *, group: bool = False, expect: str | None = None) -> None:
    """SIGTERM, wait up to `timeout`, SIGKILL. `expect`: refuse a pid whose command line lacks it
    (the pid may have been reused since it was recorded)."""
    if pid <= 0 or not pid_alive(pid):
        return
    if expect is not None and expect not in _cmdline(pid):
        return
    kill = os.killpg if group else os.kill
    with contextlib.suppress(ProcessLookupError, PermissionError):
        kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and pid_alive(pid):
        time.sleep(0.05)
    if pid_alive(pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and pid_alive(pid):
            time.sleep(0.05)


def kill_pod_leftovers(state_dir: Path) -> list[int]:
    """SIGKILL the process groups the agent recorded as running pod containers (after the agent
    is gone: normally there are none left). Returns the groups that were still there."""
    path = state_dir / POD_PIDS_FILE
    try:
        pgids = [int(p) for p in json.loads(path.read_text())]
    except (OSError, ValueError):
        return []
    left = []
    for pgid in pgids:
        try:
            os.killpg(pgid, signal.SIGKILL)
            left.append(pgid)
        except (ProcessLookupError, PermissionError):
            pass
    return left


class LocalCluster:
    """The API server and node agent of localcluster, as a context manager.

    directory: where kubeconfig, logs and state go (default: a new temporary directory, removed
    at stop unless keep=True). root: the working directory of containers without workingDir
    (default: the current directory). state_file: the API server persists objects there.
    authorization: "AlwaysAllow" (default) or "RBAC" (the API server enforces Roles, ClusterRoles
    and their bindings; the kubeconfig's admin token is a member of system:masters).
    apiserver_log_level: the API server's --log-level (None: its default); at DEBUG it logs every
    request, which is how the benchmarks count API requests without changing the server.
    """

    def __init__(
        self,
        directory: str | Path | None = None,
        *,
        root: str | Path | None = None,
        state_file: str | Path | None = None,
        kubeconfig: str | Path | None = None,
        node_name: str = "localnode",
        port: int = 0,
        kubelet_port: int = 0,
        isolation: str = "auto",
        pass_env: Sequence[str] = (),
        unpullable_images: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        python: str = sys.executable,
        startup_timeout: float = 60.0,
        keep: bool = False,
        authorization: str = "AlwaysAllow",
        nodes: int = 1,
        node_capacity: Mapping[str, str] | None = None,
        node_specs: Sequence[Mapping[str, Any]] | None = None,
        node_monitor_grace_seconds: float | None = None,
        default_toleration_seconds: int | None = None,
        apiserver_log_level: str | None = None,
        simulated_nodes: int = 0,
        simulated_node_capacity: Mapping[str, str] | None = None,
        simulated_pod_duration: float | None = None,
    ) -> None:
        self._temporary = directory is None
        self.directory = Path(directory or tempfile.mkdtemp(prefix="localcluster-")).resolve()
        self.root = Path(root or Path.cwd()).resolve()
        self.state_file = Path(state_file).resolve() if state_file else None
        self.kubeconfig = Path(kubeconfig).resolve() if kubeconfig else self.directory / "kubeconfig"
        self.node_name = node_name
        self.port = port
        self.kubelet_port = kubelet_port
        self.isolation = isolation
        self.pass_env = tuple(pass_env)
        self.unpullable_images = tuple(unpullable_images)
        self.env = dict(os.environ if env is None else env)
        self.python = python
        self.startup_timeout = startup_timeout
        self.keep = keep or not self._temporary
        self.authorization = authorization
        if node_specs:
            self.node_specs = [
                {**dict(spec), "capacity": {**(node_capacity or {}), **(spec.get("capacity") or {})}}
                for spec in node_specs
            ]
        else:
            if nodes < 1:
                raise ClusterError(f"--nodes must be at least 1 (got {nodes})")
            names = [node_name] if nodes == 1 else [f"{node_name}-{i}" for i in range(1, nodes + 1)]
            self.node_specs = [{"name": n, "capacity": dict(node_capacity or {})} for n in names]
        self.node_names = [str(spec["name"]) for spec in self.node_specs]
        self.node_name = self.node_names[0]
        self.node_monitor_grace_seconds = node_monitor_grace_seconds
        self.default_toleration_seconds = default_toleration_seconds
        self.apiserver_log_level = apiserver_log_level
        if simulated_nodes < 0:
            raise ClusterError(f"--simulated-nodes must not be negative (got {simulated_nodes})")
        if simulated_pod_duration is not None and simulated_pod_duration < 0:
            raise ClusterError(
                f"--simulated-pod-duration must not be negative (got {simulated_pod_duration})"
            )
        # Served by the API server (apiserver/simulated.py): sim-node-1..N, pods without processes.
        self.simulated_nodes = simulated_nodes
        self.simulated_node_capacity = dict(simulated_node_capacity or {})
        self.simulated_pod_duration = simulated_pod_duration
        self.url = ""
        self.token = ""
        self.apiserver: subprocess.Popen[bytes] | None = None
        self.agent: subprocess.Popen[bytes] | None = None

    # ---- public ------------------------------------------------------------------------------

    @property
    def node_state_dir(self) -> Path:
        return self.directory / "node"

    @property
    def pids(self) -> dict[str, int]:
        out = {}
        if self.apiserver is not None:
            out["apiserver"] = self.apiserver.pid
        if self.agent is not None:
            out["agent"] = self.agent.pid
        return out

    def start(self) -> Self:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.kubeconfig.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._start_apiserver()
            self._start_agent()
            self._write_info()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the agent (and so every pod), then the API server; by pid, idempotent."""
        if self.agent is not None:
            terminate_pid(self.agent.pid, timeout=30)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.agent.wait(timeout=5)
            self.agent = None
        kill_pod_leftovers(self.node_state_dir)
        if self.apiserver is not None:
            terminate_pid(self.apiserver.pid, timeout=10)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.apiserver.wait(timeout=5)
            self.apiserver = None
        with contextlib.suppress(OSError):
            (self.directory / INFO_FILE).unlink()
        if not self.keep:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def stop_apiserver(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        """Stop the API server alone (the node agent and its pods keep running): `sig`, then
        SIGKILL after `timeout`. Returns its exit status. With a state file, `start_apiserver()`
        brings the same cluster back."""
        if self.apiserver is None:
            return None
        with contextlib.suppress(ProcessLookupError):
            self.apiserver.send_signal(sig)
        try:
            code = self.apiserver.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.apiserver.kill()
            code = self.apiserver.wait(timeout=10)
        self.apiserver = None
        return code

    def start_apiserver(self) -> None:
        """Start the API server after `stop_apiserver()`: on the port it had, so the kubeconfig,
        the pods' KUBERNETES_SERVICE_PORT and every client's URL stay valid."""
        if self.apiserver is not None:
            raise ClusterError("the API server is running")
        if self.url:
            self.port = int(self.url.rsplit(":", 1)[1])
        self._start_apiserver()
        self._write_info()

    def stop_node(self, name: str, *, keep_processes: bool = False) -> None:
        """Lose a node: its heartbeats stop; its pods' processes die, or keep running with
        keep_processes (a network partition)."""
        node_control(self.directory, name, "stop", keep_processes=keep_processes)

    def start_node(self, name: str) -> None:
        """Bring a stopped node back (heartbeats, watches, status updates resume)."""
        node_control(self.directory, name, "start")

    def check_alive(self) -> None:
        for name, proc in (("apiserver", self.apiserver), ("node agent", self.agent)):
            if proc is not None and proc.poll() is not None:
                raise ClusterError(f"{name} exited with {proc.returncode}:\n{self.log_tail(name)}")

    def log_tail(self, which: str, lines: int = 40) -> str:
        name = "apiserver.log" if which.startswith("api") else "node.log"
        try:
            return "\n".join((self.directory / name).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def api(self, method: str, path: str, body: Any = None, content_type: str = "application/json") -> Any:
        """A small synchronous REST call with the admin token (for tests and the CLI)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)  # noqa: S310 - our URL
        req.add_header("Authorization", f"Bearer {self.token}")
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", content_type)
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310
            raw = resp.read()
        return json.loads(raw) if raw else None

    # ---- internals ---------------------------------------------------------------------------

    def _spawn(self, args: list[str], log_name: str) -> subprocess.Popen[bytes]:
        with open(self.directory / log_name, "ab") as log:
            return subprocess.Popen(
                [self.python, *args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.root,
                start_new_session=True,
                # Killed hard, the owner must not leave these running (lifetime.py).
                preexec_fn=die_with_parent(),
            )

    def _start_apiserver(self) -> None:
        log_path = self.directory / "apiserver.log"
        offset = log_path.stat().st_size if log_path.exists() else 0
        args = ["-m", "localcluster.apiserver", "--host", "127.0.0.1", "--port", str(self.port)]
        args += ["--kubeconfig", str(self.kubeconfig), "--node-name", self.node_name]
        args += ["--authorization", self.authorization]
        if self.node_monitor_grace_seconds is not None:
            args += ["--node-monitor-grace-seconds", str(self.node_monitor_grace_seconds)]
        if self.default_toleration_seconds is not None:
            args += ["--default-toleration-seconds", str(self.default_toleration_seconds)]
        if self.state_file is not None:
            args += ["--state-file", str(self.state_file)]
        if self.apiserver_log_level is not None:
            args += ["--log-level", self.apiserver_log_level]
        if self.simulated_nodes:
            args += ["--simulated-nodes", str(self.simulated_nodes)]
            if self.simulated_node_capacity:
                capacity = ",".join(f"{k}={v}" for k, v in self.simulated_node_capacity.items())
                args += ["--simulated-node-capacity", capacity]
            if self.simulated_pod_duration is not None:
                args += ["--simulated-pod-duration", str(self.simulated_pod_duration)]
        self.apiserver = self._spawn(args, "apiserver.log")
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            with open(log_path, "rb") as f:
                f.seek(offset)
                m = _LISTENING.search(f.read().decode(errors="replace"))
            if m and self.kubeconfig.exists():
                self.url = m.group(1).rstrip("/")
                break
            if self.apiserver.poll() is not None:
                raise ClusterError(
                    f"API server exited with {self.apiserver.returncode}:\n{self.log_tail('api')}"
                )
            time.sleep(0.05)
        else:
            raise ClusterError(
                f"API server did not start in {self.startup_timeout}s:\n{self.log_tail('api')}"
            )
        self.token = _kubeconfig_token(self.kubeconfig)

    def _start_agent(self) -> None:
        args = [
            "-m",
            "localcluster.node",
            "--kubeconfig",
            str(self.kubeconfig),
            "--node-name",
            self.node_name,
        ]
        args += ["--state-dir", str(self.node_state_dir), "--root", str(self.root)]
        args += ["--kubelet-port", str(self.kubelet_port), "--isolation", self.isolation]
        for name in self.pass_env:
            args += ["--pass-env", name]
        for pattern in self.unpullable_images:
            args += ["--unpullable-image", pattern]
        if self.node_monitor_grace_seconds is not None:
            # The kubelet renews its Lease every 10 s against a 40-50 s grace: keep that ratio.
            args += ["--heartbeat-seconds", str(min(10.0, max(0.2, self.node_monitor_grace_seconds / 5)))]
        if len(self.node_specs) > 1 or any(
            s.get("capacity") or s.get("labels") or s.get("taints") for s in self.node_specs
        ):
            for spec in self.node_specs:
                args += ["--node", json.dumps(spec)]
        self.agent = self._spawn(args, "node.log")
        deadline = time.monotonic() + self.startup_timeout
        waiting = set(self.node_names)
        while time.monotonic() < deadline:
            self.check_alive()
            for name in sorted(waiting):
                with contextlib.suppress(urllib.error.URLError, OSError, ValueError):
                    node = self.api("GET", f"/api/v1/nodes/{name}")
                    status = node.get("status") or {}
                    ready = any(
                        c.get("type") == "Ready" and c.get("status") == "True"
                        for c in status.get("conditions") or []
                    )
                    port = ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port")
                    if ready and port:
                        waiting.discard(name)
            if not waiting:
                return
            time.sleep(0.1)
        raise ClusterError(
            f"node agent did not register in {self.startup_timeout}s:\n{self.log_tail('node')}"
        )

    def _write_info(self) -> None:
        info = {
            "pid": os.getpid(),
            "apiserver": self.pids.get("apiserver"),
            "agent": self.pids.get("agent"),
            "url": self.url,
            "kubeconfig": str(self.kubeconfig),
            "node": self.node_name,
            "nodes": self.node_names,
        }
        (self.directory / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")


def _kubeconfig_token(path: Path) -> str:
    import yaml

    data = yaml.safe_load(path.read_text()) or {}
    for user in data.get("users") or []:
        token = (user.get("user") or {}).get("token")
        if token:
            return str(token)
    return ""


def node_control(
    directory: str | Path, name: str, action: str, *, keep_processes: bool = False
) -> dict[str, Any]:
    """Ask the node agents of the cluster in `directory` to stop or start node `name`."""
    path = Path(directory) / "node" / "control.json"
    try:
        control = json.loads(path.read_text())
    except (OSError, ValueError):
        raise ClusterError(f"no node agent runs from {directory} (no {path})") from None
    url = f"{control['url']}/nodes/{urllib.parse.quote(name, safe='')}/{action}"
    if keep_processes:
        url += "?keepProcesses=true"
    req = urllib.request.Request(url, data=b"", method="POST")  # noqa: S310 - 127.0.0.1
    req.add_header("Authorization", f"Bearer {control['token']}")
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:  # noqa: S310
            answer: dict[str, Any] = json.loads(resp.read())
    except urllib.error.HTTPError as e:
        try:
            message = json.loads(e.read()).get("error") or str(e)
        except ValueError:
            message = str(e)
        raise ClusterError(message) from None
    except (urllib.error.URLError, OSError) as e:
        raise ClusterError(f"the node agents of {directory} do not answer: {e}") from None
    return answer


def read_info(directory: str | Path) -> dict[str, Any] | None:
    try:
        info = json.loads((Path(directory) / INFO_FILE).read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def stop_by_info(directory: str | Path, timeout: float = 40.0) -> bool:
    """Stop the cluster recorded in `directory` (what `down` does). Returns whether one ran."""
    info = read_info(directory)
    if info is None:
        # An `up` killed before it recorded anything may still have started children.
        return bool(stop_holders(directory, timeout=timeout / 2))
    ran = False
    owner = int(info.get("pid") or 0)
    if owner and owner != os.getpid() and pid_alive(owner):
        ran = True
        # The owner (`up`) stops its children in order; wait for it.
        terminate_pid(owner, timeout=timeout, expect="localcluster")
    for key, expect in (("agent", "localcluster.node"), ("apiserver", "localcluster.apiserver")):
        pid = int(info.get(key) or 0)
        if pid and pid_alive(pid):
            ran = True
            terminate_pid(pid, timeout=timeout / 2, expect=expect)
    ran = bool(stop_holders(directory, timeout=timeout / 2)) or ran
    kill_pod_leftovers(Path(directory) / "node")
    with contextlib.suppress(OSError):
        (Path(directory) / INFO_FILE).unlink()
    return ran


def cluster_running(directory: str | Path) -> dict[str, Any] | None:
    info = read_info(directory)
    if info is None:
        return None
    pids = [int(info.get(k) or 0) for k in ("apiserver", "agent")]
    return info if all(p and pid_alive(p) for p in pids) else None
