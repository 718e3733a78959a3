"""The CRD is generated from the API types; the committed one must match, and its schema must
accept the examples (what it refuses: tests/badinput)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.manifests import schema_errors
from trainjob_operator.api.crd import trainjob_crd, trainjob_crd_yaml, trainjob_openapi_schema
from trainjob_operator.cli import main

ROOT = Path(__file__).resolve().parents[2]
COMMITTED_CRD = ROOT / "deploy" / "crds" / "trainjob.dev_trainjobs.yaml"
EXAMPLES = sorted((ROOT / "deploy" / "examples").glob("*.yaml"))


def test_committed_crd_is_the_generated_one() -> None:
    assert COMMITTED_CRD.read_text() == trainjob_crd_yaml(), "run `make crd`"


def test_crd_command_prints_and_writes_the_crd(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["crd"]) == 0
    assert capsys.readouterr().out == trainjob_crd_yaml()
    target = tmp_path / "out" / "crd.yaml"
    assert main(["crd", "--output", str(target)]) == 0
    assert target.read_text() == trainjob_crd_yaml()


def test_crd_names_columns_and_subresources() -> None:
    crd = trainjob_crd()
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["metadata"]["name"] == "trainjobs.trainjob.dev"
    names = crd["spec"]["names"]
    assert names == {
        "kind": "TrainJob",
        "listKind": "TrainJobList",
        "plural": "trainjobs",
        "singular": "trainjob",
        "shortNames": ["tj"],
        "categories": ["all"],
    }
    (version,) = crd["spec"]["versions"]
    assert version["name"] == "v1alpha1" and version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"]] == [
        "Phase",
        "Workers",
        "Iteration",
        "Progress",
        "ETA",
        "Restarts",
        "Disruptions",
        "Size",
        "Max",
        "Reason",
        "Age",
    ]


def _walk(node: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = [(path, node)]
    for name, child in node.get("properties", {}).items():
        found += _walk(child, f"{path}.{name}")
    if "items" in node:
        found += _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        found += _walk(node["additionalProperties"], f"{path}{{}}")
    return found


def test_schema_is_structural() -> None:
    schema = trainjob_openapi_schema()
    forbidden = {"$ref", "$defs", "anyOf", "oneOf", "allOf", "title", "exclusiveMinimum", "const"}
    for path, node in _walk(schema):
        assert "type" in node, f"{path} has no type"
        assert not forbidden & node.keys(), f"{path} has {forbidden & node.keys()}"
        if node["type"] == "object" and "properties" not in node and path != ".metadata":
            assert node.get("x-kubernetes-preserve-unknown-fields") or "additionalProperties" in node, path
        assert node.get("default", 0) is not None, f"{path} defaults to null"


def test_schema_details() -> None:
    schema = trainjob_openapi_schema()
    spec = schema["properties"]["spec"]
    props = spec["properties"]
    assert set(spec["required"]) == {"template", "storage"}
    assert props["template"] == {
        "type": "object",
        "description": props["template"]["description"],
        "x-kubernetes-preserve-unknown-fields": True,
    }
    assert "x-kubernetes-embedded-resource" not in props["template"]
    assert props["config"]["x-kubernetes-preserve-unknown-fields"] is True
    assert props["workers"]["minimum"] == 1 and props["workers"]["default"] == 1
    assert props["failurePolicy"]["default"] == {}
    fp = props["failurePolicy"]["properties"]
    assert fp["restartPolicy"]["enum"] == ["OnFailure", "ExitCode", "Never"]
    assert fp["backoffSeconds"]["default"] == 10
    assert props["checkpoints"]["properties"]["scoreOrder"]["enum"] == ["min", "max"]
    status = schema["properties"]["status"]["properties"]
    assert status["metrics"]["x-kubernetes-preserve-unknown-fields"] is True
    assert status["latestCheckpoint"]["properties"]["metrics"]["x-kubernetes-preserve-unknown-fields"] is True
    assert status["slowestRank"]["properties"]["lastReportTime"] == {"type": "string", "format": "date-time"}
    assert set(status) >= {
        "phase", "conditions", "observedGeneration", "attempt", "restarts", "workers", "startTime",
        "completionTime", "message", "attemptStartTime", "restartAfter", "iteration", "metrics",
        "lastReportTime", "latestCheckpoint", "bestCheckpoint", "checkpoints", "slowestRank",
    }  # fmt: skip
    progress = status["progress"]["properties"]
    assert progress["percentage"] == {
        "type": "integer", "description": progress["percentage"]["description"], "minimum": 0, "maximum": 100
    }  # fmt: skip
    assert status["progress"]["required"] == ["totalIterations", "percentage"]
    for path, node in _walk(schema):
        if path.count(".") <= 2 and path not in ("", ".metadata", ".apiVersion", ".kind"):
            assert node.get("description"), f"{path} has no description"


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_examples_validate(example: Path) -> None:
    manifest = yaml.safe_load(example.read_text())
    assert manifest["apiVersion"] == "trainjob.dev/v1alpha1" and manifest["kind"] == "TrainJob"
    assert schema_errors(manifest) == []


def test_digits_example_is_as_documented() -> None:
    spec = yaml.safe_load((ROOT / "deploy" / "examples" / "digits.yaml").read_text())["spec"]
    assert spec["workers"] == 2
    assert spec["template"]["spec"]["containers"][0]["command"] == ["python", "-m", "examples.digits.train"]
    assert set(spec["config"]) == {"epochs", "lr"}
    assert spec["storage"]["uri"] == "s3://trainjob/checkpoints" and spec["storage"]["credentialsSecret"]
    assert spec["checkpoints"] == {"numToKeep": 3, "scoreAttribute": "val_loss", "scoreOrder": "min"}
    assert yaml.safe_load((ROOT / "deploy" / "examples" / "finetune.yaml").read_text())["spec"]["resumeFrom"]


def _digits() -> dict[str, Any]:
    manifest: dict[str, Any] = yaml.safe_load((ROOT / "deploy" / "examples" / "digits.yaml").read_text())
    return manifest


def test_status_written_by_the_operator_and_coordinator_validates() -> None:
    manifest = _digits()
    manifest["status"] = {
        "phase": "Running",
        "conditions": [{"type": "Running", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}],
        "attempt": 1,
        "restarts": 1,
        "workers": {"active": 2, "ready": 2, "succeeded": 0, "failed": 0},
        "iteration": 42,
        "metrics": {"loss": 0.12, "note": "x"},
        "latestCheckpoint": {"uri": "s3://b/c", "iteration": 40, "metrics": {"loss": 0.1}, "sizeBytes": 10},
        "checkpoints": [{"uri": "s3://b/c", "iteration": 40, "score": 0.1}],
        "slowestRank": {"rank": 1, "iteration": 42, "lastReportTime": "2026-01-01T00:00:00Z"},
    }
    assert schema_errors(manifest) == []
    manifest["status"]["phase"] = "Sleeping"
    assert [e for e in schema_errors(manifest) if e.startswith("$.status.phase:")]


def test_crd_is_a_valid_kubernetes_object() -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    kubernetes_validate.validate(trainjob_crd(), "1.30.0", strict=True)
