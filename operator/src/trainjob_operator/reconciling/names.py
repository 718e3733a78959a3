"""Names of the objects the operator creates for a TrainJob (docs/architecture.md, "What the operator
creates"); all deterministic, so that an operator restart finds what it created instead of
creating duplicates."""

from __future__ import annotations

from trainjob_operator.api import constants


def pod_name(job: str, attempt: int, rank: int) -> str:
    """`<job>-<attempt>-<rank>`: also the pod's hostname, so at most 63 characters."""
    return f"{job}-{attempt}-{rank}"


def service_name(job: str) -> str:
    """The headless Service; pods use it as their subdomain."""
    return job


def token_secret_name(job: str) -> str:
    return f"{job}-token"


def coordinator_service_account_name(job: str) -> str:
    return f"{job}-coordinator"


def coordinator_role_name(job: str) -> str:
    return f"{job}-coordinator"


def rank0_host(job: str, attempt: int) -> str:
    """The DNS name of rank 0 through the headless Service: MASTER_ADDR and the coordinator's host."""
    return f"{pod_name(job, attempt, 0)}.{service_name(job)}"


def coordinator_url(job: str, attempt: int) -> str:
    return f"http://{rank0_host(job, attempt)}:{constants.COORDINATOR_PORT}"
