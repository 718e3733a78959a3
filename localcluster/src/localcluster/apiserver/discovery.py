"""Discovery documents (/api, /apis, per group-version) and the OpenAPI v3 documents kubectl
reads for `explain` and to learn that the server validates fields itself (`fieldValidation`)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from .resources import Registry, ResourceInfo

Obj = dict[str, Any]

SUBRESOURCE_VERBS: dict[str, list[str]] = {
    "status": ["get", "patch", "update"],
    "scale": ["get", "patch", "update"],
    "finalize": ["update"],
    "log": ["get"],
    "binding": ["create"],
    "eviction": ["create"],
    "token": ["create"],
    "proxy": ["create", "delete", "get", "patch", "update"],
    "ephemeralcontainers": ["get", "patch", "update"],
    "exec": ["create", "get"],
    "portforward": ["create", "get"],
}
SUBRESOURCE_GVK: dict[str, tuple[str, str]] = {
    "Scale": ("autoscaling", "v1"),
    "TokenRequest": ("authentication.k8s.io", "v1"),
    "Eviction": ("policy", "v1"),
}


def version_info() -> Obj:
    return {
        "major": "1",
        "minor": "32",
        "gitVersion": "v1.32.0-localcluster",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z",
        "goVersion": "go1.23.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    }


def api_versions(server_address: str) -> Obj:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    }


def _group(name: str, versions: list[str]) -> Obj:
    vs = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": vs, "preferredVersion": vs[0]}


def api_group_list(registry: Registry) -> Obj:
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [_group(g, vs) for g, vs in registry.groups() if g],
    }


def api_group(registry: Registry, group: str) -> Obj | None:
    for g, vs in registry.groups():
        if g == group and g:
            return {"kind": "APIGroup", "apiVersion": "v1", **_group(g, vs)}
    return None


def _hash(info: ResourceInfo) -> str:
    return hashlib.sha256(f"{info.group}/{info.version}/{info.resource}".encode()).hexdigest()[:16]


def resource_entries(info: ResourceInfo) -> list[Obj]:
    main: Obj = {
        "name": info.resource,
        "singularName": info.singular,
        "namespaced": info.namespaced,
        "kind": info.kind,
        "verbs": sorted(info.verbs),
    }
    if info.short_names:
        main["shortNames"] = info.short_names
    if info.categories:
        main["categories"] = info.categories
    if not info.virtual:
        main["storageVersionHash"] = _hash(info)
    out = [main]
    for sub, kind in info.subresources.items():
        entry: Obj = {
            "name": f"{info.resource}/{sub}",
            "singularName": "",
            "namespaced": info.namespaced,
            "kind": kind or info.kind,
            "verbs": SUBRESOURCE_VERBS.get(sub, ["get"]),
        }
        if kind in SUBRESOURCE_GVK:
            entry["group"], entry["version"] = SUBRESOURCE_GVK[kind]
        out.append(entry)
    return out


def api_resource_list(registry: Registry, group: str, version: str) -> Obj | None:
    infos = registry.resources_in(group, version)
    if not infos:
        return None
    resources: list[Obj] = []
    for info in infos:
        resources += resource_entries(info)
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": resources,
    }


# -- OpenAPI v3 ------------------------------------------------------------------------


def _gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _schema_name(info: ResourceInfo) -> str:
    if info.group:
        rev = ".".join(reversed(info.group.split(".")))
        return f"{rev}.{info.version}.{info.kind}"
    return f"io.k8s.api.core.{info.version}.{info.kind}"


def openapi_v3_root(registry: Registry) -> Obj:
    paths: Obj = {}
    for group, versions in registry.groups():
        for v in versions:
            doc = openapi_v3_group_version(registry, group, v)
            if doc is None:
                continue
            digest = hashlib.sha512(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:64].upper()
            paths[_gv_path(group, v)] = {
                "serverRelativeURL": f"/openapi/v3/{_gv_path(group, v)}?hash={digest}"
            }
    return {"paths": paths}


OBJECT_META: Obj = {
    "description": "ObjectMeta is metadata that all persisted resources must have.",
    "type": "object",
    "properties": {
        "name": {"type": "string", "description": "Name must be unique within a namespace."},
        "namespace": {
            "type": "string",
            "description": "Namespace defines the space within which each name must be unique.",
        },
        "generateName": {"type": "string", "description": "An optional prefix to generate a unique name."},
        "labels": {
            "type": "object",
            "additionalProperties": {"type": "string", "default": ""},
            "description": "Map of string keys and values to organize and categorize objects.",
        },
        "annotations": {
            "type": "object",
            "additionalProperties": {"type": "string", "default": ""},
            "description": "Annotations is an unstructured key value map stored with a resource.",
        },
        "uid": {
            "type": "string",
            "description": "UID is the unique in time and space value for this object.",
        },
        "resourceVersion": {
            "type": "string",
            "description": "An opaque value that represents the internal version of this object.",
        },
        "generation": {
            "type": "integer",
            "format": "int64",
            "description": "A sequence number representing a specific generation of the desired state.",
        },
        "creationTimestamp": {
            "type": "string",
            "format": "date-time",
            "description": "When the server created this object.",
        },
        "deletionTimestamp": {
            "type": "string",
            "format": "date-time",
            "description": "RFC 3339 date and time at which this resource will be deleted.",
        },
        "deletionGracePeriodSeconds": {
            "type": "integer",
            "format": "int64",
            "description": "Number of seconds allowed for this object to gracefully terminate.",
        },
        "finalizers": {
            "type": "array",
            "items": {"type": "string", "default": ""},
            "description": "Must be empty before the object is deleted from the registry.",
        },
        "ownerReferences": {
            "type": "array",
            "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            "description": "List of objects depended by this object.",
        },
        "managedFields": {
            "type": "array",
            "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            "description": "The fields each manager owns (server-side apply).",
        },
    },
}
META_REF = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"


def _resource_schema(info: ResourceInfo) -> Obj:
    gvk = [{"group": info.group, "version": info.version, "kind": info.kind}]
    if info.schema is not None:
        schema = json.loads(json.dumps(info.schema))
        props = schema.setdefault("properties", {})
        props.setdefault(
            "apiVersion",
            {
                "type": "string",
                "description": "The versioned schema of this representation of an object.",
            },
        )
        props.setdefault(
            "kind",
            {
                "type": "string",
                "description": "The REST resource this object represents.",
            },
        )
        props["metadata"] = {
            "allOf": [{"$ref": f"#/components/schemas/{META_REF}"}],
            "default": {},
            "description": "Standard object's metadata.",
        }
    else:
        schema = {
            "type": "object",
            "description": f"{info.kind} of {info.api_version}.",
            "properties": {
                "apiVersion": {
                    "type": "string",
                    "description": "The versioned schema of this representation of an object.",
                },
                "kind": {
                    "type": "string",
                    "description": "The REST resource this object represents.",
                },
                "metadata": {
                    "allOf": [{"$ref": f"#/components/schemas/{META_REF}"}],
                    "default": {},
                    "description": "Standard object's metadata.",
                },
            },
            "x-kubernetes-preserve-unknown-fields": True,
        }
    schema["x-kubernetes-group-version-kind"] = gvk
    out: Obj = schema
    return out


_QUERY = [
    {"name": n, "in": "query", "schema": {"type": "string", "uniqueItems": True}}
    for n in ("dryRun", "fieldManager", "fieldValidation", "force", "pretty")
]


def openapi_v3_group_version(registry: Registry, group: str, version: str) -> Obj | None:
    infos = [i for i in registry.resources_in(group, version) if not i.virtual]
    if not registry.resources_in(group, version):
        return None
    schemas: Obj = {META_REF: OBJECT_META}
    paths: Obj = {}
    prefix = "/" + _gv_path(group, version)
    for info in infos:
        name = _schema_name(info)
        schemas[name] = _resource_schema(info)
        ref = {"$ref": f"#/components/schemas/{name}"}
        gvk = {"group": info.group, "version": info.version, "kind": info.kind}
        base = (
            f"{prefix}/namespaces/{{namespace}}/{info.resource}"
            if info.namespaced
            else f"{prefix}/{info.resource}"
        )
        body = {"content": {"application/json": {"schema": ref}}, "required": True}
        patch_body = {
            "content": {
                t: {"schema": {"type": "object"}}
                for t in (
                    "application/json-patch+json",
                    "application/merge-patch+json",
                    "application/apply-patch+yaml",
                )
            },
            "required": True,
        }
        ok = {"200": {"description": "OK", "content": {"application/json": {"schema": ref}}}}
        paths[base] = {
            "get": {
                "operationId": f"list{info.kind}",
                "responses": ok,
                "x-kubernetes-action": "list",
                "x-kubernetes-group-version-kind": gvk,
            },
            "post": {
                "operationId": f"create{info.kind}",
                "requestBody": body,
                "responses": ok,
                "parameters": _QUERY,
                "x-kubernetes-action": "post",
                "x-kubernetes-group-version-kind": gvk,
            },
        }
        paths[f"{base}/{{name}}"] = {
            "get": {
                "operationId": f"read{info.kind}",
                "responses": ok,
                "x-kubernetes-action": "get",
                "x-kubernetes-group-version-kind": gvk,
            },
            "put": {
                "operationId": f"replace{info.kind}",
                "requestBody": body,
                "responses": ok,
                "parameters": _QUERY,
                "x-kubernetes-action": "put",
                "x-kubernetes-group-version-kind": gvk,
            },
            "patch": {
                "operationId": f"patch{info.kind}",
                "requestBody": patch_body,
                "responses": ok,
                "parameters": _QUERY,
                "x-kubernetes-action": "patch",
                "x-kubernetes-group-version-kind": gvk,
            },
            "delete": {
                "operationId": f"delete{info.kind}",
                "responses": ok,
                "x-kubernetes-action": "delete",
                "x-kubernetes-group-version-kind": gvk,
            },
        }
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.32.0-localcluster"},
        "paths": paths,
        "components": {"schemas": schemas},
    }
