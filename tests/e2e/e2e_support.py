"""What the end-to-end tests do with the local stack: kubectl, waiting, reading status."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml

from trainjob_operator.local.stack import LocalStack

REPO_ROOT = Path(__file__).resolve().parents[2]
KUBECTL = (
    shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which("kubectl") or "kubectl"
)
T = TypeVar("T")


class Cluster:
    """One namespace of the running stack."""

    def __init__(self, stack: LocalStack, namespace: str) -> None:
        self.stack = stack
        self.namespace = namespace

    def kubectl(self, *args: str, check: bool = True, stdin: str | None = None, timeout: float = 60) -> str:
        command = [KUBECTL, "--kubeconfig", str(self.stack.kubeconfig), "-n", self.namespace, *args]
        result = subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)} exited {result.returncode}: {result.stderr}{result.stdout}"
            )
        return result.stdout + (result.stderr if not check else "")

    def apply(self, manifest: dict[str, Any] | str) -> str:
        text = manifest if isinstance(manifest, str) else yaml.safe_dump(manifest)
        return self.kubectl("apply", "-f", "-", stdin=text)

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        out = self.kubectl("get", kind, name, "-o", "json", "--ignore-not-found", check=False)
        return json.loads(out) if out.strip().startswith("{") else None

    def job(self, name: str) -> dict[str, Any]:
        obj = self.get("trainjob", name)
        assert obj is not None, f"TrainJob {name} is gone"
        return obj

    def status(self, name: str) -> dict[str, Any]:
        return dict(self.job(name).get("status") or {})

    def pods(self, job: str) -> list[dict[str, Any]]:
        out = self.kubectl("get", "pods", "-l", f"trainjob.dev/name={job}", "-o", "json")
        return list(json.loads(out)["items"])

    def events(self, name: str) -> list[dict[str, Any]]:
        out = self.kubectl("get", "events", "--field-selector", f"involvedObject.name={name}", "-o", "json")
        return sorted(json.loads(out)["items"], key=lambda e: e["metadata"].get("creationTimestamp", ""))

    def wait_for_phase(self, name: str, *phases: str, timeout: float = 120) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            status = self.status(name)
            return status if status.get("phase") in phases else None

        return wait_for(
            reached, timeout, f"TrainJob {name} to reach {'/'.join(phases)}", self.describe_job(name)
        )

    def describe_job(self, name: str) -> Callable[[], str]:
        return lambda: self.kubectl("describe", "trainjob", name, check=False) + self.operator_log_tail()

    def operator_log_tail(self, lines: int = 40) -> str:
        try:
            text = self.stack.operator_log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n--- operator log ---\n" + "\n".join(text.splitlines()[-lines:])

    def dump_on_failure(self) -> None:
        """Nothing: failures carry `describe` output through wait_for's message."""


def wait_for(
    probe: Callable[[], T | None], timeout: float, what: str, explain: Callable[[], str] | None = None
) -> T:
    """Poll `probe` until it returns something other than None/False; fail with `explain()`."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            detail = explain() if explain else ""
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{detail}")
        time.sleep(0.25)


def trainjob(
    name: str,
    command: list[str],
    *,
    workers: int = 2,
    failure_policy: dict[str, Any] | None = None,
    extra_spec: dict[str, Any] | None = None,
    storage_uri: str = "s3://trainjob/e2e",
) -> dict[str, Any]:
    """A TrainJob manifest whose trainer runs `command` (in this Python environment)."""
    return {
        "apiVersion": "trainjob.dev/v1alpha1",
        "kind": "TrainJob",
        "metadata": {"name": name},
        "spec": {
            "workers": workers,
            "template": {"spec": {"containers": [{"name": "trainer", "image": "local", "command": command}]}},
            "storage": {"uri": storage_uri, "credentialsSecret": "trainjob-s3"},
            "failurePolicy": {"backoffSeconds": 1, **(failure_policy or {})},
            **(extra_spec or {}),
        },
    }


def python(code: str) -> list[str]:
    return ["python", "-c", code]
