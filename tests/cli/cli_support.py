"""What the CLI tests share: running `trainjob` as a subprocess, and digits manifests."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.manifests import digits_job
from trainjob_operator.local.stack import LocalStack

REPO_ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "cli"


@dataclass
class Cli:
    """Runs `trainjob` as a user would: a subprocess against the stack's kubeconfig, without
    AWS_* in its environment (so storage credentials come from the job's Secret)."""

    stack: LocalStack
    workdir: Path

    def env(self) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
        env.pop("KUBECONFIG", None)
        return env

    def __call__(
        self, *args: str, namespace: str = NAMESPACE, timeout: float = 60, kubeconfig: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "trainjob_operator", *args]
        if args and args[0] not in ("--help", "demo"):
            command += ["--kubeconfig", kubeconfig or str(self.stack.kubeconfig), "-n", namespace]
        return subprocess.run(
            command, cwd=self.workdir, env=self.env(), capture_output=True, text=True, timeout=timeout
        )


def digits_manifest(name: str, **config: Any) -> dict[str, Any]:
    """The digits example, on storage of its own (CLI tests reuse job names)."""
    return digits_job(name, storage_uri=f"s3://trainjob/cli-{uuid.uuid4().hex[:8]}", **config)


@dataclass(frozen=True)
class FinishedJob:
    name: str
    submit: subprocess.CompletedProcess[str]
