"""Names shared by the operator, the coordinator and the worker SDK's contract (docs/architecture.md:
"The TrainJob API", "The rank environment").

Plain module constants: they are compared and formatted as strings everywhere (label
selectors, env var names), so an enum would only add `.value` noise.
"""

# Names of secrets, keys and env vars, never their values:
# ruff: noqa: S105

from __future__ import annotations

from typing import Final

from worker_sdk import _contract

GROUP: Final = "trainjob.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
KIND: Final = "TrainJob"
LIST_KIND: Final = "TrainJobList"
PLURAL: Final = "trainjobs"
SINGULAR: Final = "trainjob"
SHORT_NAMES: Final = ("tj",)
CATEGORIES: Final = ("all",)
CRD_NAME: Final = f"{PLURAL}.{GROUP}"

# Labels on every child object; pods also carry the attempt and the rank.
LABEL_NAME: Final = f"{GROUP}/name"
LABEL_ATTEMPT: Final = f"{GROUP}/attempt"
LABEL_RANK: Final = f"{GROUP}/rank"

# The scheduling gate every worker pod is created with; removed once the whole attempt exists, so a
# half-created gang never holds a node (or a GPU) that the rest of it cannot use.
GANG_SCHEDULING_GATE: Final = f"{GROUP}/gang"

# On every live worker pod: when the gang's latest checkpoint was committed (RFC 3339, as
# status.lastCommitTime), so preemption tooling can prefer victims that just saved (README
# "Checkpoint-aware victims"). Written by the operator, which owns the pods.
ANNOTATION_LAST_COMMIT_TIME: Final = f"{GROUP}/last-commit-time"

# Containers the operator knows by name.
TRAINER_CONTAINER: Final = "trainer"
COORDINATOR_CONTAINER: Final = "coordinator"

COORDINATOR_PORT: Final = 8470
COORDINATOR_HEALTH_PATH: Final = "/healthz"
MASTER_PORT: Final = 29500
# With `per_job_master_port` (a local cluster, whose pods share the host's network) each job's
# rendezvous port is derived from the job in this range, and the local tools' `free_port` never
# hands one of these out: a server started on it would make that job's every attempt fail to
# bind (EADDRINUSE).
PER_JOB_MASTER_PORTS: Final = range(20000, 30000)

# The per-job report token: key in the Secret and where the coordinator reads it.
TOKEN_SECRET_KEY: Final = "token"
TOKEN_MOUNT_DIR: Final = "/var/run/trainjob"
TOKEN_FILE: Final = f"{TOKEN_MOUNT_DIR}/{TOKEN_SECRET_KEY}"
SERVICE_ACCOUNT_MOUNT_DIR: Final = "/var/run/secrets/kubernetes.io/serviceaccount"
# The explicit setting for an API server that serves plain HTTP (trainjob_operator.in_cluster).
API_PLAIN_HTTP_FLAG: Final = "--api-plain-http"

# Keys of the Secret named by spec.storage.credentialsSecret.
AWS_ACCESS_KEY_ID: Final = "AWS_ACCESS_KEY_ID"
AWS_SECRET_ACCESS_KEY: Final = "AWS_SECRET_ACCESS_KEY"

# The env contract: defined once, in the SDK (worker_sdk._contract); re-exported, not repeated.
DEFAULT_STORAGE_RETRY_SECONDS: Final = _contract.DEFAULT_STORAGE_RETRY_SECONDS
ENV_ATTEMPT: Final = _contract.ENV_ATTEMPT
ENV_CONFIG: Final = _contract.ENV_CONFIG
ENV_COORDINATOR_URL: Final = _contract.ENV_COORDINATOR_URL
ENV_JOB_NAME: Final = _contract.ENV_JOB_NAME
ENV_JOB_NAMESPACE: Final = _contract.ENV_JOB_NAMESPACE
ENV_LOCAL_RANK: Final = _contract.ENV_LOCAL_RANK
ENV_LOCAL_WORLD_SIZE: Final = _contract.ENV_LOCAL_WORLD_SIZE
ENV_MASTER_ADDR: Final = _contract.ENV_MASTER_ADDR
ENV_MASTER_PORT: Final = _contract.ENV_MASTER_PORT
ENV_NODE_RANK: Final = _contract.ENV_NODE_RANK
ENV_RANK: Final = _contract.ENV_RANK
ENV_REPORT_TOKEN: Final = _contract.ENV_REPORT_TOKEN
ENV_RESUME_CHECKPOINT: Final = _contract.ENV_RESUME_CHECKPOINT
ENV_S3_ENDPOINT: Final = _contract.ENV_S3_ENDPOINT
ENV_STORAGE_RETRY_SECONDS: Final = _contract.ENV_STORAGE_RETRY_SECONDS
ENV_STORAGE_URI: Final = _contract.ENV_STORAGE_URI
ENV_TERMINATION_GRACE_SECONDS: Final = _contract.ENV_TERMINATION_GRACE_SECONDS
ENV_WORLD_SIZE: Final = _contract.ENV_WORLD_SIZE
# torchrun reads PET_<OPTION> for each of its command-line options.
ENV_TORCHRUN_NPROC_PER_NODE: Final = "PET_NPROC_PER_NODE"
ENV_TORCHRUN_NNODES: Final = "PET_NNODES"
ENV_TORCHRUN_NODE_RANK: Final = "PET_NODE_RANK"
ENV_TORCHRUN_MASTER_ADDR: Final = "PET_MASTER_ADDR"
ENV_TORCHRUN_MASTER_PORT: Final = "PET_MASTER_PORT"

STORAGE_SCHEMES: Final = ("s3", "file")
