"""What goes over HTTP, both ways: request bodies (JSON, YAML, protobuf) and query options in;
JSON, `meta.k8s.io` Tables and PartialObjectMetadata out, errors as `Status` objects."""

from __future__ import annotations

import json
from typing import Any

import yaml
from aiohttp import web

from . import protobuf
from .deletion import DeleteOptions
from .errors import APIError, bad_request
from .objects import WriteOptions
from .resources import ResourceInfo
from .store import Obj
from .tables import to_table

JSON = "application/json"


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def json_response(obj: Any, status: int = 200, warnings: list[str] | None = None) -> web.Response:
    """JSON as the real server writes it: compact, and ended by a newline (Go's json.Encoder)."""
    headers = {}
    if warnings:
        headers["Warning"] = ", ".join(f'299 - "{w.replace(chr(34), chr(92) + chr(34))}"' for w in warnings)
    return web.Response(text=dumps(obj) + "\n", status=status, content_type=JSON, headers=headers)


def status_response(err: APIError) -> web.Response:
    return json_response(err.status(), err.code)


def truthy(value: str | None) -> bool:
    return value is not None and value.lower() in ("true", "1", "")


async def read_body(request: web.Request) -> Any:
    raw = await request.read()
    if not raw:
        return None
    ctype = (request.content_type or "").lower()
    if "protobuf" in ctype:
        try:
            return protobuf.decode(raw)
        except protobuf.ProtobufError as exc:
            raise APIError(
                415,
                "UnsupportedMediaType",
                f"the body of the request was in an unknown format - accepted media types include: "
                f"application/json, application/yaml ({exc})",
            ) from exc
    try:
        if "yaml" in ctype:
            return yaml.safe_load(raw)
        return json.loads(raw)
    except (ValueError, yaml.YAMLError) as exc:
        raise bad_request(f"the object provided is unrecognized: {exc}") from exc


def write_options(request: web.Request) -> WriteOptions:
    q = request.query
    dry = q.getall("dryRun", [])
    for d in dry:
        if d != "All":
            raise bad_request(f'Invalid value: "{d}": supported values: "All"')
    validation_mode = q.get("fieldValidation", "Warn") or "Warn"
    if validation_mode not in ("Strict", "Warn", "Ignore"):
        raise bad_request(
            f'Invalid value: "{validation_mode}": fieldValidation must be one of Strict, Warn or Ignore'
        )
    return WriteOptions(
        dry_run=bool(dry),
        field_manager=q.get("fieldManager", ""),
        field_validation=validation_mode,
        force=truthy(q.get("force")) if "force" in q else False,
    )


async def delete_options(request: web.Request) -> DeleteOptions:
    """DeleteOptions from the body, else from the query (as kubectl and the clients send them)."""
    q = request.query
    body: dict[str, Any] = {}
    try:
        parsed = await read_body(request)
    except APIError:
        parsed = None
    if isinstance(parsed, dict):
        body = parsed
    grace = body.get("gracePeriodSeconds", q.get("gracePeriodSeconds"))
    propagation = body.get("propagationPolicy") or q.get("propagationPolicy")
    orphan = body.get("orphanDependents", q.get("orphanDependents"))
    if propagation is None and orphan is not None:
        propagation = "Orphan" if str(orphan).lower() == "true" else "Background"
    if propagation not in (None, "Orphan", "Background", "Foreground"):
        raise bad_request(
            f'Unsupported value: "{propagation}": supported values: "Foreground", "Background", "Orphan"'
        )
    pre = body.get("preconditions") or {}
    dry = body.get("dryRun") or q.getall("dryRun", [])
    return DeleteOptions(
        grace_period=int(grace) if grace is not None else None,
        propagation=propagation,
        precondition_uid=pre.get("uid"),
        precondition_rv=pre.get("resourceVersion"),
        dry_run=bool(dry),
    )


def wants_table(request: web.Request) -> bool:
    accept = request.headers.get("Accept", "")
    for part in accept.split(","):
        if "as=Table" in part and "g=meta.k8s.io" in part:
            return True
        if part.strip().startswith(JSON) or part.strip() in ("*/*", ""):
            return False
    return False


def wants_metadata(request: web.Request) -> bool:
    accept = request.headers.get("Accept", "")
    first = accept.split(",")[0]
    return "as=PartialObjectMetadata" in first


def partial(obj: Obj) -> Obj:
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata", {}),
    }


def render(
    request: web.Request,
    info: ResourceInfo,
    obj: Obj,
    status: int = 200,
    warnings: list[str] | None = None,
) -> web.Response:
    """One object in the shape the client asked for (a Status always as itself)."""
    if obj.get("kind") != "Status":
        if wants_table(request):
            include = request.query.get("includeObject", "Metadata")
            return json_response(
                to_table(
                    info, [obj], include, {"resourceVersion": obj["metadata"].get("resourceVersion", "")}
                ),
                status,
                warnings,
            )
        if wants_metadata(request):
            return json_response(partial(obj), status, warnings)
    return json_response(obj, status, warnings)
