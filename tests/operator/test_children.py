"""Builders of the children: env contract, sidecar, volumes, names, ownership, security."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from tests.operator.trainjob_factories import SETTINGS, job
from trainjob_operator.api.types import TrainJob
from trainjob_operator.reconciling import children
from trainjob_operator.reconciling.children import (
    coordinator_role,
    coordinator_role_binding,
    coordinator_service_account,
    headless_service,
    token_secret,
    worker_pod,
)

OWNER = {
    "apiVersion": "trainjob.dev/v1alpha1",
    "kind": "TrainJob",
    "name": "digits",
    "uid": "uid-digits",
    "controller": True,
    "blockOwnerDeletion": True,
}


def trainjob(status: dict[str, Any] | None = None, **spec: Any) -> TrainJob:
    return TrainJob.from_wire(job(status=status, **spec))


def env_of(pod: dict[str, Any], container: str = "trainer") -> dict[str, Any]:
    (found,) = [c for c in pod["spec"]["containers"] if c["name"] == container]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in found["env"]}


def coordinator_of(pod: dict[str, Any]) -> dict[str, Any]:
    (found,) = [c for c in pod["spec"].get("initContainers", []) if c["name"] == "coordinator"]
    coordinator: dict[str, Any] = found
    return coordinator


def test_every_child_is_owned_labelled_and_namespaced() -> None:
    tj = trainjob()
    objects = [
        token_secret(tj, "t"),
        coordinator_service_account(tj),
        coordinator_role(tj),
        coordinator_role_binding(tj),
        headless_service(tj),
        worker_pod(tj, 0, 0, SETTINGS),
        worker_pod(tj, 0, 1, SETTINGS),
    ]
    assert [(o["kind"], o["metadata"]["name"]) for o in objects] == [
        ("Secret", "digits-token"),
        ("ServiceAccount", "digits-coordinator"),
        ("Role", "digits-coordinator"),
        ("RoleBinding", "digits-coordinator"),
        ("Service", "digits"),
        ("Pod", "digits-0-0"),
        ("Pod", "digits-0-1"),
    ]
    for obj in objects:
        assert obj["metadata"]["ownerReferences"] == [OWNER]
        assert obj["metadata"]["namespace"] == "ml"
        assert obj["metadata"]["labels"]["trainjob.dev/name"] == "digits"


def test_token_secret() -> None:
    secret = token_secret(trainjob(), "s3cr3t")
    assert secret["type"] == "Opaque" and secret["stringData"] == {"token": "s3cr3t"}


def test_coordinator_rbac_allows_only_this_jobs_status() -> None:
    tj = trainjob()
    assert coordinator_role(tj)["rules"] == [
        {
            "apiGroups": ["trainjob.dev"],
            "resources": ["trainjobs/status"],
            "resourceNames": ["digits"],
            "verbs": ["get", "patch"],
        }
    ]
    binding = coordinator_role_binding(tj)
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "digits-coordinator",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "digits-coordinator", "namespace": "ml"}
    ]
    assert coordinator_service_account(tj)["automountServiceAccountToken"] is False


def test_headless_service() -> None:
    spec = headless_service(trainjob())["spec"]
    assert spec["clusterIP"] == "None"
    assert spec["publishNotReadyAddresses"] is True
    assert spec["selector"] == {"trainjob.dev/name": "digits"}
    assert {p["port"] for p in spec["ports"]} == {8470, 29500}


def test_worker_pod_identity_and_policy() -> None:
    pod = worker_pod(trainjob(), 3, 1, SETTINGS)
    assert pod["metadata"]["name"] == "digits-3-1"
    assert pod["metadata"]["labels"] == {
        "team": "ml",  # from the template
        "trainjob.dev/name": "digits",
        "trainjob.dev/attempt": "3",
        "trainjob.dev/rank": "1",
    }
    spec = pod["spec"]
    assert spec["hostname"] == "digits-3-1" and spec["subdomain"] == "digits"
    assert spec["restartPolicy"] == "Never"
    assert spec["automountServiceAccountToken"] is False
    assert "initContainers" not in spec and "serviceAccountName" not in spec and "volumes" not in spec


def test_env_contract() -> None:
    env = env_of(worker_pod(trainjob(), 2, 1, SETTINGS))
    assert env == {
        "TRAINJOB_NAME": "digits",
        "TRAINJOB_NAMESPACE": "ml",
        "TRAINJOB_ATTEMPT": "2",
        "WORLD_SIZE": "2",
        "RANK": "1",
        "LOCAL_RANK": "0",
        "LOCAL_WORLD_SIZE": "1",
        "NODE_RANK": "1",
        "MASTER_ADDR": "digits-2-0.digits",
        "MASTER_PORT": "29500",
        "TRAINJOB_COORDINATOR_URL": "http://digits-2-0.digits:8470",
        "TRAINJOB_REPORT_TOKEN": {"secretKeyRef": {"name": "digits-token", "key": "token"}},
        "TRAINJOB_STORAGE_URI": "s3://trainjob/checkpoints",
        "AWS_ENDPOINT_URL_S3": "http://s3.example:8333",
        "AWS_ACCESS_KEY_ID": {"secretKeyRef": {"name": "s3-creds", "key": "AWS_ACCESS_KEY_ID"}},
        "AWS_SECRET_ACCESS_KEY": {"secretKeyRef": {"name": "s3-creds", "key": "AWS_SECRET_ACCESS_KEY"}},
        "TRAINJOB_TERMINATION_GRACE_SECONDS": "30",
        "TRAINJOB_CONFIG": json.dumps({"epochs": 2, "lr": 0.1}, sort_keys=True),
    }
    assert not any(name.startswith("PET_") for name in env)


def test_env_without_optional_storage_settings_or_config() -> None:
    env = env_of(worker_pod(trainjob(storage={"uri": "file:///ckpt"}, config=None), 0, 0, SETTINGS))
    assert env["TRAINJOB_STORAGE_URI"] == "file:///ckpt"
    assert "AWS_ENDPOINT_URL_S3" not in env and "AWS_ACCESS_KEY_ID" not in env
    assert env["TRAINJOB_CONFIG"] == "{}"


@pytest.mark.parametrize(
    ("status", "resume_from", "expected"),
    [
        (None, None, None),
        (None, "s3://other/ckpt", "s3://other/ckpt"),
        (
            {"latestCheckpoint": {"uri": "s3://mine/checkpoint_000009"}},
            "s3://other/ckpt",
            "s3://mine/checkpoint_000009",
        ),
        ({"latestCheckpoint": {"uri": "s3://mine/checkpoint_000009"}}, None, "s3://mine/checkpoint_000009"),
    ],
)
def test_resume_checkpoint(
    status: dict[str, Any] | None, resume_from: str | None, expected: str | None
) -> None:
    env = env_of(worker_pod(trainjob(status=status, resumeFrom=resume_from), 1, 0, SETTINGS))
    assert env.get("TRAINJOB_RESUME_CHECKPOINT") == expected


def test_torchrun_env_with_several_processes_per_worker() -> None:
    env = env_of(worker_pod(trainjob(workers=3, procsPerWorker=4), 0, 2, SETTINGS))
    assert env["WORLD_SIZE"] == "12"
    assert env["RANK"] == "8" and env["NODE_RANK"] == "2"
    assert env["LOCAL_RANK"] == "0" and env["LOCAL_WORLD_SIZE"] == "4"
    assert {k: v for k, v in env.items() if k.startswith("PET_")} == {
        "PET_NPROC_PER_NODE": "4",
        "PET_NNODES": "3",
        "PET_NODE_RANK": "2",
        "PET_MASTER_ADDR": "digits-0-0.digits",
        "PET_MASTER_PORT": "29500",
    }
    rank0 = worker_pod(trainjob(workers=3, procsPerWorker=4), 0, 0, SETTINGS)
    command = coordinator_of(rank0)["command"]
    assert command[command.index("--world-size") + 1] == "12"


def test_template_is_kept_and_our_env_wins() -> None:
    template = {
        "metadata": {"labels": {"trainjob.dev/rank": "99", "app": "x"}, "annotations": {"a": "b"}},
        "spec": {
            "containers": [
                {
                    "name": "trainer",
                    "image": "t",
                    "env": [{"name": "RANK", "value": "7"}, {"name": "MINE", "value": "1"}],
                },
                {"name": "logger", "image": "l"},
            ],
            "volumes": [{"name": "data", "emptyDir": {}}],
            "initContainers": [{"name": "fetch", "image": "f"}],
            "restartPolicy": "Always",
            "nodeSelector": {"gpu": "yes"},
        },
    }
    tj = trainjob(template=template)
    pod = worker_pod(tj, 0, 0, SETTINGS)
    assert pod["metadata"]["labels"]["trainjob.dev/rank"] == "0" and pod["metadata"]["labels"]["app"] == "x"
    assert pod["metadata"]["annotations"] == {"a": "b"}
    env = pod["spec"]["containers"][0]["env"]
    assert [e["value"] for e in env if e["name"] == "RANK"] == ["0"]
    assert {"name": "MINE", "value": "1"} in env
    assert pod["spec"]["containers"][1] == {"name": "logger", "image": "l"}  # no credentials for others
    assert pod["spec"]["nodeSelector"] == {"gpu": "yes"} and pod["spec"]["restartPolicy"] == "Never"
    assert [c["name"] for c in pod["spec"]["initContainers"]] == ["coordinator", "fetch"]
    assert pod["spec"]["volumes"][0]["name"] == "data"
    # Building never mutates the job's template.
    assert tj.spec.template == template


@pytest.mark.parametrize(
    ("template_policy", "expected"),
    [(None, "FallbackToLogsOnError"), ("File", "File"), ("FallbackToLogsOnError", "FallbackToLogsOnError")],
)
def test_trainer_termination_message_falls_back_to_logs_unless_the_template_says(
    template_policy: str | None, expected: str
) -> None:
    trainer: dict[str, Any] = {"name": "trainer", "image": "t"}
    if template_policy is not None:
        trainer["terminationMessagePolicy"] = template_policy
    spec = {"containers": [trainer, {"name": "logger", "image": "l"}]}
    pod = worker_pod(trainjob(template={"spec": spec}), 0, 1, SETTINGS)
    containers = {c["name"]: c for c in pod["spec"]["containers"]}
    assert containers["trainer"]["terminationMessagePolicy"] == expected
    assert "terminationMessagePolicy" not in containers["logger"], "only the trainer's is ours to set"


def test_rank0_runs_the_coordinator_as_a_native_sidecar() -> None:
    pod = worker_pod(trainjob(), 4, 0, SETTINGS)
    spec = pod["spec"]
    assert spec["serviceAccountName"] == "digits-coordinator"
    assert spec["automountServiceAccountToken"] is False
    sidecar = coordinator_of(pod)
    assert sidecar["restartPolicy"] == "Always"
    assert sidecar["image"] == "example/coordinator:test"
    assert sidecar["command"] == [
        "trainjob", "coordinator",
        "--job", "digits",
        "--namespace", "ml",
        "--world-size", "2",
        "--attempt", "4",
        "--storage", "s3://trainjob/checkpoints",
        "--storage-endpoint", "http://s3.example:8333",
        "--host", "$(POD_IP)",
        "--port", "8470",
        "--token-file", "/var/run/trainjob/token",
        "--status-sink", "kubernetes",
        "--num-to-keep", "3",
        "--score-attribute", "val_loss",
        "--score-order", "min",
    ]  # fmt: skip
    assert sidecar["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": 8470}
    assert sidecar["ports"] == [{"name": "coordinator", "containerPort": 8470, "protocol": "TCP"}]
    sidecar_env = {e["name"] for e in sidecar["env"]}
    assert sidecar_env == {"POD_IP", "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}


def test_coordinator_command_leaves_out_unset_retention() -> None:
    pod = worker_pod(trainjob(checkpoints={}, storage={"uri": "file:///c"}), 0, 0, SETTINGS)
    command = coordinator_of(pod)["command"]
    assert "--num-to-keep" not in command and "--score-attribute" not in command
    assert "--storage-endpoint" not in command
    assert command[-2:] == ["--score-order", "max"]


def test_the_coordinator_speaks_plain_http_only_when_the_operator_is_told_so() -> None:
    """TLS with the mounted CA unless the operator runs with --api-plain-http (the local cluster)."""
    assert "--api-plain-http" not in coordinator_of(worker_pod(trainjob(), 0, 0, SETTINGS))["command"]
    plain = dataclasses.replace(SETTINGS, api_plain_http=True)
    command = coordinator_of(worker_pod(trainjob(), 0, 0, plain))["command"]
    assert command[command.index("--status-sink") :][:3] == [
        "--status-sink",
        "kubernetes",
        "--api-plain-http",
    ]


def test_only_the_coordinator_mounts_the_token_and_the_service_account() -> None:
    pod = worker_pod(trainjob(), 0, 0, SETTINGS)
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    token = volumes[children.TOKEN_VOLUME]["secret"]
    assert token["secretName"] == "digits-token"
    projected = volumes[children.SERVICE_ACCOUNT_TOKEN_VOLUME]["projected"]["sources"]
    assert projected[0]["serviceAccountToken"]["path"] == "token"
    assert {"key": "ca.crt", "path": "ca.crt"} in projected[1]["configMap"]["items"]
    assert projected[2]["downwardAPI"]["items"][0]["path"] == "namespace"
    mounts = {m["mountPath"]: m["name"] for m in coordinator_of(pod)["volumeMounts"]}
    assert mounts["/var/run/trainjob"] == children.TOKEN_VOLUME
    assert mounts["/var/run/secrets/kubernetes.io/serviceaccount"] == children.SERVICE_ACCOUNT_TOKEN_VOLUME
    for container in pod["spec"]["containers"]:
        assert not container.get("volumeMounts")


def test_coordinator_security_context_is_restricted() -> None:
    context = coordinator_of(worker_pod(trainjob(), 0, 0, SETTINGS))["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    mounts = {m["mountPath"] for m in coordinator_of(worker_pod(trainjob(), 0, 0, SETTINGS))["volumeMounts"]}
    assert "/tmp" in mounts  # a writable scratch directory despite the read-only root


def test_manifests_are_plain_json() -> None:
    pod = worker_pod(trainjob(), 0, 0, SETTINGS)
    assert json.loads(json.dumps(pod)) == pod


def test_default_storage_endpoint_and_per_job_master_port_come_from_operator_settings() -> None:
    from trainjob_operator.api.types import TrainJob
    from trainjob_operator.reconciling import OperatorSettings, children

    manifest: dict[str, Any] = {
        "apiVersion": "trainjob.dev/v1alpha1",
        "kind": "TrainJob",
        "metadata": {"name": "a", "namespace": "ml", "uid": "u1", "generation": 1},
        "spec": {
            "workers": 2,
            "template": {"spec": {"containers": [{"name": "trainer", "image": "x"}]}},
            "storage": {"uri": "s3://b/p"},
        },
    }
    local = OperatorSettings(default_storage_endpoint="http://127.0.0.1:9", per_job_master_port=True)
    job = TrainJob.from_wire(manifest)
    other = TrainJob.from_wire({**manifest, "metadata": {**manifest["metadata"], "name": "b"}})
    # The same namespace and name in another cluster on the same host: another object, another port.
    twin = TrainJob.from_wire({**manifest, "metadata": {**manifest["metadata"], "uid": "u2"}})

    env: dict[str, Any] = {e["name"]: e.get("value") for e in children.worker_env(job, 0, 1, local)}
    assert env["AWS_ENDPOINT_URL_S3"] == "http://127.0.0.1:9"
    assert 20000 <= int(env["MASTER_PORT"]) < 30000
    assert children.master_port(job, local) == children.master_port(job, local)
    assert children.master_port(job, local) != children.master_port(other, local)
    assert children.master_port(job, local) != children.master_port(twin, local)
    plain = {e["name"]: e.get("value") for e in children.worker_env(job, 0, 1, OperatorSettings())}
    assert plain["MASTER_PORT"] == "29500" and "AWS_ENDPOINT_URL_S3" not in plain


def test_every_child_is_a_valid_kubernetes_object() -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    tj = trainjob(procsPerWorker=2)
    for manifest in [
        token_secret(tj, "t"),
        coordinator_service_account(tj),
        coordinator_role(tj),
        coordinator_role_binding(tj),
        headless_service(tj),
        worker_pod(tj, 0, 0, SETTINGS),
        worker_pod(tj, 0, 1, SETTINGS),
    ]:
        kubernetes_validate.validate(manifest, "1.30.0", strict=True)


def test_numeric_resource_quantities_become_strings_the_kubernetes_client_accepts() -> None:
    """`nvidia.com/gpu: 1` and `cpu: 0.5` are valid in a manifest (a Quantity is int-or-string),
    but the kubernetes client refuses a pod body whose quantities are numbers before sending it:
    the gang was never created and the job stayed Pending saying nothing."""
    from kubernetes.client import V1Pod

    containers = [
        {
            "name": "trainer",
            "image": "example/digits:1",
            "command": ["python", "train.py"],
            "resources": {"limits": {"nvidia.com/gpu": 1, "memory": "1Gi"}, "requests": {"cpu": 0.5}},
        },
        {"name": "sidecar", "image": "example/side:1", "resources": {"requests": {"cpu": 1}}},
    ]
    init = [{"name": "fetch", "image": "example/fetch:1", "resources": {"limits": {"cpu": 2}}}]
    tj = trainjob(template={"spec": {"containers": containers, "initContainers": init}})

    for rank in (0, 1):
        pod = worker_pod(tj, 0, rank, SETTINGS)
        V1Pod.model_validate(pod)  # what create_namespaced_pod does to its body
        by_name = {c["name"]: c for c in pod["spec"]["containers"] + pod["spec"]["initContainers"]}
        assert by_name["trainer"]["resources"] == {
            "limits": {"nvidia.com/gpu": "1", "memory": "1Gi"},
            "requests": {"cpu": "0.5"},
        }
        assert by_name["sidecar"]["resources"] == {"requests": {"cpu": "1"}}
        assert by_name["fetch"]["resources"] == {"limits": {"cpu": "2"}}
