"""`kubectl exec` (with and without `-i`/`-t`), the kubernetes client's `stream` and `portforward`,
through the API server (WebSockets, v5/v4.channel.k8s.io) to the node agent."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import termios
import time
from collections.abc import Iterator
from typing import Any

import pytest

from localcluster import LocalCluster
from tests.localcluster.api_harness import kubectl_binaries
from tests.localcluster.node_fixtures import Kube, cluster, cstatus, kube, pod, py

__all__ = ["cluster", "kube"]

SLEEPER = py("import time; time.sleep(600)")
# An HTTP server on the pod's own address (every pod has one in 127.0.0.0/8).
HTTP_SERVER = py(
    "import http.server, os\n"
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "    def do_GET(self):\n"
    "        body = ('hello from ' + os.environ['HOSTNAME']).encode()\n"
    "        self.send_response(200); self.send_header('Content-Length', str(len(body)))\n"
    "        self.end_headers(); self.wfile.write(body)\n"
    "http.server.HTTPServer((os.environ['LOCALCLUSTER_POD_IP'], 8080), H).serve_forever()\n"
)


@pytest.fixture
def core(cluster: LocalCluster) -> Iterator[Any]:
    from kubernetes import client, config

    api_client = config.new_client_from_config(config_file=str(cluster.kubeconfig))
    try:
        yield client.CoreV1Api(api_client)
    finally:
        api_client.close()


def running(kube: Kube, name: str, container: str = "main") -> dict[str, Any]:
    return kube.wait_pod(name, lambda p: "running" in cstatus(p, container)["state"], what="running")


def kubectl(
    kube: Kube, binary: str, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    cmd = [binary, "--kubeconfig", str(kube.cluster.kubeconfig), "-n", kube.ns, *args]
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=60, check=False)


# kubectl's own log line when the server's "streams are up" frame (an empty message on stdout,
# channel 1) arrives before kubectl has registered its stdout stream: client-go starts its reading
# loop and creates its streams concurrently (remotecommand/websocket.go, readDemuxLoop), so the
# frame can win. The real API server's stream translator sends the same frame at the same moment
# (apiserver/pkg/util/proxy/websocket.go, createWebSocketStreams), so kubectl prints this against
# a real cluster too, once in a while; the frame carries no data, so nothing is lost.
_KUBECTL_STREAM_RACE = re.compile(
    r"^E\d{4} [\d:.]+ +\d+ websocket\.go:\d+\] Unknown stream id 1, discarding message\n", re.M
)


def container_stderr(out: subprocess.CompletedProcess[str]) -> str:
    """What the command wrote to stderr: kubectl's stderr without its stream-registration race
    line (above), which is kubectl's log, not the container's output."""
    return _KUBECTL_STREAM_RACE.sub("", out.stderr)


def test_kubectl_exec_runs_in_the_containers_context(kube: Kube) -> None:
    kube.create(
        pod(
            "ctx",
            [
                {
                    "name": "main",
                    # the container writes a marker into its emptyDir at its mountPath
                    "command": py(
                        "import json, os, time\n"
                        "d = json.loads(os.environ['LOCALCLUSTER_MOUNTS']).get('/data', '/data')\n"
                        "open(os.path.join(d, 'marker'), 'w').write('written by main')\n"
                        "time.sleep(600)"
                    ),
                    "env": [{"name": "GREETING", "value": "hi there"}],
                    "workingDir": "/tmp",
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                }
            ],
            volumes=[{"name": "data", "emptyDir": {}}],
        )
    )
    running(kube, "ctx")
    node = kube.api("GET", f"/api/v1/nodes/{kube.cluster.node_name}")
    isolated = node["status"]["nodeInfo"]["containerRuntimeVersion"] != "localcluster://none"
    # With mount namespaces the volume is at its mountPath; without, where LOCALCLUSTER_MOUNTS says.
    where = "python -c \"import json,os;print(json.loads(os.environ['LOCALCLUSTER_MOUNTS'])['/data'])\""
    marker = "cat /data/marker" if isolated else f'cat "$({where})/marker"'
    script = f"echo $GREETING; pwd; {marker}; echo; echo to-stderr >&2"
    for binary in kubectl_binaries():
        out = kubectl(kube, binary, "exec", "ctx", "--", "sh", "-c", script)
        assert out.returncode == 0, out.stderr
        assert out.stdout.splitlines() == ["hi there", "/tmp", "written by main"], binary
        assert container_stderr(out) == "to-stderr\n", binary


def test_kubectl_exec_exit_code_stdin_and_errors(kube: Kube) -> None:
    containers = [{"name": "main", "command": SLEEPER}, {"name": "done", "command": ["true"]}]
    kube.create(pod("box", containers, restartPolicy="Never"))
    kube.wait_pod(
        "box",
        lambda p: "running" in cstatus(p, "main")["state"] and "terminated" in cstatus(p, "done")["state"],
        what="main running, done finished",
    )
    for binary in kubectl_binaries():
        failed = kubectl(kube, binary, "exec", "box", "--", "sh", "-c", "echo partial; exit 3")
        assert failed.returncode == 3, binary
        assert failed.stdout == "partial\n"
        assert "command terminated with exit code 3" in failed.stderr

        echoed = kubectl(
            kube, binary, "exec", "-i", "box", "--", "sh", "-c", "cat; echo end", stdin="one\ntwo\n"
        )
        assert echoed.returncode == 0, echoed.stderr
        assert echoed.stdout == "one\ntwo\nend\n", binary

        missing = kubectl(kube, binary, "exec", "box", "--", "no-such-command")
        assert missing.returncode != 0
        assert 'exec: "no-such-command": executable file not found in $PATH' in missing.stderr

        # a container that is not running: the error arrives as the real server's stream sends it
        ended = kubectl(kube, binary, "exec", "box", "-c", "done", "--", "true")
        assert ended.returncode == 1
        assert ended.stderr == (
            'error: Internal error occurred: unable to upgrade connection: container not found ("done")\n'
        )

        wrong = kubectl(kube, binary, "exec", "box", "-c", "nope", "--", "true")
        assert wrong.returncode != 0
        assert "container nope is not valid for pod box" in wrong.stderr


def test_kubectl_exec_it_gets_a_terminal_of_the_clients_size(kube: Kube) -> None:
    kube.create(pod("term", [{"name": "main", "command": SLEEPER}]))
    running(kube, "term")
    binary = kubectl_binaries()[0]
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 101, 0, 0))
    script = "test -t 0 && echo is-a-tty; stty size; read line; echo got:$line; exit 4"
    args = ["--kubeconfig", str(kube.cluster.kubeconfig), "-n", kube.ns, "exec", "-it", "term", "--"]
    proc = subprocess.Popen(
        [binary, *args, "sh", "-c", script],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
    )
    os.close(slave)
    seen = b""
    try:
        deadline = time.monotonic() + 60
        sent = False
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: kubectl exited and closed the terminal
                    break
                if not chunk:
                    break
                seen += chunk
            if not sent and b"33 101" in seen:
                os.write(master, b"abc\r")
                sent = True
            if proc.poll() is not None and not ready:
                break
        assert proc.wait(timeout=30) == 4, seen
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    text = seen.decode(errors="replace")
    assert "is-a-tty" in text
    assert "33 101" in text  # stty size: rows cols, from kubectl's resize message
    assert "got:abc" in text


def test_kubernetes_client_stream_exec(kube: Kube, core: Any) -> None:
    from kubernetes.stream import stream

    kube.create(
        pod("client", [{"name": "main", "command": SLEEPER, "env": [{"name": "WHO", "value": "pod"}]}])
    )
    running(kube, "client")
    out = stream(
        core.connect_get_namespaced_pod_exec,
        "client",
        kube.ns,
        command=["sh", "-c", "echo from $WHO"],
        stderr=True,
        stdin=False,
        stdout=True,
        tty=False,
    )
    assert out == "from pod\n"

    resp = stream(
        core.connect_get_namespaced_pod_exec,
        "client",
        kube.ns,
        command=["sh", "-c", "read x; echo got:$x; echo oops >&2; exit 7"],
        stderr=True,
        stdin=True,
        stdout=True,
        tty=False,
        _preload_content=False,
    )
    resp.write_stdin("hello\n")
    stdout, stderr = "", ""
    deadline = time.monotonic() + 30
    while resp.is_open() and time.monotonic() < deadline:
        resp.update(timeout=1)
        stdout += resp.read_stdout(timeout=0)
        stderr += resp.read_stderr(timeout=0)
    assert stdout == "got:hello\n"
    assert stderr == "oops\n"
    assert resp.returncode == 7  # from the error channel's NonZeroExitCode Status
    resp.close()


def test_kubernetes_client_portforward(kube: Kube, core: Any) -> None:
    from kubernetes.stream import portforward

    listening = {"tcpSocket": {"port": 8080}, "periodSeconds": 1}
    server = {"name": "main", "command": HTTP_SERVER, "readinessProbe": listening}
    kube.create(pod("web", [server], hostname="webhost"))
    kube.wait_ready("web")  # ready once it listens
    pf = portforward(core.connect_get_namespaced_pod_portforward, "web", kube.ns, ports="8080")
    sock = pf.socket(8080)
    sock.setblocking(True)
    sock.sendall(b"GET / HTTP/1.0\r\nHost: web\r\n\r\n")
    reply = b""
    while chunk := sock.recv(4096):
        reply += chunk
    sock.close()
    assert pf.error(8080) is None
    assert reply.startswith(b"HTTP/1.0 200"), reply
    assert reply.endswith(b"hello from webhost")

    # Nothing listens on 8081: the error channel says so, as the kubelet's does.
    pf = portforward(core.connect_get_namespaced_pod_portforward, "web", kube.ns, ports="8081")
    sock = pf.socket(8081)
    sock.setblocking(True)
    assert sock.recv(4096) == b""
    sock.close()
    error = pf.error(8081) or ""
    assert error.startswith("error forwarding port 8081 to pod web, uid "), error
    assert "connection refused" in error.lower()
