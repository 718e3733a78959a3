"""The TrainJob CustomResourceDefinition, generated from the API types in `api.types`.

pydantic writes JSON Schema 2020-12; a CRD needs a *structural* OpenAPI v3 schema. The
conversion below does what kubebuilder's generator does for Go types:

- `$ref`s are inlined (a CRD schema has no `$defs`);
- `anyOf: [X, null]` of an optional field becomes X (absent means unset; the API server drops
  nulls of non-nullable fields), and its `default: null` goes away;
- a free object (`dict[str, Any]`: `template`, `config`, metric maps) becomes `type: object` with
  `x-kubernetes-preserve-unknown-fields: true`; `template` is a PodTemplateSpec, which has no
  apiVersion/kind, so `x-kubernetes-embedded-resource` would be wrong for it;
- pydantic's `title`s are dropped, descriptions are kept (`kubectl explain` shows them).
"""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import BaseModel

from . import constants
from .types import TrainJobSpec, TrainJobStatus

PRINTER_COLUMNS: tuple[dict[str, Any], ...] = (
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase", "description": "Lifecycle phase"},
    {
        "name": "Workers",
        "type": "integer",
        "jsonPath": ".status.workers.active",
        "description": "Worker pods of the current attempt that are pending or running",
    },
    {
        "name": "Iteration",
        "type": "integer",
        "jsonPath": ".status.iteration",
        "description": "Highest iteration reported by every rank",
    },
    # Progress and ETA: the coordinator's estimate from worker_sdk.set_total_iterations.
    {
        "name": "Progress",
        "type": "integer",
        "jsonPath": ".status.progress.percentage",
        "description": "Percent of the iterations the program said it runs (worker_sdk.set_total_iterations)",
    },
    {
        "name": "ETA",
        "type": "string",
        "jsonPath": ".status.progress.eta",
        "description": "Estimated time remaining at the recent rate",
    },
    {
        "name": "Restarts",
        "type": "integer",
        "jsonPath": ".status.restarts",
        "description": "Restarts after failures",
    },
    {
        "name": "Disruptions",
        "type": "integer",
        "jsonPath": ".status.disruptions",
        "description": "Restarts after lost nodes, evictions and preemptions",
        "priority": 1,
    },
    # Elastic gangs: the world size of the current attempt beside spec.workers (-o wide).
    {
        "name": "Size",
        "type": "integer",
        "jsonPath": ".status.workers.current",
        "description": "Elastic gangs: workers in the current attempt's world",
        "priority": 1,
    },
    {
        "name": "Max",
        "type": "integer",
        "jsonPath": ".status.workers.desired",
        "description": "Elastic gangs: spec.workers, the most the gang runs with",
        "priority": 1,
    },
    {
        "name": "Reason",
        "type": "string",
        "jsonPath": ".status.reason",
        "description": "Why the job is in its phase (ImagePullBackOff, Unschedulable, NodeLost...)",
    },
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
)

_DROPPED_KEYS = frozenset({"title"})
# Keys in the order a reader of the YAML expects them; any other key goes last.
_KEY_ORDER = {
    key: index
    for index, key in enumerate(
        ("type", "format", "description", "enum", "default", "minimum", "minLength", "required")
    )
}


def _inline(node: Any, definitions: dict[str, Any]) -> Any:
    """Replace every `$ref` by its definition; sibling keys of the `$ref` win (descriptions, defaults)."""
    if isinstance(node, list):
        return [_inline(item, definitions) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = definitions[node["$ref"].rsplit("/", 1)[-1]]
        merged = {**target, **{key: value for key, value in node.items() if key != "$ref"}}
        return _inline(merged, definitions)
    return {key: _inline(value, definitions) for key, value in node.items() if key != "$defs"}


def _structural(node: dict[str, Any]) -> dict[str, Any]:
    """Turn one inlined JSON Schema node into a structural OpenAPI v3 node."""
    node = dict(node)
    any_of = node.pop("anyOf", None)
    if any_of is not None:
        non_null = [option for option in any_of if option.get("type") != "null"]
        if len(non_null) != 1:
            raise ValueError(f"a CRD schema cannot express the union {any_of!r}")
        node = {**non_null[0], **node}
        if node.get("default", 0) is None:
            del node["default"]
    if "exclusiveMinimum" in node or "exclusiveMaximum" in node:
        # JSON Schema's numeric form differs from OpenAPI v3.0's boolean one: use ge/le.
        raise ValueError("use ge/le constraints: exclusive bounds differ between the schema dialects")
    result: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED_KEYS:
            continue
        if key == "properties":
            result[key] = {name: _structural(child) for name, child in value.items()}
        elif key == "items":
            result[key] = _structural(value)
        elif key == "additionalProperties":
            if isinstance(value, dict) and value:
                result[key] = _structural(value)
        else:
            result[key] = value
    free_object = result.get("type") == "object" and "properties" not in result
    if free_object and "additionalProperties" not in result:
        result["x-kubernetes-preserve-unknown-fields"] = True
    return dict(sorted(result.items(), key=lambda item: _KEY_ORDER.get(item[0], len(_KEY_ORDER))))


def openapi_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of one API model."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    return _structural(_inline(raw, raw.get("$defs", {})))


def trainjob_openapi_schema() -> dict[str, Any]:
    """The schema of the whole TrainJob object (what `versions[].schema.openAPIV3Schema` holds)."""
    return {
        "type": "object",
        "description": "A distributed PyTorch training job: a gang of worker pods with committed "
        "checkpoints and live progress.",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": openapi_schema(TrainJobSpec),
            "status": openapi_schema(TrainJobStatus),
        },
        "required": ["spec"],
    }


def trainjob_crd() -> dict[str, Any]:
    """The `apiextensions.k8s.io/v1` CustomResourceDefinition of TrainJob."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": constants.CRD_NAME},
        "spec": {
            "group": constants.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": constants.KIND,
                "listKind": constants.LIST_KIND,
                "plural": constants.PLURAL,
                "singular": constants.SINGULAR,
                "shortNames": list(constants.SHORT_NAMES),
                "categories": list(constants.CATEGORIES),
            },
            "versions": [
                {
                    "name": constants.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [dict(column) for column in PRINTER_COLUMNS],
                    "schema": {"openAPIV3Schema": trainjob_openapi_schema()},
                }
            ],
        },
    }


def trainjob_crd_yaml() -> str:
    """The CRD as the YAML committed under deploy/crds/."""
    header = "# Generated by `trainjob crd` from trainjob_operator.api.types; do not edit.\n"
    return header + yaml.safe_dump(trainjob_crd(), sort_keys=False, width=100)
