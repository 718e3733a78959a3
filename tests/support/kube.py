"""What the end-to-end and chaos tests do with the local stack: kubectl on a namespace of their
own, reading a TrainJob's status, pods and events, waiting for a phase."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

from tests.support.processes import wait_for
from trainjob_operator.local.stack import LocalStack

KUBECTL = (
    shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which("kubectl") or "kubectl"
)


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


def namespace_in(stack: LocalStack, prefix: str) -> Iterator[Cluster]:
    """A fresh namespace (with the S3 credentials Secret) on a shared stack, deleted afterwards:
    tests share the stack without seeing each other's objects. Failures carry `describe` output
    through :func:`wait_for`'s message."""
    namespace = f"{prefix}-{uuid.uuid4().hex[:8]}"
    stack.prepare_namespace(namespace)
    kube = Cluster(stack, namespace)
    try:
        yield kube
    finally:
        kube.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
