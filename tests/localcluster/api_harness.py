"""Helpers for the API server tests: the server as a real subprocess, kubectl, raw HTTP."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.support.processes import stop_process

VENV_BIN = Path(sys.executable).parent
SYSTEM_KUBECTL = "/usr/bin/kubectl"


def kubectl_binaries() -> list[str]:
    """The kubectl builds on this machine: the image's (1.32) and the venv's pinned one."""
    found = [p for p in (SYSTEM_KUBECTL, str(VENV_BIN / "kubectl")) if Path(p).exists()]
    return found or [shutil.which("kubectl") or "kubectl"]


@dataclass
class APIServerProcess:
    workdir: Path
    proc: subprocess.Popen[str]
    url: str
    kubeconfig: Path
    extra_args: list[str] = field(default_factory=list)

    @property
    def token(self) -> str:
        cfg = yaml.safe_load(self.kubeconfig.read_text())
        return str(cfg["users"][0]["user"]["token"])

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def env(self) -> dict[str, str]:
        """Environment for clients: this kubeconfig and a private HOME (kubectl's discovery cache)."""
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["HOME"] = str(self.workdir / "home")
        return env

    def kubectl(
        self,
        *args: str,
        check: bool = True,
        timeout: float = 60,
        input: str | None = None,
        binary: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        cmd = [binary or kubectl_binaries()[0], *args]
        result = subprocess.run(
            cmd, env=self.env(), capture_output=True, text=True, timeout=timeout, input=input, check=False
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
            )
        return result

    def stop(self) -> None:
        stop_process(self.proc)

    def log(self) -> str:
        path = self.workdir / "apiserver.log"
        return path.read_text() if path.exists() else ""


def start_apiserver(workdir: Path, *extra_args: str, timeout: float = 30) -> APIServerProcess:
    """`python -m localcluster.apiserver --port 0` in a subprocess; returns once it says it listens."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "home").mkdir(exist_ok=True)
    kubeconfig = workdir / "kubeconfig"
    log = open(workdir / "apiserver.log", "a")  # noqa: SIM115 - the child process keeps writing to it
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "localcluster.apiserver",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--kubeconfig",
            str(kubeconfig),
            *extra_args,
        ],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    log.close()
    line: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        line.append(proc.stdout.readline())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    if not line or "listening on" not in line[0]:
        stop_process(proc)
        raise RuntimeError(f"apiserver did not start: {line!r}\n{(workdir / 'apiserver.log').read_text()}")
    url = line[0].strip().rsplit(" ", 1)[1]
    return APIServerProcess(workdir, proc, url, kubeconfig, list(extra_args))


WIDGET_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.dev"},
    "spec": {
        "group": "example.dev",
        "scope": "Namespaced",
        "names": {
            "plural": "widgets",
            "singular": "widget",
            "kind": "Widget",
            "shortNames": ["wd"],
            "categories": ["all"],
        },
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {
                    "status": {},
                    "scale": {"specReplicasPath": ".spec.size", "statusReplicasPath": ".status.size"},
                },
                "additionalPrinterColumns": [
                    {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
                    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                    {
                        "name": "Ready",
                        "type": "string",
                        "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
                    },
                    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                ],
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "description": "A widget for tests.",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "description": "What the widget should be.",
                                "required": ["size"],
                                "properties": {
                                    "size": {
                                        "type": "integer",
                                        "minimum": 1,
                                        "maximum": 100,
                                        "description": "How big.",
                                    },
                                    "color": {"type": "string", "enum": ["red", "blue"], "default": "red"},
                                    "name": {
                                        "type": "string",
                                        "minLength": 2,
                                        "maxLength": 8,
                                        "pattern": "^[a-z]+$",
                                    },
                                    "ratio": {"type": "number", "exclusiveMinimum": True, "minimum": 0},
                                    "port": {"x-kubernetes-int-or-string": True},
                                    "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
                                    "when": {"type": "string", "format": "date-time"},
                                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                                    "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                                    "template": {
                                        "type": "object",
                                        "x-kubernetes-embedded-resource": True,
                                        "x-kubernetes-preserve-unknown-fields": True,
                                    },
                                    "nested": {
                                        "type": "object",
                                        "default": {},
                                        "properties": {"level": {"type": "integer", "default": 5}},
                                    },
                                    "items": {
                                        "type": "array",
                                        "x-kubernetes-list-type": "map",
                                        "x-kubernetes-list-map-keys": ["name"],
                                        "items": {
                                            "type": "object",
                                            "required": ["name"],
                                            "properties": {
                                                "name": {"type": "string"},
                                                "value": {"type": "string"},
                                            },
                                        },
                                    },
                                },
                            },
                            "status": {
                                "type": "object",
                                "properties": {
                                    "phase": {"type": "string"},
                                    "size": {"type": "integer"},
                                    "conditions": {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "properties": {
                                                "type": {"type": "string"},
                                                "status": {"type": "string"},
                                            },
                                        },
                                    },
                                },
                            },
                        },
                    }
                },
            }
        ],
    },
}


@dataclass
class Response:
    status: int
    body: Any
    headers: dict[str, str]
    raw: bytes = b""


class HTTP:
    """Raw HTTP to the API server, for what the kubernetes client hides (status codes, headers)."""

    def __init__(self, server: APIServerProcess) -> None:
        self.server = server

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
        token: str | None = None,
    ) -> Response:
        import json
        import urllib.error
        import urllib.request

        data: bytes | None
        if body is None:
            data = None
        elif isinstance(body, bytes | str):
            data = body.encode() if isinstance(body, str) else body
        else:
            data = json.dumps(body).encode()
        hdrs = {"Authorization": f"Bearer {token or self.server.token}"}
        if data is not None:
            hdrs["Content-Type"] = content_type
        hdrs.update(headers or {})
        req = urllib.request.Request(  # noqa: S310 - http://127.0.0.1 only
            self.server.url + path, data=data, headers=hdrs, method=method
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310
                raw = resp.read()
                status = resp.status
                rh = dict(resp.headers)
        except urllib.error.HTTPError as err:
            raw = err.read()
            status = err.code
            rh = dict(err.headers)
        try:
            parsed: Any = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode()
        return Response(status, parsed, rh, raw)

    def get(self, path: str, **kw: Any) -> Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any, **kw: Any) -> Response:
        return self.request("POST", path, body, **kw)

    def put(self, path: str, body: Any, **kw: Any) -> Response:
        return self.request("PUT", path, body, **kw)

    def patch(
        self, path: str, body: Any, content_type: str = "application/merge-patch+json", **kw: Any
    ) -> Response:
        return self.request("PATCH", path, body, content_type=content_type, **kw)

    def delete(self, path: str, body: Any = None, **kw: Any) -> Response:
        return self.request("DELETE", path, body, **kw)
