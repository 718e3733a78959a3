"""TrainJob manifests for the tests and benchmarks that run jobs on the local stack."""

from __future__ import annotations

from typing import Any


def trainjob(
    name: str,
    command: list[str],
    *,
    workers: int = 2,
    failure_policy: dict[str, Any] | None = None,
    extra_spec: dict[str, Any] | None = None,
    storage_uri: str = "s3://trainjob/e2e",
) -> dict[str, Any]:
    """A TrainJob manifest whose trainer runs `command` (in this Python environment; the local
    cluster's node agent runs containers as processes, so the image is a placeholder), with a
    one-second restart backoff and the credentials Secret the local stack prepares."""
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
    """A container command that runs ``code`` with the pod's Python."""
    return ["python", "-c", code]
