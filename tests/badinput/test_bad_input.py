"""Bad input, one table: each row is an input and the exact error a user sees. Below it, two tables
that go through every constraint by the field the refusal names: the CRD schema's and the Python
API types'. (The coordinator's HTTP refusals are in test_coordinator_http.py.)

Kinds of row:
  schema    a TrainJob manifest checked against the generated CRD schema, locally (jsonschema)
  apiserver a TrainJob manifest POSTed to the real API server (Status message of the 422)
  semantic  what the schema cannot express: the operator's reconcile fails the job (status.message)
  report    a ``worker_sdk.report()`` call (standalone session): the exception and its text
  ckpt      ``Checkpoint`` paths
  coord     a request to the coordinator's HTTP API: status code and ``error`` (and nothing written)
  cli       the ``trainjob`` CLI: exit code and the last stderr line
"""

from __future__ import annotations

import asyncio
import copy
import json
import math
import os
import subprocess
import sys
import urllib.error
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer
from pydantic import ValidationError

from localcluster import LocalCluster
from tests.support.manifests import schema_errors
from trainjob_operator.api.types import TrainJobSpec
from trainjob_operator.coordinator.committing import RetentionPolicy
from trainjob_operator.coordinator.server import create_app
from trainjob_operator.coordinator.service import Coordinator, CoordinatorConfig
from trainjob_operator.coordinator.sinks import StatusSink
from trainjob_operator.reconciling import Observation, OperatorSettings, reconcile
from worker_sdk import session
from worker_sdk.storage import open_storage

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = REPO_ROOT / "deploy" / "examples" / "digits.yaml"
TOKEN = "job-a-token-0123456789"
OTHER_JOB_TOKEN = "job-b-token-9876543210"
_DELETE = object()


@dataclass(frozen=True)
class Row:
    id: str
    kind: str
    input: Any
    expected: str


def manifest(**changes: Any) -> dict[str, Any]:
    """The digits example with dotted-path changes (`_DELETE` removes the key)."""
    obj: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    obj["metadata"]["namespace"] = "bad"
    for path, value in changes.items():
        *parents, last = path.split("__")
        node = obj
        for key in parents:
            node = node.setdefault(key, {})
        if value is _DELETE:
            node.pop(last, None)
        else:
            node[last] = value
    return obj


def report_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"rank": 0, "attempt": 0, "iteration": 1, "metrics": {"loss": 0.5}, "time": 1.0}
    body.update(changes)
    return body


def ckpt(*files: tuple[str, int]) -> dict[str, Any]:
    return {"dirName": "checkpoint_000001", "files": [{"path": p, "size": s} for p, s in files]}


ROWS: list[Row] = [
    # ---- TrainJob manifests: the CRD schema ------------------------------------------------------
    Row("workers-0", "schema", {"spec__workers": 0}, "$.spec.workers: 0 is less than the minimum of 1"),
    Row(
        "workers-string", "schema", {"spec__workers": "two"}, "$.spec.workers: 'two' is not of type 'integer'"
    ),
    Row("no-template", "schema", {"spec__template": _DELETE}, "$.spec: 'template' is a required property"),
    Row(
        "bad-restart-policy",
        "schema",
        {"spec__failurePolicy__restartPolicy": "Always"},
        "$.spec.failurePolicy.restartPolicy: 'Always' is not one of ['OnFailure', 'ExitCode', 'Never']",
    ),
    Row(
        "negative-num-to-keep",
        "schema",
        {"spec__checkpoints__numToKeep": -1},
        "$.spec.checkpoints.numToKeep: -1 is less than the minimum of 1",
    ),
    Row(
        "negative-max-restarts",
        "schema",
        {"spec__failurePolicy__maxRestarts": -1},
        "$.spec.failurePolicy.maxRestarts: -1 is less than the minimum of 0",
    ),
    Row("no-storage", "schema", {"spec__storage": _DELETE}, "$.spec: 'storage' is a required property"),
    Row("config-list", "schema", {"spec__config": [1, 2]}, "$.spec.config: [1, 2] is not of type 'object'"),
    # ---- the same through the real API server ---------------------------------------------------
    Row(
        "api-workers-0",
        "apiserver",
        {"spec__workers": 0},
        '422 TrainJob.trainjob.dev "api-workers-0" is invalid: spec.workers: Invalid value: 0: '
        "spec.workers in body should be greater than or equal to 1",
    ),
    Row(
        "api-no-template",
        "apiserver",
        {"spec__template": _DELETE},
        '422 TrainJob.trainjob.dev "api-no-template" is invalid: spec.template: Required value',
    ),
    Row(
        "api-bad-restart-policy",
        "apiserver",
        {"spec__failurePolicy__restartPolicy": "Always"},
        '422 TrainJob.trainjob.dev "api-bad-restart-policy" is invalid: spec.failurePolicy.restartPolicy: '
        'Unsupported value: "Always": supported values: "OnFailure", "ExitCode", "Never"',
    ),
    Row(
        "api-negative-num-to-keep",
        "apiserver",
        {"spec__checkpoints__numToKeep": -1},
        '422 TrainJob.trainjob.dev "api-negative-num-to-keep" is invalid: spec.checkpoints.numToKeep: '
        "Invalid value: -1: spec.checkpoints.numToKeep in body should be greater than or equal to 1",
    ),
    # ---- TrainJob manifests: what the operator refuses -----------------------------------------
    Row(
        "no-trainer-container",
        "semantic",
        {"template": {"spec": {"containers": [{"name": "main", "image": "x"}]}}},
        "Failed: spec.template.spec.containers: no container named 'trainer' (found main)",
    ),
    Row(
        "name-too-long",
        "semantic",
        {"name": "d" * 57},
        f"Failed: metadata.name: '{'d' * 57}' is too long: pod hostnames <name>-<attempt>-<rank> such as "
        f"'{'d' * 57}-9999-1' must have at most 63 characters",
    ),
    Row(
        "storage-gs",
        "semantic",
        {"storage": {"uri": "gs://bucket/ckpt"}},
        "Failed: spec.storage.uri: scheme of 'gs://bucket/ckpt' must be one of s3://, file://",
    ),
    # ---- report() arguments ----------------------------------------------------------------------
    Row(
        "metrics-list",
        "report",
        {"metrics": [0.5]},
        "ProtocolError: metrics must be a dict of name -> number or string, got list",
    ),
    Row(
        "metrics-nan",
        "report",
        {"metrics": {"loss": math.nan}},
        "ProtocolError: metrics['loss'] is nan: NaN and infinities are not JSON; report a finite number, "
        "or str(value) if you want to record it",
    ),
    Row(
        "metrics-inf",
        "report",
        {"metrics": {"loss": math.inf}},
        "ProtocolError: metrics['loss'] is inf: NaN and infinities are not JSON; report a finite number, "
        "or str(value) if you want to record it",
    ),
    Row(
        "metrics-tensor",
        "report",
        {"metrics": {"loss": "TENSOR"}},
        "ProtocolError: metrics['loss'] has type Tensor: only numbers, strings, booleans and None are "
        "allowed (convert tensors with .item())",
    ),
    Row(
        "upload-mode",
        "report",
        {"upload": "later", "checkpoint": "DIR"},
        "ValueError: upload must be 'sync' or 'async', got 'later'",
    ),
    Row(
        "checkpoint-dir-missing",
        "report",
        {"checkpoint": "MISSING"},
        "FileNotFoundError: checkpoint directory {tmp}/nowhere does not exist",
    ),
    Row(
        "checkpoint-symlink-escapes",
        "report",
        {"checkpoint": "ESCAPING"},
        "ValueError: checkpoint file escape is a symlink to {tmp}/secret, outside the checkpoint directory "
        "{tmp}/escaping: copy the file into the directory instead",
    ),
    Row(
        "checkpoint-dir-name",
        "report",
        {"checkpoint": "DIR", "checkpoint_dir_name": "../up"},
        "ProtocolError: invalid checkpoint directory name '../up': use letters, digits, '.', '_' and '-' "
        "(one path component, at most 128 characters)",
    ),
    Row(
        "checkpoint-not-a-checkpoint",
        "report",
        {"checkpoint": "PATH"},
        "TypeError: checkpoint must be a worker_sdk.Checkpoint (Checkpoint.from_directory(path)), "
        "got PosixPath",
    ),
    # ---- Checkpoint paths ------------------------------------------------------------------------
    Row(
        "ckpt-missing",
        "ckpt",
        "MISSING",
        "FileNotFoundError: checkpoint directory {tmp}/nowhere does not exist",
    ),
    Row("ckpt-file", "ckpt", "FILE", "NotADirectoryError: checkpoint path {tmp}/file.pt is not a directory"),
    # ---- coordinator requests --------------------------------------------------------------------
    Row("coord-no-token", "coord", {"token": None, "json": report_body()}, "401 missing bearer token"),
    Row("coord-wrong-token", "coord", {"token": "nope", "json": report_body()}, "401 wrong token"),
    Row(
        "coord-other-jobs-token",
        "coord",
        {"token": OTHER_JOB_TOKEN, "json": report_body()},
        "401 wrong token",
    ),
    Row(
        "coord-other-attempt",
        "coord",
        {"json": report_body(attempt=3)},
        "409 attempt 3 is over or unknown: this coordinator serves attempt 0",
    ),
    Row(
        "coord-unknown-rank",
        "coord",
        {"json": report_body(rank=7)},
        "422 rank 7 is out of range: the world size is 2",
    ),
    Row(
        "coord-path-traversal",
        "coord",
        {"json": report_body(checkpoint=ckpt(("../../other/model.pt", 1)))},
        "400 checkpoint.files[0].path: invalid storage key '../../other/model.pt': "
        "'.' and '..' are not allowed",
    ),
    Row(
        "coord-absolute-path",
        "coord",
        {"json": report_body(checkpoint=ckpt(("/etc/passwd", 1)))},
        "400 checkpoint.files[0].path: invalid storage key '/etc/passwd': must be a relative path",
    ),
    Row(
        "coord-manifest-name",
        "coord",
        {"json": report_body(checkpoint=ckpt((".trainjob-checkpoint.json", 1)))},
        "400 checkpoint.files[0].path: .trainjob-checkpoint.json is reserved for the manifest",
    ),
    Row(
        "coord-10mb-body",
        "coord",
        {"data": b"{" + b" " * (10 * 1024 * 1024) + b"}"},
        "413 body of 10485762 bytes is over the 1048576 byte limit",
    ),
    Row(
        "coord-malformed-json",
        "coord",
        {"data": b'{"rank": 0,'},
        "400 malformed JSON: Expecting property name enclosed in double quotes: line 1 column 12 (char 11)",
    ),
    Row(
        "coord-nan",
        "coord",
        {"data": b'{"rank":0,"attempt":0,"iteration":1,"metrics":{"l":NaN}}'},
        "400 malformed JSON: NaN is not valid JSON",
    ),
    Row("coord-not-object", "coord", {"json": [1, 2]}, "400 report must be a JSON object"),
    Row(
        "coord-iteration-0",
        "coord",
        {"json": report_body(iteration=0)},
        "400 report: rank and attempt must be >= 0 and iteration >= 1",
    ),
    # ---- the CLI -------------------------------------------------------------------------------
    Row(
        "cli-unknown-subcommand",
        "cli",
        ["frobnicate"],
        "2 trainjob: error: argument COMMAND: invalid choice: 'frobnicate' (choose from 'submit', 'list', "
        "'status', 'logs', 'metrics', 'checkpoints', 'dashboard', 'demo', 'local', 'operator', "
        "'coordinator', 'crd')",
    ),
    Row(
        "cli-status-unknown-job",
        "cli-api",
        ["status", "nope"],
        '1 error: TrainJob "nope" not found in namespace "bad"',
    ),
    Row(
        "cli-submit-not-yaml",
        "cli-api",
        ["submit", "BROKEN"],
        '1 error: broken.yaml is not valid YAML: while parsing a flow sequence in "<unicode string>", '
        "line 1, column 7: spec: [unclosed ^ expected ',' or ']', but got '<stream end>' in "
        '"<unicode string>", line 2, column 1: ^',
    ),
    Row(
        "cli-submit-a-pod",
        "cli-api",
        ["submit", "POD"],
        "1 error: pod.yaml document 1 is v1/Pod, not a trainjob.dev/v1alpha1 TrainJob "
        "(apply other objects with kubectl)",
    ),
]


# ---- runners ------------------------------------------------------------------------------------


def run_schema(row: Row, **_: Any) -> str:
    errors = schema_errors(manifest(**row.input))
    return "\n".join(sorted(errors))


def run_apiserver(row: Row, apiserver: LocalCluster, **_: Any) -> str:
    obj = manifest(**row.input)
    obj["metadata"]["name"] = row.id
    try:
        apiserver.api("POST", "/apis/trainjob.dev/v1alpha1/namespaces/bad/trainjobs", obj)
    except urllib.error.HTTPError as exc:
        status = json.loads(exc.read())
        return f"{exc.code} {status['message']}"
    return "accepted"


def run_semantic(row: Row, **_: Any) -> str:
    overrides = dict(row.input)
    obj = manifest()
    obj["metadata"] = {
        "name": overrides.pop("name", "digits"),
        "namespace": "bad",
        "uid": "uid-1",
        "generation": 1,
        "creationTimestamp": "2026-01-01T12:00:00Z",
    }
    obj["spec"].update(overrides)
    settings = OperatorSettings(coordinator_image="example/coordinator:test", token_factory=lambda: "t")
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    decision = reconcile(obj, Observation.from_objects((), frozenset()), now, settings)
    return f"{decision.status_patch.get('phase')}: {decision.status_patch.get('message')}"


def _paths(tmp_path: Path) -> dict[str, Any]:
    directory = tmp_path / "ckpt"
    directory.mkdir(exist_ok=True)
    (directory / "model.pt").write_bytes(b"weights")
    escaping = tmp_path / "escaping"
    escaping.mkdir(exist_ok=True)
    (tmp_path / "secret").write_text("outside")
    if not (escaping / "escape").is_symlink():
        (escaping / "escape").symlink_to(tmp_path / "secret")
    (tmp_path / "file.pt").write_bytes(b"x")
    return {
        "DIR": directory,
        "ESCAPING": escaping,
        "MISSING": tmp_path / "nowhere",
        "FILE": tmp_path / "file.pt",
    }


def run_report(row: Row, tmp_path: Path, **_: Any) -> str:
    import torch

    import worker_sdk as train

    paths = _paths(tmp_path)
    kwargs = dict(row.input)
    metrics = kwargs.pop("metrics", {"loss": 0.5})
    if isinstance(metrics, dict) and metrics.get("loss") == "TENSOR":
        metrics = {"loss": torch.tensor(0.5)}
    where = kwargs.get("checkpoint")
    try:
        if where == "PATH":
            kwargs["checkpoint"] = paths["DIR"]  # a path, not a Checkpoint
        elif where is not None:
            kwargs["checkpoint"] = train.Checkpoint.from_directory(paths[where])
        train.report(metrics, **kwargs)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return "accepted"


def run_ckpt(row: Row, tmp_path: Path, **_: Any) -> str:
    import worker_sdk as train

    path = _paths(tmp_path)[row.input]
    try:
        with train.Checkpoint.from_directory(path).as_directory():
            pass
        train.report({"x": 1}, checkpoint=train.Checkpoint.from_directory(path))
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return "accepted"


class _NullSink(StatusSink):
    async def publish(self, patch: dict[str, Any]) -> None:
        return None


async def _coordinator_request(row: Row, storage_root: Path) -> str:
    storage = open_storage(storage_root.as_uri(), retry_budget_seconds=1.0)
    config = CoordinatorConfig(
        job="a", namespace="ml", world_size=2, attempt=0, retention=RetentionPolicy(), status_interval=0.2
    )
    client: TestClient[Any, Any] = TestClient(
        TestServer(create_app(Coordinator(config, storage, _NullSink()), TOKEN))
    )
    await client.start_server()
    try:
        token = row.input.get("token", TOKEN)
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        if "data" in row.input:
            headers["Content-Type"] = "application/json"
            response = await client.post("/v1/reports", data=row.input["data"], headers=headers)
        else:
            response = await client.post("/v1/reports", json=row.input["json"], headers=headers)
        body = await response.json()
        health = await client.get("/healthz")
        assert health.status == 200
        return f"{response.status} {body.get('error', body)}"
    finally:
        await client.close()


def run_coord(row: Row, tmp_path: Path, **_: Any) -> str:
    storage_root = tmp_path / "storage"
    storage_root.mkdir()
    answer = asyncio.run(_coordinator_request(row, storage_root))
    written = [p for p in storage_root.rglob("*") if p.is_file()]
    assert written == [], f"a refused request wrote {written}"
    return answer


def _cli(args: list[str], kubeconfig: Path | None, cwd: Path) -> str:
    command = [sys.executable, "-m", "trainjob_operator", *args]
    if kubeconfig is not None:
        command += ["--kubeconfig", str(kubeconfig), "-n", "bad"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "KUBECONFIG"}
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
    lines = result.stderr.strip().splitlines()
    return f"{result.returncode} {lines[-1] if lines else ''}"


def run_cli(row: Row, tmp_path: Path, **_: Any) -> str:
    return _cli(list(row.input), None, tmp_path)


def run_cli_api(row: Row, tmp_path: Path, apiserver: LocalCluster, **_: Any) -> str:
    (tmp_path / "broken.yaml").write_text("spec: [unclosed\n")
    (tmp_path / "pod.yaml").write_text(
        yaml.safe_dump({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}})
    )
    args = [{"BROKEN": "broken.yaml", "POD": "pod.yaml"}.get(a, a) for a in row.input]
    return _cli(args, apiserver.kubeconfig, tmp_path)


RUNNERS: dict[str, Callable[..., str]] = {
    "schema": run_schema,
    "apiserver": run_apiserver,
    "semantic": run_semantic,
    "report": run_report,
    "ckpt": run_ckpt,
    "coord": run_coord,
    "cli": run_cli,
    "cli-api": run_cli_api,
}


@pytest.fixture
def standalone_sdk(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """A standalone SDK session (no coordinator) storing under tmp_path; closed afterwards."""
    for name in list(os.environ):
        if name.startswith("TRAINJOB_") or name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TRAINJOB_STORAGE_URI", (tmp_path / "storage").as_uri())
    monkeypatch.setenv("TRAINJOB_NAME", "badinput")
    session.shutdown(wait_settled=False)
    try:
        yield
    finally:
        session.shutdown(wait_settled=False)


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_bad_input_gives_the_exact_error(row: Row, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    extra: dict[str, Any] = {}
    if row.kind in ("apiserver", "cli-api"):
        extra["apiserver"] = request.getfixturevalue("apiserver")
    if row.kind in ("report", "ckpt"):
        request.getfixturevalue("standalone_sdk")
    actual = RUNNERS[row.kind](row, tmp_path=tmp_path, **extra)
    expected = row.expected.replace("{tmp}", str(tmp_path))
    assert actual == expected


# ---- every schema constraint, by the field it names (the table above has the exact messages) ----


def _digits() -> dict[str, Any]:
    return dict(yaml.safe_load(EXAMPLE.read_text()))


def _set(manifest: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    manifest = copy.deepcopy(manifest)
    *parents, last = path.split(".")
    node = manifest
    for key in parents:
        node = node.setdefault(key, {})
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return manifest


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("spec.workers", 0, "$.spec.workers"),
        ("spec.workers", "two", "$.spec.workers"),
        ("spec.procsPerWorker", 0, "$.spec.procsPerWorker"),
        ("spec.template", _DELETE, "$.spec"),
        ("spec.template", "pod", "$.spec.template"),
        ("spec.failurePolicy.restartPolicy", "Always", "$.spec.failurePolicy.restartPolicy"),
        ("spec.failurePolicy.maxRestarts", -1, "$.spec.failurePolicy.maxRestarts"),
        ("spec.failurePolicy.backoffSeconds", -5, "$.spec.failurePolicy.backoffSeconds"),
        ("spec.storage.uri", _DELETE, "$.spec.storage"),
        ("spec.storage.uri", "", "$.spec.storage.uri"),
        ("spec.storage", _DELETE, "$.spec"),
        ("spec.checkpoints.numToKeep", -1, "$.spec.checkpoints.numToKeep"),
        ("spec.checkpoints.numToKeep", 0, "$.spec.checkpoints.numToKeep"),
        ("spec.checkpoints.scoreOrder", "lowest", "$.spec.checkpoints.scoreOrder"),
        ("spec.suspend", "yes", "$.spec.suspend"),
        ("spec.activeDeadlineSeconds", 0, "$.spec.activeDeadlineSeconds"),
        ("spec.ttlSecondsAfterFinished", -1, "$.spec.ttlSecondsAfterFinished"),
        ("spec.stallTimeoutSeconds", 0, "$.spec.stallTimeoutSeconds"),
        ("spec.config", [1, 2], "$.spec.config"),
        ("spec", _DELETE, "$"),
    ],
)
def test_bad_manifests_are_refused_naming_the_field(path: str, value: Any, field: str) -> None:
    errors = schema_errors(_set(_digits(), path, value))
    assert errors, f"{path}={value!r} was accepted"
    assert any(error.startswith(f"{field}:") for error in errors), errors
    if value is _DELETE:
        assert any(f"'{path.rsplit('.', 1)[-1]}' is a required property" in error for error in errors), errors


# ---- the API types in Python (what the operator parses a manifest with) -------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"workers": 0}, "workers"),
        ({"procsPerWorker": 0}, "procsPerWorker"),
        ({"failurePolicy": {"restartPolicy": "Sometimes"}}, "failurePolicy.restartPolicy"),
        ({"checkpoints": {"scoreOrder": "up"}}, "checkpoints.scoreOrder"),
        ({"checkpoints": {"numToKeep": -1}}, "checkpoints.numToKeep"),
        ({"storage": {}}, "storage.uri"),
    ],
)
def test_python_validation_names_the_field(change: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as raised:
        TrainJobSpec.from_wire({"template": {}, "storage": {"uri": "s3://b"}, **change})
    assert ".".join(str(p) for p in raised.value.errors()[0]["loc"]) == field
