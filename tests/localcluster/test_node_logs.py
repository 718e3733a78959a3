"""`kubectl logs [-f] [--tail] [--previous]` through the API server to the node agent's endpoint."""

from __future__ import annotations

import os
import subprocess
import urllib.request

from localcluster import LocalCluster
from localcluster.node.agent import DEFAULT_MIN_CPU
from tests.localcluster.node_fixtures import Kube, cluster, cstatus, kube, pod, py

__all__ = ["cluster", "kube"]

TICKER = "import time\nfor i in range(10):\n    print('line', i, flush=True); time.sleep(0.3)\nprint('done')"


def test_kubectl_logs_and_tail(kube: Kube) -> None:
    code = "import sys\nfor i in range(5): print('out', i)\nprint('err', file=sys.stderr)"
    kube.create(pod("printer", [{"name": "main", "command": py(code)}], restartPolicy="Never"))
    kube.wait_phase("printer", "Succeeded")
    out = kube.kubectl("logs", "printer")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["out 0", "out 1", "out 2", "out 3", "out 4", "err"]
    tail = kube.kubectl("logs", "printer", "--tail=2").stdout.splitlines()
    assert tail == ["out 4", "err"]
    bad = kube.kubectl("logs", "printer", "-c", "nope")
    assert bad.returncode != 0


def test_kubectl_logs_follow_streams_until_the_container_exits(kube: Kube) -> None:
    kube.create(pod("ticker", [{"name": "main", "command": py(TICKER)}], restartPolicy="Never"))
    kube.wait_pod("ticker", lambda p: "running" in cstatus(p, "main")["state"], what="running")
    exe = kube.kubectl("version", "--client").args[0]
    proc = subprocess.Popen(
        [exe, "--kubeconfig", str(kube.cluster.kubeconfig), "-n", kube.ns, "logs", "-f", "ticker"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        # Lines arrive while the container runs, not at its end.
        running_then = "running" in cstatus(kube.pod("ticker") or {}, "main")["state"]
        rest, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines = [first.strip(), *rest.splitlines()]
    assert lines[0].startswith("line"), (lines, err)
    assert lines[-1] == "done" and "line 9" in lines
    assert running_then
    assert proc.returncode == 0


def test_kubelet_endpoint_directly(cluster: LocalCluster, kube: Kube) -> None:
    kube.create(pod("direct", [{"name": "main", "command": py("print('hello')")}], restartPolicy="Never"))
    kube.wait_phase("direct", "Succeeded")
    node = cluster.api("GET", "/api/v1/nodes/localnode")
    port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
    assert {"type": "InternalIP", "address": "127.0.0.1"} in node["status"]["addresses"]
    url = f"http://127.0.0.1:{port}/containerLogs/{kube.ns}/direct/main?tailLines=5"
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.read() == b"hello\n"
    # this machine's cpus, but at least DEFAULT_MIN_CPU (see the node README)
    assert int(node["status"]["capacity"]["cpu"]) == max(os.cpu_count() or 1, DEFAULT_MIN_CPU)
