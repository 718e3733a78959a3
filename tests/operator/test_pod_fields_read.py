"""What the operator keeps of each watched pod (`PodObservation.fields_read`): a pass sees the
same observation of the trimmed pod as of the whole one, for pods in every state the lifecycle
tells apart, built on the operator's own worker pod manifest."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.operator.trainjob_factories import NOW, SETTINGS, job, pod, timestamp
from trainjob_operator.api import constants
from trainjob_operator.api.types import TrainJob
from trainjob_operator.reconciling import Observation, PodObservation
from trainjob_operator.reconciling.children import worker_pod

_STATES: list[dict[str, Any]] = [
    {"phase": "Pending", "ready": False, "unscheduled": ("SchedulingGated", "gated", NOW)},
    {"phase": "Pending", "ready": False, "waiting": ("CreateContainerConfigError", "no key")},
    {"phase": "Running", "node": "node-1"},
    {"phase": "Running", "node": "node-1", "deleting": True},
    {"phase": "Running", "node": "node-1", "disruption": ("EvictionByEvictionAPI", "evicted")},
    {"phase": "Succeeded", "exit_code": 0, "node": "node-1", "finished_at": NOW},
    {"phase": "Failed", "exit_code": 3, "reason": "Error", "message": "boom", "pod_reason": "Evicted"},
]


def _as_served(state: dict[str, Any]) -> dict[str, Any]:
    """The operator's worker pod as the API server would serve it in `state`: the manifest's
    spec, the state's status, and what the server adds (managedFields, a resourceVersion)."""
    manifest = worker_pod(TrainJob.from_wire(job()), 0, 1, SETTINGS)
    served = copy.deepcopy(manifest)
    example = pod(0, 1, **state)
    served["status"] = example["status"]
    served["spec"]["schedulingGates"] = [{"name": constants.GANG_SCHEDULING_GATE}]
    if "nodeName" in example["spec"]:
        served["spec"]["nodeName"] = example["spec"]["nodeName"]
    metadata = served["metadata"]
    metadata.update(uid="uid-1", resourceVersion="42")
    metadata.setdefault("annotations", {})[constants.ANNOTATION_LAST_COMMIT_TIME] = timestamp(NOW)
    if "deletionTimestamp" in example["metadata"]:
        metadata["deletionTimestamp"] = example["metadata"]["deletionTimestamp"]
    metadata["managedFields"] = [{"manager": "trainjob-operator", "fieldsV1": {"f:spec": {}}}]
    return served


@pytest.mark.parametrize("state", _STATES, ids=lambda s: f"{s['phase']}-{len(s)}")
def test_a_trimmed_pod_is_observed_as_the_whole_pod(state: dict[str, Any]) -> None:
    served = _as_served(state)
    trimmed = PodObservation.fields_read(served)
    assert PodObservation.from_pod(trimmed) == PodObservation.from_pod(served)
    assert PodObservation.from_pod(trimmed) is not None
    whole = Observation.from_objects([served], [])
    assert Observation.from_objects([trimmed], []) == whole
    # The expectations compare the resourceVersion; the node lookup reads nodeName.
    assert trimmed["metadata"]["resourceVersion"] == "42"
    assert trimmed["spec"].get("nodeName") == served["spec"].get("nodeName")
    assert trimmed["spec"]["schedulingGates"] == served["spec"]["schedulingGates"]


def test_what_no_pass_reads_is_not_kept() -> None:
    served = _as_served({"phase": "Running", "node": "node-1"})
    trimmed = PodObservation.fields_read(served)
    assert "managedFields" not in trimmed["metadata"]
    assert set(trimmed["spec"]) == {"nodeName", "schedulingGates", "containers", "initContainers"} & set(
        served["spec"]
    )
    for key in ("containers", "initContainers"):
        for kept in trimmed["spec"].get(key, []):
            assert set(kept) == {"name", "image"}
    # The served pod itself is left as it was.
    assert "managedFields" in served["metadata"] and "env" in served["spec"]["containers"][0]
