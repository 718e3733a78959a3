"""Names shared by the operator, the coordinator and the worker SDK's contract (DESIGN §3, §4).

Plain module constants: they are compared and formatted as strings everywhere (label
selectors, env var names), so an enum would only add `.value` noise.
"""

# Names of secrets, keys and env vars, never their values:
# ruff: noqa: S105

from __future__ import annotations

from typing import Final

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

# Containers the operator knows by name.
TRAINER_CONTAINER: Final = "trainer"
COORDINATOR_CONTAINER: Final = "coordinator"

COORDINATOR_PORT: Final = 8470
COORDINATOR_HEALTH_PATH: Final = "/healthz"
MASTER_PORT: Final = 29500

# The per-job report token: key in the Secret and where the coordinator reads it.
TOKEN_SECRET_KEY: Final = "token"
TOKEN_MOUNT_DIR: Final = "/var/run/trainjob"
TOKEN_FILE: Final = f"{TOKEN_MOUNT_DIR}/{TOKEN_SECRET_KEY}"
SERVICE_ACCOUNT_MOUNT_DIR: Final = "/var/run/secrets/kubernetes.io/serviceaccount"

# Keys of the Secret named by spec.storage.credentialsSecret.
AWS_ACCESS_KEY_ID: Final = "AWS_ACCESS_KEY_ID"
AWS_SECRET_ACCESS_KEY: Final = "AWS_SECRET_ACCESS_KEY"

# The env contract of DESIGN §4: the worker SDK reads only these.
ENV_JOB_NAME: Final = "TRAINJOB_NAME"
ENV_JOB_NAMESPACE: Final = "TRAINJOB_NAMESPACE"
ENV_ATTEMPT: Final = "TRAINJOB_ATTEMPT"
ENV_WORLD_SIZE: Final = "WORLD_SIZE"
ENV_RANK: Final = "RANK"
ENV_LOCAL_RANK: Final = "LOCAL_RANK"
ENV_LOCAL_WORLD_SIZE: Final = "LOCAL_WORLD_SIZE"
ENV_NODE_RANK: Final = "NODE_RANK"
ENV_MASTER_ADDR: Final = "MASTER_ADDR"
ENV_MASTER_PORT: Final = "MASTER_PORT"
ENV_COORDINATOR_URL: Final = "TRAINJOB_COORDINATOR_URL"
ENV_REPORT_TOKEN: Final = "TRAINJOB_REPORT_TOKEN"
ENV_STORAGE_URI: Final = "TRAINJOB_STORAGE_URI"
ENV_S3_ENDPOINT: Final = "AWS_ENDPOINT_URL_S3"
ENV_RESUME_CHECKPOINT: Final = "TRAINJOB_RESUME_CHECKPOINT"
ENV_CONFIG: Final = "TRAINJOB_CONFIG"
ENV_STORAGE_RETRY_SECONDS: Final = "TRAINJOB_STORAGE_RETRY_SECONDS"
# The SDK's retry budget when spec.storage.retryBudgetSeconds is unset (worker_sdk.context.Settings).
DEFAULT_STORAGE_RETRY_SECONDS: Final = 120
# torchrun reads PET_<OPTION> for each of its command-line options.
ENV_TORCHRUN_NPROC_PER_NODE: Final = "PET_NPROC_PER_NODE"
ENV_TORCHRUN_NNODES: Final = "PET_NNODES"
ENV_TORCHRUN_NODE_RANK: Final = "PET_NODE_RANK"
ENV_TORCHRUN_MASTER_ADDR: Final = "PET_MASTER_ADDR"
ENV_TORCHRUN_MASTER_PORT: Final = "PET_MASTER_PORT"

STORAGE_SCHEMES: Final = ("s3", "file")
