"""OpenAPI v3 structural schemas of CRDs: validation, defaulting and pruning, as the real server does.

Messages follow the real API server's wording (`spec.workers in body should be greater than or
equal to 1`), and each failure is a `details.causes` entry naming the field.
CEL rules (`x-kubernetes-validations`) are not evaluated.
"""

from __future__ import annotations

import base64
import copy
import ipaddress
import json
import re
import uuid
from datetime import datetime
from typing import Any

Schema = dict[str, Any]
Cause = dict[str, str]

ROOT_KEEP = ("apiVersion", "kind", "metadata")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def show(value: Any) -> str:
    """A value as `field.Invalid` prints it."""
    if isinstance(value, dict):
        return '"object"'
    if isinstance(value, list):
        return '"array"'
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return json.dumps(value)


def _num(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# -- pruning ------------------------------------------------------------------


def prune(obj: Any, schema: Schema | None, *, root: bool = True) -> Any:
    """Drop fields the schema does not declare, unless `x-kubernetes-preserve-unknown-fields`."""
    if schema is None:
        return obj
    if isinstance(obj, dict):
        props: dict[str, Schema] = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        preserve = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
        embedded = bool(schema.get("x-kubernetes-embedded-resource"))
        for key in list(obj):
            if (root or embedded) and key in ROOT_KEEP:
                if key == "metadata" and isinstance(obj[key], dict):
                    obj[key] = _prune_metadata(obj[key], root=root)
                continue
            if key in props:
                obj[key] = prune(obj[key], props[key], root=False)
            elif isinstance(additional, dict):
                obj[key] = prune(obj[key], additional, root=False)
            elif additional is True or preserve:
                continue
            else:
                del obj[key]
        return obj
    if isinstance(obj, list):
        items = schema.get("items")
        if isinstance(items, dict):
            return [prune(v, items, root=False) for v in obj]
    return obj


_EMBEDDED_META = {"name", "namespace", "labels", "annotations", "generateName", "finalizers"}


def _prune_metadata(meta: dict[str, Any], *, root: bool) -> dict[str, Any]:
    if root:
        return meta
    return {k: v for k, v in meta.items() if k in _EMBEDDED_META}


# -- defaulting ---------------------------------------------------------------


def apply_defaults(obj: Any, schema: Schema | None) -> Any:
    if schema is None:
        return obj
    if isinstance(obj, dict):
        props: dict[str, Schema] = schema.get("properties") or {}
        for key, sub in props.items():
            if key not in obj and "default" in sub:
                obj[key] = copy.deepcopy(sub["default"])
            elif obj.get(key) is None and key in obj and "default" in sub and not sub.get("nullable"):
                # null on a non-nullable field with a default is defaulted, as the real server does
                obj[key] = copy.deepcopy(sub["default"])
            if key in obj:
                obj[key] = apply_defaults(obj[key], sub)
        additional = schema.get("additionalProperties")
        if isinstance(additional, dict):
            for key in obj:
                if key not in props:
                    obj[key] = apply_defaults(obj[key], additional)
        return obj
    if isinstance(obj, list):
        items = schema.get("items")
        if isinstance(items, dict):
            return [apply_defaults(v, items) for v in obj]
    return obj


# -- validation ---------------------------------------------------------------

_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")
_HOSTNAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*", re.IGNORECASE)
_DURATION = re.compile(r"(\d+(\.\d+)?(ns|us|µs|ms|s|m|h|d|w))+")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


def _format_ok(fmt: str, value: Any) -> bool:
    if not isinstance(value, str):
        if fmt == "int32" and isinstance(value, int):
            return -(2**31) <= value < 2**31
        return True
    try:
        if fmt == "date-time" or fmt == "datetime":
            return bool(_DATE_TIME.fullmatch(value))
        if fmt == "date":
            datetime.strptime(value, "%Y-%m-%d")
            return True
        if fmt == "uuid":
            uuid.UUID(value)
            return True
        if fmt == "ipv4":
            ipaddress.IPv4Address(value)
            return True
        if fmt == "ipv6":
            ipaddress.IPv6Address(value)
            return True
        if fmt == "cidr":
            ipaddress.ip_network(value, strict=False)
            return True
        if fmt == "byte":
            base64.b64decode(value, validate=True)
            return True
        if fmt == "hostname":
            return bool(_HOSTNAME.fullmatch(value)) and len(value) <= 253
        if fmt == "duration":
            return bool(_DURATION.fullmatch(value))
        if fmt == "email":
            return bool(_EMAIL.fullmatch(value))
    except ValueError:
        return False
    return True


def _type_ok(expected: str, value: Any) -> bool:
    if expected == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer()
        )
    if expected == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if expected == "string":
        return isinstance(value, str)
    if expected == "boolean":
        return isinstance(value, bool)
    if expected == "array":
        return isinstance(value, list)
    if expected == "object":
        return isinstance(value, dict)
    return True


def _cause(reason: str, field: str, message: str) -> Cause:
    return {"reason": reason, "message": message, "field": field}


def _invalid(field: str, value: Any, detail: str) -> Cause:
    return _cause("FieldValueInvalid", field, f"Invalid value: {show(value)}: {detail}")


def validate(obj: Any, schema: Schema | None, path: str = "") -> list[Cause]:
    """Every violation of `schema` by `obj`, as Status causes."""
    if schema is None:
        return []
    causes: list[Cause] = []
    _validate(obj, schema, path, causes, root=True)
    return causes


def _child(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _validate(value: Any, schema: Schema, path: str, causes: list[Cause], *, root: bool = False) -> None:
    name = path or "<root>"
    if value is None:
        if schema.get("nullable") or not schema.get("type"):
            return
        causes.append(
            _cause(
                "FieldValueTypeInvalid",
                name,
                f'Invalid value: "null": {name} in body must be of type {schema["type"]}: "null"',
            )
        )
        return
    expected = schema.get("type")
    if schema.get("x-kubernetes-int-or-string"):
        if not (isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))):
            causes.append(
                _cause(
                    "FieldValueTypeInvalid",
                    name,
                    f'Invalid value: "{_json_type(value)}": {name} in body must be of type integer,string: '
                    f'"{_json_type(value)}"',
                )
            )
            return
    elif expected and not _type_ok(expected, value):
        actual = _json_type(value)
        causes.append(
            _cause(
                "FieldValueTypeInvalid",
                name,
                f'Invalid value: "{actual}": {name} in body must be of type {expected}: "{actual}"',
            )
        )
        return

    if "enum" in schema and value not in schema["enum"]:
        supported = ", ".join(json.dumps(v) for v in schema["enum"])
        causes.append(
            _cause(
                "FieldValueNotSupported",
                name,
                f"Unsupported value: {show(value)}: supported values: {supported}",
            )
        )

    if isinstance(value, int | float) and not isinstance(value, bool):
        _check_number(value, schema, name, causes)
    if isinstance(value, str):
        _check_string(value, schema, name, causes)
    if isinstance(value, list):
        _check_array(value, schema, path, name, causes)
    if isinstance(value, dict):
        _check_object(value, schema, path, name, causes, root=root)

    for sub in schema.get("allOf") or []:
        _validate(value, sub, path, causes)
    if schema.get("anyOf") and not any(not validate(value, sub, path) for sub in schema["anyOf"]):
        causes.append(_invalid(name, value, f"{name} in body must match at least one schema in anyOf"))
    if schema.get("oneOf"):
        passing = sum(1 for sub in schema["oneOf"] if not validate(value, sub, path))
        if passing != 1:
            causes.append(_invalid(name, value, f"{name} in body must match exactly one schema in oneOf"))
    if isinstance(schema.get("not"), dict) and not validate(value, schema["not"], path):
        causes.append(_invalid(name, value, f"{name} in body must not be valid against the schema in not"))


def _check_number(value: float, schema: Schema, name: str, causes: list[Cause]) -> None:
    if "minimum" in schema:
        lo = schema["minimum"]
        if schema.get("exclusiveMinimum") is True and value <= lo:
            causes.append(_invalid(name, value, f"{name} in body should be greater than {_num(lo)}"))
        elif value < lo:
            causes.append(
                _invalid(name, value, f"{name} in body should be greater than or equal to {_num(lo)}")
            )
    if "maximum" in schema:
        hi = schema["maximum"]
        if schema.get("exclusiveMaximum") is True and value >= hi:
            causes.append(_invalid(name, value, f"{name} in body should be less than {_num(hi)}"))
        elif value > hi:
            causes.append(_invalid(name, value, f"{name} in body should be less than or equal to {_num(hi)}"))
    if "multipleOf" in schema and schema["multipleOf"] and (value / schema["multipleOf"]) % 1 != 0:
        causes.append(
            _invalid(name, value, f"{name} in body should be a multiple of {_num(schema['multipleOf'])}")
        )
    fmt = schema.get("format")
    if fmt == "int32" and not -(2**31) <= value < 2**31:
        causes.append(_invalid(name, value, f"{name} in body must be of type int32: {show(value)}"))


def _check_string(value: str, schema: Schema, name: str, causes: list[Cause]) -> None:
    if "minLength" in schema and len(value) < schema["minLength"]:
        causes.append(
            _invalid(name, value, f"{name} in body should be at least {schema['minLength']} chars long")
        )
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        causes.append(
            _invalid(name, value, f"{name} in body should be at most {schema['maxLength']} chars long")
        )
    if "pattern" in schema:
        try:
            ok = re.search(schema["pattern"], value) is not None
        except re.error:
            ok = True
        if not ok:
            causes.append(_invalid(name, value, f"{name} in body should match '{schema['pattern']}'"))
    fmt = schema.get("format")
    if fmt and not _format_ok(fmt, value):
        causes.append(_invalid(name, value, f"{name} in body must be of type {fmt}: {show(value)}"))


def _check_array(value: list[Any], schema: Schema, path: str, name: str, causes: list[Cause]) -> None:
    if "minItems" in schema and len(value) < schema["minItems"]:
        causes.append(
            _invalid(name, len(value), f"{name} in body should have at least {schema['minItems']} items")
        )
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        causes.append(
            _cause(
                "FieldValueTooMany",
                name,
                f"Too many: {len(value)}: must have at most {schema['maxItems']} items",
            )
        )
    list_type = schema.get("x-kubernetes-list-type")
    if schema.get("uniqueItems") or list_type == "set":
        seen: list[str] = []
        for i, item in enumerate(value):
            enc = json.dumps(item, sort_keys=True)
            if enc in seen:
                causes.append(_cause("FieldValueDuplicate", f"{path}[{i}]", f"Duplicate value: {show(item)}"))
            seen.append(enc)
    if list_type == "map":
        keys = schema.get("x-kubernetes-list-map-keys") or []
        seen_keys: list[str] = []
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                continue
            enc = json.dumps({k: item.get(k) for k in keys}, sort_keys=True)
            if enc in seen_keys:
                causes.append(_cause("FieldValueDuplicate", f"{path}[{i}]", f"Duplicate value: {enc}"))
            seen_keys.append(enc)
    items = schema.get("items")
    if isinstance(items, dict):
        for i, item in enumerate(value):
            _validate(item, items, f"{path}[{i}]", causes)


def _check_object(
    value: dict[str, Any], schema: Schema, path: str, name: str, causes: list[Cause], *, root: bool
) -> None:
    for req in schema.get("required") or []:
        if req not in value:
            causes.append(_cause("FieldValueRequired", _child(path, req), "Required value"))
    if "minProperties" in schema and len(value) < schema["minProperties"]:
        causes.append(
            _invalid(name, value, f"{name} in body should have at least {schema['minProperties']} properties")
        )
    if "maxProperties" in schema and len(value) > schema["maxProperties"]:
        causes.append(
            _invalid(name, value, f"{name} in body should have at most {schema['maxProperties']} properties")
        )
    if schema.get("x-kubernetes-embedded-resource"):
        for key in ("apiVersion", "kind"):
            if not value.get(key):
                causes.append(
                    _cause("FieldValueRequired", _child(path, key), "Required value: must not be empty")
                )
    props: dict[str, Schema] = schema.get("properties") or {}
    additional = schema.get("additionalProperties")
    for key, sub_value in value.items():
        if root and key in ROOT_KEEP:
            if key == "metadata" and "metadata" in props:
                _validate(sub_value, props["metadata"], _child(path, key), causes)
            continue
        if key in props:
            _validate(sub_value, props[key], _child(path, key), causes)
        elif isinstance(additional, dict):
            _validate(sub_value, additional, _child(path, key), causes)


def unknown_fields(obj: Any, schema: Schema | None, path: str = "", *, root: bool = True) -> list[str]:
    """Field paths that pruning would drop (for fieldValidation=Strict/Warn)."""
    if schema is None:
        return []
    out: list[str] = []
    if isinstance(obj, dict):
        props: dict[str, Schema] = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        preserve = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
        embedded = bool(schema.get("x-kubernetes-embedded-resource"))
        for key, sub in obj.items():
            if (root or embedded) and key in ROOT_KEEP:
                continue
            if key in props:
                out += unknown_fields(sub, props[key], _child(path, key), root=False)
            elif isinstance(additional, dict):
                out += unknown_fields(sub, additional, _child(path, key), root=False)
            elif additional is True or preserve:
                continue
            else:
                out.append(_child(path, key))
    elif isinstance(obj, list):
        items = schema.get("items")
        if isinstance(items, dict):
            for i, sub in enumerate(obj):
                out += unknown_fields(sub, items, f"{path}[{i}]", root=False)
    return out


# -- object metadata ----------------------------------------------------------

_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
_QUALIFIED_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")


def validate_name(name: str, *, label: bool = False) -> str | None:
    """Why `name` is not a valid object name, or None."""
    if label:
        if len(name) > 63 or not _DNS1123_LABEL.fullmatch(name):
            return (
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
                "and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', "
                "regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
            )
        return None
    if len(name) > 253 or not _DNS1123_SUBDOMAIN.fullmatch(name):
        return (
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
            "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used "
            "for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
        )
    return None


def validate_labels(labels: Any, field: str) -> list[Cause]:
    causes: list[Cause] = []
    if labels is None:
        return causes
    if not isinstance(labels, dict):
        return [_cause("FieldValueTypeInvalid", field, "Invalid value: must be a map of strings")]
    for key, value in labels.items():
        prefix, _, name = key.rpartition("/")
        if (
            not name
            or len(name) > 63
            or not _QUALIFIED_NAME.fullmatch(name)
            or (prefix and not _DNS1123_SUBDOMAIN.fullmatch(prefix))
        ):
            causes.append(
                _invalid(
                    field,
                    key,
                    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start "
                    "and end with an alphanumeric character",
                )
            )
        if not isinstance(value, str):
            causes.append(_invalid(f"{field}", value, "label values must be strings"))
        elif len(value) > 63 or not _LABEL_VALUE.fullmatch(value):
            causes.append(
                _invalid(
                    field,
                    value,
                    "a valid label must be an empty string or consist of alphanumeric characters, '-', "
                    "'_' or '.', and must start and end with an alphanumeric character",
                )
            )
    return causes
