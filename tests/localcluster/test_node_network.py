"""Pod IPs and cluster names: pods listen on their own loopback address and reach each other by the
names cluster DNS would give them (per-pod /etc/hosts in the pod's mount namespace)."""

from __future__ import annotations

from pathlib import Path

import pytest

from localcluster.node.sandbox import Isolation, detect_isolation
from tests.localcluster.node_fixtures import Kube, cluster, cstatus, kube, phase, pod, py

__all__ = ["cluster", "kube"]

pytestmark = pytest.mark.skipif(
    detect_isolation("auto").isolation is Isolation.NONE, reason="needs mount namespaces (unshare)"
)

SERVER = """
import http.server, os, socket
ip = os.environ['POD_IP']
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"{os.environ['NAME']} on {ip} host {socket.gethostname()}".encode()
        self.send_response(200); self.send_header('Content-Length', str(len(body))); self.end_headers()
        self.wfile.write(body)
http.server.HTTPServer((ip, 8080), H).serve_forever()
"""

CLIENT = """
import os, socket, sys, time, urllib.request
name = os.environ['TARGET']
for _ in range(100):
    try:
        ip = socket.gethostbyname(name)
        print(name, '->', ip, urllib.request.urlopen(f'http://{name}:8080/', timeout=5).read().decode())
        break
    except OSError as e:
        print('retry', name, e, file=sys.stderr); time.sleep(0.2)
else:
    sys.exit(1)
"""


def server_pod(
    name: str, hostname: str | None = None, subdomain: str | None = None, **labels: str
) -> dict[str, object]:
    env = [
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    ]
    extra: dict[str, object] = {"labels": labels}
    if hostname:
        extra["hostname"] = hostname
    if subdomain:
        extra["subdomain"] = subdomain
    probe = {"tcpSocket": {"port": "http"}, "periodSeconds": 1}
    ports = [{"name": "http", "containerPort": 8080}]
    container = {"name": "srv", "command": py(SERVER), "env": env, "readinessProbe": probe, "ports": ports}
    return pod(name, [container], **extra)


def client_pod(name: str, target: str) -> dict[str, object]:
    env = [{"name": "TARGET", "value": target}]
    return pod(name, [{"name": "cli", "command": py(CLIENT), "env": env}], restartPolicy="Never")


def test_pods_share_a_port_and_resolve_each_other_by_dns_names(kube: Kube) -> None:
    kube.create(
        {
            "kind": "Service",
            "metadata": {"name": "job"},
            "spec": {"clusterIP": "None", "selector": {"job": "j"}, "ports": [{"port": 8080}]},
        }
    )
    kube.create(
        {
            "kind": "Service",
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 8080}]},
        }
    )
    # Two servers on the same port, each on its own pod IP.
    kube.create(server_pod("job-0", hostname="rank0", subdomain="job", job="j"))
    kube.create(server_pod("web-1", app="web"))
    p0 = kube.wait_ready("job-0")
    p1 = kube.wait_ready("web-1")
    ip0, ip1 = p0["status"]["podIP"], p1["status"]["podIP"]
    assert ip0 != ip1 and ip0.startswith("127.") and ip1.startswith("127.")

    names = {
        "fqdn": f"rank0.job.{kube.ns}.svc.cluster.local",
        "short": "rank0.job",
        "svc": f"job.{kube.ns}.svc.cluster.local",
        "web": "web",
        "webns": f"web.{kube.ns}.svc",
    }
    for key, target in names.items():
        kube.create(client_pod(f"cli-{key}", target))
    for key, target in names.items():
        p = kube.wait_phase(f"cli-{key}", "Succeeded", "Failed")
        logs = kube.kubectl("logs", f"cli-{key}").stdout
        assert phase(p) == "Succeeded", logs
        expected_ip, expected_pod = (ip1, "web-1") if key.startswith("web") else (ip0, "job-0")
        assert f"{target} -> {expected_ip} {expected_pod} on {expected_ip}" in logs
    # The server's hostname is spec.hostname (its own UTS namespace).
    if detect_isolation("auto").uts:
        assert "host rank0" in kube.kubectl("logs", "cli-fqdn").stdout


def test_names_appear_when_the_peer_becomes_ready(kube: Kube, tmp_path: Path) -> None:
    """A client started before its server: the per-pod hosts file is rewritten in place and a
    running process sees the new name at its next lookup."""
    kube.create(
        {
            "kind": "Service",
            "metadata": {"name": "late"},
            "spec": {"clusterIP": "None", "selector": {"app": "late"}},
        }
    )
    target = f"late-0.late.{kube.ns}.svc.cluster.local"
    kube.create(client_pod("early", target))
    kube.wait_pod("early", lambda p: "running" in cstatus(p, "cli")["state"], what="client running")
    kube.create(server_pod("late-0", hostname="late-0", subdomain="late", app="late"))
    p = kube.wait_phase("early", "Succeeded", "Failed", timeout=60)
    logs = kube.kubectl("logs", "early").stdout
    assert phase(p) == "Succeeded", logs
    assert f"{target} -> " in logs


def test_pod_ip_is_freed_and_the_real_hosts_file_untouched(kube: Kube) -> None:
    before = Path("/etc/hosts").read_text()
    kube.create(pod("quick", [{"name": "c", "command": py("pass")}], restartPolicy="Never"))
    ip = kube.wait_phase("quick", "Succeeded")["status"]["podIP"]
    kube.delete_pod("quick")
    kube.wait_gone("quick")
    assert Path("/etc/hosts").read_text() == before
    assert ip not in before
