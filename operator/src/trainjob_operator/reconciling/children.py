"""Builders of every object the operator creates for a TrainJob (docs/architecture.md, "What the
operator creates").

All are pure: (job, attempt, settings) -> manifest dict, with deterministic names, the job's
labels and a controller ownerReference, so deleting the TrainJob deletes them through garbage
collection (no finalizer needed).

Credentials: the worker containers never hold Kubernetes credentials. Every pod has
`automountServiceAccountToken: false`; the rank-0 pod runs as ServiceAccount `<job>-coordinator`
(the Role lets it get/patch only this job's status) and mounts that ServiceAccount's projected
token into the coordinator sidecar alone. A `serviceAccountName` in the user's template applies to
the other ranks only.
"""

from __future__ import annotations

import copy
import json
import zlib
from datetime import UTC, datetime
from typing import Any

from trainjob_operator.api import constants
from trainjob_operator.api.types import TrainJob

from . import names
from .settings import OperatorSettings

TOKEN_VOLUME = "trainjob-token"  # noqa: S105 - a volume name
SERVICE_ACCOUNT_TOKEN_VOLUME = "trainjob-coordinator-api-access"  # noqa: S105 - a volume name
COORDINATOR_TMP_VOLUME = "trainjob-coordinator-tmp"
POD_IP_ENV = "POD_IP"


def owner_reference(job: TrainJob) -> dict[str, Any]:
    return {
        "apiVersion": constants.API_VERSION,
        "kind": constants.KIND,
        "name": job.metadata.name,
        "uid": job.metadata.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def job_labels(job: TrainJob) -> dict[str, str]:
    return {constants.LABEL_NAME: job.metadata.name}


def _metadata(job: TrainJob, name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": job.metadata.namespace,
        "labels": labels or job_labels(job),
        "ownerReferences": [owner_reference(job)],
    }


def token_secret(job: TrainJob, token: str) -> dict[str, Any]:
    """Secret `<job>-token`: the bearer token workers send the coordinator with their reports."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _metadata(job, names.token_secret_name(job.metadata.name)),
        "type": "Opaque",
        "stringData": {constants.TOKEN_SECRET_KEY: token},
    }


def coordinator_service_account(job: TrainJob) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _metadata(job, names.coordinator_service_account_name(job.metadata.name)),
        # Only the coordinator's projected volume carries its token.
        "automountServiceAccountToken": False,
    }


def coordinator_role(job: TrainJob) -> dict[str, Any]:
    """get/patch on this job's status and nothing else."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": _metadata(job, names.coordinator_role_name(job.metadata.name)),
        "rules": [
            {
                "apiGroups": [constants.GROUP],
                "resources": [f"{constants.PLURAL}/status"],
                "resourceNames": [job.metadata.name],
                "verbs": ["get", "patch"],
            }
        ],
    }


def coordinator_role_binding(job: TrainJob) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _metadata(job, names.coordinator_role_name(job.metadata.name)),
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": names.coordinator_role_name(job.metadata.name),
        },
        "subjects": [
            {
                "kind": "ServiceAccount",
                "name": names.coordinator_service_account_name(job.metadata.name),
                "namespace": job.metadata.namespace,
            }
        ],
    }


def headless_service(job: TrainJob) -> dict[str, Any]:
    """Service `<job>`: DNS names `<pod>.<job>` for every pod, published before they are ready
    (rendezvous happens before readiness)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(job, names.service_name(job.metadata.name)),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": job_labels(job),
            "ports": [
                {"name": "coordinator", "port": constants.COORDINATOR_PORT, "protocol": "TCP"},
                {"name": "rendezvous", "port": constants.MASTER_PORT, "protocol": "TCP"},
            ],
        },
    }


def _env(name: str, value: str | int) -> dict[str, Any]:
    return {"name": name, "value": str(value)}


def _secret_env(name: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def storage_endpoint(job: TrainJob, settings: OperatorSettings) -> str | None:
    return job.spec.storage.endpoint or settings.default_storage_endpoint


def master_port(job: TrainJob, settings: OperatorSettings) -> int:
    """29500, or with `per_job_master_port` a stable port of `PER_JOB_MASTER_PORTS` derived from
    the job. The uid is part of it: jobs of the same namespace and name in two clusters on one
    host (whose pods share its network) would otherwise bind the same port."""
    if not settings.per_job_master_port:
        return constants.MASTER_PORT
    key = f"{job.metadata.uid}/{job.metadata.namespace}/{job.metadata.name}".encode()
    ports = constants.PER_JOB_MASTER_PORTS
    return ports[zlib.crc32(key) % len(ports)]


def storage_env(job: TrainJob, settings: OperatorSettings) -> list[dict[str, Any]]:
    """S3 endpoint and credentials, for the trainer and the coordinator alike."""
    storage = job.spec.storage
    env: list[dict[str, Any]] = []
    endpoint = storage_endpoint(job, settings)
    if endpoint:
        env.append(_env(constants.ENV_S3_ENDPOINT, endpoint))
    if storage.credentials_secret:
        env.append(
            _secret_env(constants.AWS_ACCESS_KEY_ID, storage.credentials_secret, constants.AWS_ACCESS_KEY_ID)
        )
        env.append(
            _secret_env(
                constants.AWS_SECRET_ACCESS_KEY, storage.credentials_secret, constants.AWS_SECRET_ACCESS_KEY
            )
        )
    return env


def resume_checkpoint(job: TrainJob) -> str | None:
    """The job's latest committed checkpoint, else spec.resumeFrom, else None."""
    latest = job.status.latest_checkpoint
    if latest is not None and latest.uri:
        return latest.uri
    return job.spec.resume_from


def worker_env(job: TrainJob, attempt: int, rank: int, settings: OperatorSettings) -> list[dict[str, Any]]:
    """The rank environment (docs/architecture.md) for the trainer container of rank `rank`.

    With procsPerWorker > 1 the pod runs torchrun, which sets RANK/LOCAL_RANK per process; the pod
    gets the values of its first process, and torchrun's own PET_* options.
    """
    name = job.metadata.name
    procs = job.spec.procs_per_worker
    master = names.rank0_host(name, attempt)
    port = master_port(job, settings)
    env = [
        _env(constants.ENV_JOB_NAME, name),
        _env(constants.ENV_JOB_NAMESPACE, job.metadata.namespace),
        _env(constants.ENV_ATTEMPT, attempt),
        _env(constants.ENV_WORLD_SIZE, job.spec.workers * procs),
        _env(constants.ENV_RANK, rank * procs),
        _env(constants.ENV_LOCAL_RANK, 0),
        _env(constants.ENV_LOCAL_WORLD_SIZE, procs),
        _env(constants.ENV_NODE_RANK, rank),
        _env(constants.ENV_MASTER_ADDR, master),
        _env(constants.ENV_MASTER_PORT, port),
    ]
    if procs > 1:
        env += [
            _env(constants.ENV_TORCHRUN_NPROC_PER_NODE, procs),
            _env(constants.ENV_TORCHRUN_NNODES, job.spec.workers),
            _env(constants.ENV_TORCHRUN_NODE_RANK, rank),
            _env(constants.ENV_TORCHRUN_MASTER_ADDR, master),
            _env(constants.ENV_TORCHRUN_MASTER_PORT, port),
        ]
    env += [
        _env(constants.ENV_COORDINATOR_URL, names.coordinator_url(name, attempt)),
        _secret_env(constants.ENV_REPORT_TOKEN, names.token_secret_name(name), constants.TOKEN_SECRET_KEY),
        _env(constants.ENV_STORAGE_URI, job.spec.storage.uri),
        *storage_env(job, settings),
    ]
    resume = resume_checkpoint(job)
    if resume is not None:
        env.append(_env(constants.ENV_RESUME_CHECKPOINT, resume))
    if job.spec.storage.retry_budget_seconds is not None:
        env.append(_env(constants.ENV_STORAGE_RETRY_SECONDS, job.spec.storage.retry_budget_seconds))
    # How long the trainer may run on after SIGTERM (its pod's grace): a notice-aware program
    # stops at its next checkpoint within it (worker_sdk.preemption).
    grace = (job.spec.template.get("spec") or {}).get("terminationGracePeriodSeconds")
    env.append(_env(constants.ENV_TERMINATION_GRACE_SECONDS, grace if isinstance(grace, int) else 30))
    env.append(_env(constants.ENV_CONFIG, json.dumps(job.spec.config or {}, sort_keys=True)))
    return env


def coordinator_command(job: TrainJob, attempt: int, settings: OperatorSettings) -> list[str]:
    """`trainjob coordinator ...`; retention flags are passed only when the spec sets them."""
    spec = job.spec
    command = [
        "trainjob",
        "coordinator",
        "--job",
        job.metadata.name,
        "--namespace",
        job.metadata.namespace,
        "--world-size",
        str(spec.workers * spec.procs_per_worker),
        "--attempt",
        str(attempt),
        "--storage",
        spec.storage.uri,
    ]
    endpoint = storage_endpoint(job, settings)
    if endpoint:
        command += ["--storage-endpoint", endpoint]
    command += [
        # The pod's own address, not every address: on the local cluster pods share the host's
        # network, and each has its own loopback address.
        "--host",
        f"$({POD_IP_ENV})",
        "--port",
        str(constants.COORDINATOR_PORT),
        "--token-file",
        constants.TOKEN_FILE,
        "--status-sink",
        "kubernetes",
    ]
    if settings.api_plain_http:
        command.append(constants.API_PLAIN_HTTP_FLAG)
    if spec.checkpoints.num_to_keep is not None:
        command += ["--num-to-keep", str(spec.checkpoints.num_to_keep)]
    if spec.checkpoints.score_attribute is not None:
        command += ["--score-attribute", spec.checkpoints.score_attribute]
    command += ["--score-order", str(spec.checkpoints.score_order)]
    return command


def restricted_security_context(settings: OperatorSettings) -> dict[str, Any]:
    """The `restricted` Pod Security Standard, plus a read-only root filesystem."""
    return {
        "runAsNonRoot": True,
        "runAsUser": settings.coordinator_run_as_user,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def coordinator_container(job: TrainJob, attempt: int, settings: OperatorSettings) -> dict[str, Any]:
    """The coordinator as a native sidecar: an init container with restartPolicy Always, so it
    starts before the trainer and stops after it."""
    return {
        "name": constants.COORDINATOR_CONTAINER,
        "image": settings.coordinator_image,
        "imagePullPolicy": settings.coordinator_image_pull_policy,
        "restartPolicy": "Always",
        "command": coordinator_command(job, attempt, settings),
        "ports": [{"name": "coordinator", "containerPort": constants.COORDINATOR_PORT, "protocol": "TCP"}],
        "env": [
            {"name": POD_IP_ENV, "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            *storage_env(job, settings),
        ],
        "readinessProbe": {
            "httpGet": {"path": constants.COORDINATOR_HEALTH_PATH, "port": constants.COORDINATOR_PORT},
            "periodSeconds": 2,
            "failureThreshold": 3,
        },
        "resources": copy.deepcopy(settings.coordinator_resources),
        "securityContext": restricted_security_context(settings),
        "volumeMounts": [
            {"name": TOKEN_VOLUME, "mountPath": constants.TOKEN_MOUNT_DIR, "readOnly": True},
            {
                "name": SERVICE_ACCOUNT_TOKEN_VOLUME,
                "mountPath": constants.SERVICE_ACCOUNT_MOUNT_DIR,
                "readOnly": True,
            },
            {"name": COORDINATOR_TMP_VOLUME, "mountPath": "/tmp"},  # noqa: S108 - a private emptyDir
        ],
    }


def coordinator_volumes(job: TrainJob, settings: OperatorSettings) -> list[dict[str, Any]]:
    return [
        {
            "name": TOKEN_VOLUME,
            # World-readable inside the pod is fine: only the coordinator container mounts it, and
            # it runs as a user the operator does not know the group of.
            "secret": {"secretName": names.token_secret_name(job.metadata.name), "defaultMode": 0o444},
        },
        {
            "name": SERVICE_ACCOUNT_TOKEN_VOLUME,
            # What the kubelet would automount, made explicit so that only one container gets it.
            "projected": {
                "defaultMode": 0o444,
                "sources": [
                    {
                        "serviceAccountToken": {
                            "path": "token",
                            "expirationSeconds": settings.coordinator_token_expiration_seconds,
                        }
                    },
                    {
                        "configMap": {
                            "name": "kube-root-ca.crt",
                            "items": [{"key": "ca.crt", "path": "ca.crt"}],
                            "optional": True,
                        }
                    },
                    {
                        "downwardAPI": {
                            "items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]
                        }
                    },
                ],
            },
        },
        {"name": COORDINATOR_TMP_VOLUME, "emptyDir": {"sizeLimit": "64Mi"}},
    ]


def _with_env(container: dict[str, Any], env: list[dict[str, Any]]) -> dict[str, Any]:
    """The container with our env; a user variable of the same name is replaced, others are kept."""
    ours = {item["name"] for item in env}
    kept = [item for item in container.get("env") or [] if item.get("name") not in ours]
    return {**container, "env": kept + env}


def _trainer(container: dict[str, Any], env: list[dict[str, Any]]) -> dict[str, Any]:
    """The trainer with our env and, unless the template chose one, terminationMessagePolicy
    FallbackToLogsOnError: a failed rank's last log lines become its termination message, which
    the job's failure message and event quote (the kubelet's default policy, File, leaves it empty
    for a program that writes no message file)."""
    out = _with_env(container, env)
    out.setdefault("terminationMessagePolicy", "FallbackToLogsOnError")
    return out


def _quantities_as_strings(container: dict[str, Any]) -> dict[str, Any]:
    """The container with every resource quantity a string. The API server takes `nvidia.com/gpu: 1`
    (a Quantity is int-or-string, and YAML makes `1` and `0.5` numbers), but the kubernetes client
    validates a pod body against its models, whose quantities are strings, and refuses the pod
    before it is sent: the gang would never be created and the job would say nothing."""
    resources = container.get("resources")
    if not isinstance(resources, dict):
        return container
    fixed = {
        field: {
            k: str(v) if isinstance(v, int | float) and not isinstance(v, bool) else v
            for k, v in values.items()
        }
        if isinstance(values, dict) and field in ("requests", "limits")
        else values
        for field, values in resources.items()
    }
    return {**container, "resources": fixed}


def commit_time_annotation(moment: datetime) -> str:
    """The value of the trainjob.dev/last-commit-time annotation: RFC 3339 in UTC with
    milliseconds, as the coordinator writes status.lastCommitTime."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def worker_pod(job: TrainJob, attempt: int, rank: int, settings: OperatorSettings) -> dict[str, Any]:
    """Pod `<job>-<attempt>-<rank>`: the user's template plus the env contract, DNS identity, labels,
    owner reference; rank 0 also runs the coordinator sidecar."""
    name = job.metadata.name
    template = copy.deepcopy(job.spec.template)
    template_metadata = template.get("metadata") or {}
    pod_spec: dict[str, Any] = template.get("spec") or {}
    labels = {
        **(template_metadata.get("labels") or {}),
        **job_labels(job),
        constants.LABEL_ATTEMPT: str(attempt),
        constants.LABEL_RANK: str(rank),
    }
    metadata = _metadata(job, names.pod_name(name, attempt, rank), labels)
    if template_metadata.get("annotations"):
        metadata["annotations"] = template_metadata["annotations"]
    committed = job.status.last_commit_time
    if committed is not None:
        # A new attempt resumes from that commit: its pods carry its time from the start.
        metadata["annotations"] = {
            **(metadata.get("annotations") or {}),
            constants.ANNOTATION_LAST_COMMIT_TIME: commit_time_annotation(committed),
        }

    env = worker_env(job, attempt, rank, settings)
    pod_spec["containers"] = [
        _trainer(c, env) if c.get("name") == constants.TRAINER_CONTAINER else c
        for c in map(_quantities_as_strings, pod_spec.get("containers") or [])
    ]
    if pod_spec.get("initContainers"):
        pod_spec["initContainers"] = [_quantities_as_strings(c) for c in pod_spec["initContainers"]]
    pod_spec["hostname"] = names.pod_name(name, attempt, rank)
    pod_spec["subdomain"] = names.service_name(name)
    # The operator restarts the whole gang; a kubelet restart of one worker would desynchronise it.
    pod_spec["restartPolicy"] = "Never"
    # Held back from the scheduler until every pod of the attempt exists (the gang starts together).
    pod_spec["schedulingGates"] = [
        *(pod_spec.get("schedulingGates") or []),
        {"name": constants.GANG_SCHEDULING_GATE},
    ]
    pod_spec["automountServiceAccountToken"] = False
    if rank == 0:
        pod_spec["serviceAccountName"] = names.coordinator_service_account_name(name)
        pod_spec["initContainers"] = [
            coordinator_container(job, attempt, settings),
            *(pod_spec.get("initContainers") or []),
        ]
        pod_spec["volumes"] = [*(pod_spec.get("volumes") or []), *coordinator_volumes(job, settings)]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": pod_spec}
