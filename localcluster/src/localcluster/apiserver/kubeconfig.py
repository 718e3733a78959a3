"""The kubeconfig clients use: one cluster (plain HTTP), one admin user with a bearer token."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

CONTEXT = "localcluster"


def kubeconfig(server_url: str, token: str, namespace: str = "default") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CONTEXT, "cluster": {"server": server_url}}],
        "users": [{"name": "admin", "user": {"token": token}}],
        "contexts": [
            {"name": CONTEXT, "context": {"cluster": CONTEXT, "user": "admin", "namespace": namespace}}
        ],
        "current-context": CONTEXT,
        "preferences": {},
    }


def write_kubeconfig(path: Path, server_url: str, token: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(yaml.safe_dump(kubeconfig(server_url, token), sort_keys=False))
    tmp.chmod(0o600)
    tmp.replace(path)
