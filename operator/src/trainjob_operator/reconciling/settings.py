"""What the operator's deployment decides about the children it builds (not part of a TrainJob)."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


def new_report_token() -> str:
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class OperatorSettings:
    """Settings of the children the operator creates.

    `token_factory` is the one source of randomness of the reconcile decision: tests pass a
    constant one so that the same observation yields an equal decision.
    """

    coordinator_image: str = "ghcr.io/trainjob-dev/trainjob-operator:0.1.0"
    coordinator_image_pull_policy: str = "IfNotPresent"
    coordinator_resources: dict[str, Any] = field(
        default_factory=lambda: {
            "requests": {"cpu": "50m", "memory": "128Mi"},
            "limits": {"memory": "512Mi"},
        }
    )
    # A numeric user lets the kubelet verify runAsNonRoot whatever the image's USER line says.
    coordinator_run_as_user: int = 65532
    # Lifetime of the coordinator's projected ServiceAccount token (the kubelet refreshes it).
    coordinator_token_expiration_seconds: int = 3600
    token_factory: Callable[[], str] = new_report_token
    # The S3 endpoint for jobs whose storage names none (`trainjob local up` sets its SeaweedFS).
    default_storage_endpoint: str | None = None
    # Derive each job's rendezvous port from its uid/namespace/name instead of the fixed 29500: on a
    # real cluster every pod has its own network namespace, but on the local cluster all pods
    # share the host's and torch's TCPStore listens on every address, so two jobs would clash.
    per_job_master_port: bool = False
    # The API server serves plain HTTP (the local cluster): the operator's own in-cluster login and
    # every coordinator it starts (`--api-plain-http`) use HTTP. Never inferred from a missing CA.
    api_plain_http: bool = False
