"""Service-account tokens through TokenRequest, downward-API updates, PVC-backed directories and
activeDeadlineSeconds."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from localcluster import LocalCluster
from tests.localcluster.node_fixtures import (
    REPO_ROOT,
    Kube,
    cluster,
    cstatus,
    kube,
    out_volume,
    phase,
    pod,
    py,
)

__all__ = ["cluster", "kube"]

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def test_projected_service_account_token_is_accepted_by_the_api_server(kube: Kube, tmp_path: Path) -> None:
    kube.api(
        "POST",
        f"/api/v1/namespaces/{kube.ns}/serviceaccounts",
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "coord"}},
    )
    code = f"""
import json, os
d = '{SA_DIR}'
out = {{name: open(os.path.join(d, name)).read() for name in ('token', 'namespace')}}
out['host'] = os.environ['KUBERNETES_SERVICE_HOST'] + ':' + os.environ['KUBERNETES_SERVICE_PORT']
json.dump(out, open('/out/sa.json', 'w'))
"""
    container = {
        "name": "main",
        "command": py(code),
        "volumeMounts": [
            {"name": "out", "mountPath": "/out"},
            {"name": "sa", "mountPath": SA_DIR, "readOnly": True},
        ],
    }
    volumes = [
        out_volume(tmp_path),
        {
            "name": "sa",
            "projected": {
                "sources": [
                    {"serviceAccountToken": {"path": "token", "expirationSeconds": 3600}},
                    {
                        "downwardAPI": {
                            "items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]
                        }
                    },
                ]
            },
        },
    ]
    spec = pod("sa", [container], restartPolicy="Never", serviceAccountName="coord", volumes=volumes)
    spec["spec"]["automountServiceAccountToken"] = False
    kube.create(spec)
    p = kube.wait_phase("sa", "Succeeded", "Failed")
    assert phase(p) == "Succeeded", kube.kubectl("logs", "sa").stdout
    got = json.loads((tmp_path / "sa.json").read_text())
    assert got["namespace"] == kube.ns and got["token"]
    assert f"http://{got['host']}" == kube.cluster.url
    req = urllib.request.Request(f"{kube.cluster.url}/api/v1/namespaces/{kube.ns}/pods/sa")  # noqa: S310
    req.add_header("Authorization", f"Bearer {got['token']}")
    with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310 - the cluster's http URL
        assert json.loads(r.read())["metadata"]["name"] == "sa"


def test_downward_api_files_follow_label_changes(kube: Kube, tmp_path: Path) -> None:
    code = (
        "import shutil, time\n"
        "while True:\n    shutil.copy('/etc/podinfo/labels', '/out/labels')\n    time.sleep(0.2)"
    )
    container = {
        "name": "main",
        "command": py(code),
        "volumeMounts": [
            {"name": "out", "mountPath": "/out"},
            {"name": "podinfo", "mountPath": "/etc/podinfo"},
        ],
    }
    volumes = [
        out_volume(tmp_path),
        {
            "name": "podinfo",
            "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]},
        },
    ]
    kube.create(pod("labels", [container], volumes=volumes, labels={"v": "1"}))
    kube.wait_ready("labels")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not (tmp_path / "labels").exists():
        time.sleep(0.1)
    assert (tmp_path / "labels").read_text() == 'v="1"\n'
    kube.api(
        "PATCH",
        f"/api/v1/namespaces/{kube.ns}/pods/labels",
        {"metadata": {"labels": {"v": "2"}}},
        "application/merge-patch+json",
    )
    while time.monotonic() < deadline and (tmp_path / "labels").read_text() != 'v="2"\n':
        time.sleep(0.1)
    assert (tmp_path / "labels").read_text() == 'v="2"\n'


def test_claims_outlive_pods_and_deadline_fails_the_pod(kube: Kube) -> None:
    claim = [{"name": "data", "persistentVolumeClaim": {"claimName": "ckpt"}}]
    mount = [{"name": "data", "mountPath": "/mnt/ckpt"}]
    writer = {"name": "main", "command": py("open('/mnt/ckpt/f', 'w').write('kept')"), "volumeMounts": mount}
    kube.create(pod("writer", [writer], restartPolicy="Never", volumes=claim))
    kube.wait_phase("writer", "Succeeded")
    reader = {"name": "main", "command": py("print(open('/mnt/ckpt/f').read())"), "volumeMounts": mount}
    kube.create(pod("reader", [reader], restartPolicy="Never", volumes=claim))
    kube.wait_phase("reader", "Succeeded")
    assert kube.kubectl("logs", "reader").stdout.strip() == "kept"

    slow = {"name": "main", "command": py("import time; time.sleep(600)")}
    kube.create(pod("slow", [slow], restartPolicy="Never", activeDeadlineSeconds=1))
    p = kube.wait_phase("slow", "Failed", timeout=30)
    assert p["status"]["reason"] == "DeadlineExceeded"
    assert cstatus(p, "main")["state"]["terminated"]["exitCode"] == 143


# ---- node fallback -----------------------------------------------------------------------------
# The documented fallback without mount namespaces: processes run directly and find their volumes
# and hosts file through LOCALCLUSTER_* variables.


@pytest.fixture(scope="module")
def plain_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = LocalCluster(tmp_path_factory.mktemp("plain"), root=REPO_ROOT, isolation="none")
    c.start()
    try:
        yield c
    finally:
        c.stop()


def test_without_namespaces_volumes_are_found_through_env(
    plain_cluster: LocalCluster, tmp_path: Path
) -> None:
    plain_cluster.api("POST", "/api/v1/namespaces", {"metadata": {"name": "plain"}})
    kube = Kube(plain_cluster, "plain")
    kube.create({"kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"k": "v"}})
    code = f"""
import json, os
mounts = json.loads(os.environ['LOCALCLUSTER_MOUNTS'])
out = {{
    'k': open(os.path.join(mounts['/etc/cfg'], 'k')).read(),
    'vol': os.environ['LOCALCLUSTER_VOLUME_CFG'] == mounts['/etc/cfg'],
    'hosts': open(os.environ['LOCALCLUSTER_HOSTS_FILE']).read(),
    'real_mount': os.path.exists('/etc/cfg/k'),
}}
json.dump(out, open({str(tmp_path / "out.json")!r}, 'w'))
"""
    container = {
        "name": "main",
        "command": py(code),
        "volumeMounts": [{"name": "cfg", "mountPath": "/etc/cfg"}],
    }
    kube.create(
        pod(
            "plain",
            [container],
            restartPolicy="Never",
            volumes=[{"name": "cfg", "configMap": {"name": "cfg"}}],
        )
    )
    p = kube.wait_phase("plain", "Succeeded", "Failed")
    assert phase(p) == "Succeeded", kube.kubectl("logs", "plain").stdout
    out = json.loads((tmp_path / "out.json").read_text())
    assert out["k"] == "v" and out["vol"] and not out["real_mount"]
    assert p["status"]["podIP"] in out["hosts"]
