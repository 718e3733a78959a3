"""TrainJob manifests for the tests and benchmarks that run jobs on the local stack."""

from __future__ import annotations

from functools import cache
from typing import Any

import jsonschema
import yaml

from tests.support.processes import REPO_ROOT
from trainjob_operator.api.crd import trainjob_openapi_schema

DIGITS_EXAMPLE = REPO_ROOT / "deploy" / "examples" / "digits.yaml"


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


def digits_job(name: str, *, storage_uri: str | None = None, **config: Any) -> dict[str, Any]:
    """The digits example (deploy/examples/digits.yaml) as `name`, what a user would apply: `config`
    overrides its config, its checkpoints go to `storage_uri` (default ``s3://trainjob/e2e-<name>``),
    and a restart waits one second."""
    manifest: dict[str, Any] = yaml.safe_load(DIGITS_EXAMPLE.read_text())
    manifest["metadata"]["name"] = name
    manifest["spec"]["config"] = {**manifest["spec"]["config"], **config}
    manifest["spec"]["storage"]["uri"] = storage_uri or f"s3://trainjob/e2e-{name}"
    manifest["spec"]["failurePolicy"]["backoffSeconds"] = 1
    return manifest


def python(code: str) -> list[str]:
    """A container command that runs ``code`` with the pod's Python."""
    return ["python", "-c", code]


def _without_kubernetes_extensions(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            k: _without_kubernetes_extensions(v) for k, v in node.items() if not k.startswith("x-kubernetes-")
        }
    if isinstance(node, list):
        return [_without_kubernetes_extensions(item) for item in node]
    return node


@cache
def _validator() -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(_without_kubernetes_extensions(trainjob_openapi_schema()))


def schema_errors(manifest: dict[str, Any]) -> list[str]:
    """Every error of the generated CRD schema (checked locally, without an API server) as
    '<json path>: <message>'."""
    return [f"{error.json_path}: {error.message}" for error in _validator().iter_errors(manifest)]
