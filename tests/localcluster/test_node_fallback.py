"""The documented fallback without mount namespaces: processes run directly and find their volumes
and hosts file through LOCALCLUSTER_* variables."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from node_fixtures import REPO_ROOT, Kube, phase, pod, py

from localcluster import LocalCluster


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
