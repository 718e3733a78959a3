"""What the CRD schema cannot check, and which spec changes a started job accepts.

Semantic validation runs before the first attempt starts. A problem fails the job with a message
naming the field (and an Event): a TrainJob never crash-loops the operator.

Spec changes after the first attempt started (`MUTABLE_FIELDS` is the whole list):

- take effect: `suspend`, `activeDeadlineSeconds`, `ttlSecondsAfterFinished`,
  `stallTimeoutSeconds`, `failurePolicy.maxRestarts`, `failurePolicy.maxDisruptions`;
- are refused, every other field (workers, procsPerWorker, template, config, storage,
  checkpoints, failurePolicy.restartPolicy/backoffSeconds/nodeLossSeconds, startupPolicy,
  resumeFrom): the job goes on as
  accepted, restarts and resumes included, with an Event and the condition SpecChangeRefused
  naming the fields until they are changed back. The accepted values are kept in
  `status.acceptedSpec` (bounded by the spec's own size; the status has no other copy of the
  template to build later attempts from). To run a different spec, delete the job and create it
  again (it resumes from its latest checkpoint when it keeps its name and storage).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from trainjob_operator.api import constants
from trainjob_operator.api.types import TrainJobSpec

from .names import pod_name

MUTABLE_FIELDS = (
    "suspend",
    "activeDeadlineSeconds",
    "ttlSecondsAfterFinished",
    "stallTimeoutSeconds",
    "failurePolicy.maxRestarts",
    "failurePolicy.maxDisruptions",
)

# DNS-1035 label: the job name is the headless Service's name and the pods' subdomain.
_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
DNS_LABEL_MAX = 63
# Room kept for attempt numbers when checking a name's length before the first attempt.
ATTEMPT_DIGITS_RESERVED = 4
RESERVED_VOLUME_PREFIX = "trainjob-"


def _check_uri(field: str, uri: str) -> list[str]:
    parts = urlsplit(uri)
    if parts.scheme not in constants.STORAGE_SCHEMES:
        return [f"{field}: scheme of {uri!r} must be one of s3://, file://"]
    if parts.scheme == "s3" and not parts.netloc:
        return [f"{field}: {uri!r} names no bucket (s3://bucket/prefix)"]
    if parts.scheme == "file" and not parts.path.startswith("/"):
        return [f"{field}: {uri!r} must be an absolute path (file:///path)"]
    return []


def validate_spec(job_name: str, spec: TrainJobSpec) -> list[str]:
    """Problems the CRD schema cannot express, each naming its field; empty when the job can run."""
    problems: list[str] = []
    if len(job_name) > DNS_LABEL_MAX or not _DNS_LABEL.match(job_name):
        problems.append(
            f"metadata.name: {job_name!r} must be a DNS-1035 label (lowercase letters, digits, '-', "
            "starting with a letter): it names the headless Service"
        )
    longest_pod = pod_name(job_name, 10**ATTEMPT_DIGITS_RESERVED - 1, spec.workers - 1)
    if len(longest_pod) > DNS_LABEL_MAX:
        problems.append(
            f"metadata.name: {job_name!r} is too long: pod hostnames <name>-<attempt>-<rank> such as "
            f"{longest_pod!r} must have at most {DNS_LABEL_MAX} characters"
        )
    if spec.elastic is not None and spec.elastic.min_workers > spec.workers:
        # The CRD's CEL rule says the same where the API server evaluates CEL.
        problems.append(
            f"spec.elastic.minWorkers: {spec.elastic.min_workers} is more than spec.workers "
            f"({spec.workers}), the most the gang runs with"
        )
    problems += _check_uri("spec.storage.uri", spec.storage.uri)
    if spec.resume_from is not None:
        problems += _check_uri("spec.resumeFrom", spec.resume_from)
    problems += _validate_template(spec.template)
    return problems


def _validate_template(template: dict[str, Any]) -> list[str]:
    pod_spec = template.get("spec")
    if not isinstance(pod_spec, dict):
        return ["spec.template.spec: a PodTemplateSpec needs a pod spec"]
    problems: list[str] = []
    containers = pod_spec.get("containers")
    if not isinstance(containers, list) or not all(isinstance(c, dict) for c in containers):
        return ["spec.template.spec.containers: must be a list of containers"]
    names = [c.get("name") for c in containers]
    if constants.TRAINER_CONTAINER not in names:
        problems.append(
            f"spec.template.spec.containers: no container named {constants.TRAINER_CONTAINER!r} "
            f"(found {', '.join(map(str, names)) or 'none'})"
        )
    for container in containers:
        if container.get("name") == constants.TRAINER_CONTAINER and not container.get("image"):
            problems.append(f"spec.template.spec.containers[{constants.TRAINER_CONTAINER}].image: required")
    init_containers = pod_spec.get("initContainers") or []
    if constants.COORDINATOR_CONTAINER in names + [
        c.get("name") for c in init_containers if isinstance(c, dict)
    ]:
        problems.append(
            f"spec.template.spec: the container name {constants.COORDINATOR_CONTAINER!r} is reserved for "
            "the coordinator sidecar"
        )
    for volume in pod_spec.get("volumes") or []:
        if isinstance(volume, dict) and str(volume.get("name", "")).startswith(RESERVED_VOLUME_PREFIX):
            problems.append(
                f"spec.template.spec.volumes[{volume.get('name')}]: names starting with "
                f"{RESERVED_VOLUME_PREFIX!r} are reserved for the operator"
            )
    return problems


def accepted_fields(spec: TrainJobSpec) -> dict[str, Any]:
    """The fields that are fixed once the job has started, in wire form (kept in status.acceptedSpec)."""
    wire = spec.to_wire()
    fixed = {name: value for name, value in wire.items() if name not in MUTABLE_FIELDS}
    fixed["failurePolicy"] = {
        name: value
        for name, value in wire["failurePolicy"].items()
        if f"failurePolicy.{name}" not in MUTABLE_FIELDS
    }
    return fixed


def changed_fields(accepted: dict[str, Any], spec: TrainJobSpec) -> list[str]:
    """Fixed fields whose requested value differs from the accepted one, by wire name, sorted."""
    requested = accepted_fields(spec)
    changed = [
        name
        for name in accepted.keys() | requested.keys()
        if name != "failurePolicy" and accepted.get(name) != requested.get(name)
    ]
    accepted_policy, requested_policy = accepted.get("failurePolicy", {}), requested["failurePolicy"]
    changed += [
        f"failurePolicy.{name}"
        for name in accepted_policy.keys() | requested_policy.keys()
        if accepted_policy.get(name) != requested_policy.get(name)
    ]
    return sorted(changed)


def effective_spec(accepted: dict[str, Any], spec: TrainJobSpec) -> TrainJobSpec:
    """The spec the job runs with: the accepted fixed fields, the requested mutable ones.

    Raises `pydantic.ValidationError` when the stored accepted fields do not parse.
    """
    requested = spec.to_wire()
    merged = {
        **{name: value for name, value in requested.items() if name in MUTABLE_FIELDS},
        **accepted,
        "failurePolicy": {
            **accepted.get("failurePolicy", {}),
            "maxRestarts": spec.failure_policy.max_restarts,
            "maxDisruptions": spec.failure_policy.max_disruptions,
        },
    }
    return TrainJobSpec.from_wire(merged)
