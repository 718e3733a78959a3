"""Decoding of Kubernetes protobuf request bodies for the built-in kinds typed Go clients send.

kubectl's `create` subcommands and Helm's release storage (Secrets) use client-go's typed
clients, which encode request bodies as `application/vnd.kubernetes.protobuf` and accept JSON
back. The wire format is the magic `k8s\\x00` then a `runtime.Unknown` holding the object's own
protobuf; field numbers below are those of the Kubernetes `generated.proto` files.
Kinds not listed here are refused with 415, naming JSON as the accepted type.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

MAGIC = b"k8s\x00"

# A field: (name, type, repeated). type is "string", "bytes", "int", "bool", "time",
# "fields" (FieldsV1 raw JSON), a nested schema dict, or ("map", value type).
Field = tuple[str, Any, bool]
Schema = dict[int, Field]

TIME: Schema = {1: ("seconds", "int", False), 2: ("nanos", "int", False)}
OWNER_REF: Schema = {
    1: ("kind", "string", False),
    3: ("name", "string", False),
    4: ("uid", "string", False),
    5: ("apiVersion", "string", False),
    6: ("controller", "bool", False),
    7: ("blockOwnerDeletion", "bool", False),
}
MANAGED: Schema = {
    1: ("manager", "string", False),
    2: ("operation", "string", False),
    3: ("apiVersion", "string", False),
    4: ("time", "time", False),
    6: ("fieldsType", "string", False),
    7: ("fieldsV1", "fields", False),
    8: ("subresource", "string", False),
}
OBJECT_META: Schema = {
    1: ("name", "string", False),
    2: ("generateName", "string", False),
    3: ("namespace", "string", False),
    5: ("uid", "string", False),
    6: ("resourceVersion", "string", False),
    7: ("generation", "int", False),
    8: ("creationTimestamp", "time", False),
    9: ("deletionTimestamp", "time", False),
    10: ("deletionGracePeriodSeconds", "int", False),
    11: ("labels", ("map", "string"), False),
    12: ("annotations", ("map", "string"), False),
    13: ("ownerReferences", OWNER_REF, True),
    14: ("finalizers", "string", True),
    17: ("managedFields", MANAGED, True),
}
OBJECT_REF: Schema = {
    1: ("kind", "string", False),
    2: ("namespace", "string", False),
    3: ("name", "string", False),
    4: ("uid", "string", False),
    5: ("apiVersion", "string", False),
    6: ("resourceVersion", "string", False),
    7: ("fieldPath", "string", False),
}
LOCAL_REF: Schema = {1: ("name", "string", False)}
RESOURCE_ATTRS: Schema = {
    1: ("namespace", "string", False),
    2: ("verb", "string", False),
    3: ("group", "string", False),
    4: ("version", "string", False),
    5: ("resource", "string", False),
    6: ("subresource", "string", False),
    7: ("name", "string", False),
}
NON_RESOURCE_ATTRS: Schema = {1: ("path", "string", False), 2: ("verb", "string", False)}
POLICY_RULE: Schema = {
    1: ("verbs", "string", True),
    3: ("apiGroups", "string", True),
    4: ("resources", "string", True),
    5: ("resourceNames", "string", True),
    6: ("nonResourceURLs", "string", True),
}
SUBJECT: Schema = {
    1: ("kind", "string", False),
    2: ("apiGroup", "string", False),
    3: ("name", "string", False),
    4: ("namespace", "string", False),
}
ROLE_REF: Schema = {
    1: ("apiGroup", "string", False),
    2: ("kind", "string", False),
    3: ("name", "string", False),
}

QUANTITY_MAP = ("map", "quantity")
CONTAINER: Schema = {
    1: ("name", "string", False),
    2: ("image", "string", False),
    3: ("command", "string", True),
    4: ("args", "string", True),
    5: ("workingDir", "string", False),
    6: (
        "ports",
        {
            1: ("name", "string", False),
            2: ("hostPort", "int", False),
            3: ("containerPort", "int", False),
            4: ("protocol", "string", False),
            5: ("hostIP", "string", False),
        },
        True,
    ),
    7: ("env", {1: ("name", "string", False), 2: ("value", "string", False)}, True),
    8: ("resources", {1: ("limits", QUANTITY_MAP, False), 2: ("requests", QUANTITY_MAP, False)}, False),
    9: (
        "volumeMounts",
        {1: ("name", "string", False), 2: ("readOnly", "bool", False), 3: ("mountPath", "string", False)},
        True,
    ),
    13: ("terminationMessagePath", "string", False),
    14: ("imagePullPolicy", "string", False),
    20: ("terminationMessagePolicy", "string", False),
}
POD_SPEC: Schema = {
    2: ("containers", CONTAINER, True),
    3: ("restartPolicy", "string", False),
    4: ("terminationGracePeriodSeconds", "int", False),
    5: ("activeDeadlineSeconds", "int", False),
    6: ("dnsPolicy", "string", False),
    7: ("nodeSelector", ("map", "string"), False),
    8: ("serviceAccountName", "string", False),
    10: ("nodeName", "string", False),
    16: ("hostname", "string", False),
    17: ("subdomain", "string", False),
    19: ("schedulerName", "string", False),
    20: ("initContainers", CONTAINER, True),
}
POD_TEMPLATE: Schema = {1: ("metadata", OBJECT_META, False), 2: ("spec", POD_SPEC, False)}
LABEL_SELECTOR: Schema = {
    1: ("matchLabels", ("map", "string"), False),
    2: (
        "matchExpressions",
        {1: ("key", "string", False), 2: ("operator", "string", False), 3: ("values", "string", True)},
        True,
    ),
}

KINDS: dict[str, Schema] = {
    "ConfigMap": {
        1: ("metadata", OBJECT_META, False),
        2: ("data", ("map", "string"), False),
        3: ("binaryData", ("map", "bytes"), False),
        4: ("immutable", "bool", False),
    },
    "Secret": {
        1: ("metadata", OBJECT_META, False),
        2: ("data", ("map", "bytes"), False),
        3: ("type", "string", False),
        4: ("stringData", ("map", "string"), False),
        5: ("immutable", "bool", False),
    },
    "Namespace": {
        1: ("metadata", OBJECT_META, False),
        2: ("spec", {1: ("finalizers", "string", True)}, False),
        3: ("status", {1: ("phase", "string", False)}, False),
    },
    "ServiceAccount": {
        1: ("metadata", OBJECT_META, False),
        2: ("secrets", OBJECT_REF, True),
        3: ("imagePullSecrets", LOCAL_REF, True),
        4: ("automountServiceAccountToken", "bool", False),
    },
    "TokenRequest": {
        1: ("metadata", OBJECT_META, False),
        2: (
            "spec",
            {
                1: ("audiences", "string", True),
                3: (
                    "boundObjectRef",
                    {
                        1: ("kind", "string", False),
                        2: ("apiVersion", "string", False),
                        3: ("name", "string", False),
                        4: ("uid", "string", False),
                    },
                    False,
                ),
                4: ("expirationSeconds", "int", False),
            },
            False,
        ),
    },
    "SelfSubjectAccessReview": {
        1: ("metadata", OBJECT_META, False),
        2: (
            "spec",
            {
                1: ("resourceAttributes", RESOURCE_ATTRS, False),
                2: ("nonResourceAttributes", NON_RESOURCE_ATTRS, False),
            },
            False,
        ),
    },
    "SelfSubjectRulesReview": {
        1: ("metadata", OBJECT_META, False),
        2: ("spec", {1: ("namespace", "string", False)}, False),
    },
    "Role": {1: ("metadata", OBJECT_META, False), 2: ("rules", POLICY_RULE, True)},
    "ClusterRole": {1: ("metadata", OBJECT_META, False), 2: ("rules", POLICY_RULE, True)},
    "RoleBinding": {
        1: ("metadata", OBJECT_META, False),
        2: ("subjects", SUBJECT, True),
        3: ("roleRef", ROLE_REF, False),
    },
    "ClusterRoleBinding": {
        1: ("metadata", OBJECT_META, False),
        2: ("subjects", SUBJECT, True),
        3: ("roleRef", ROLE_REF, False),
    },
    "Lease": {
        1: ("metadata", OBJECT_META, False),
        2: (
            "spec",
            {
                1: ("holderIdentity", "string", False),
                2: ("leaseDurationSeconds", "int", False),
                3: ("acquireTime", "microtime", False),
                4: ("renewTime", "microtime", False),
                5: ("leaseTransitions", "int", False),
            },
            False,
        ),
    },
    "Deployment": {
        1: ("metadata", OBJECT_META, False),
        2: (
            "spec",
            {
                1: ("replicas", "int", False),
                2: ("selector", LABEL_SELECTOR, False),
                3: ("template", POD_TEMPLATE, False),
                4: ("strategy", {1: ("type", "string", False)}, False),
                5: ("minReadySeconds", "int", False),
                6: ("revisionHistoryLimit", "int", False),
            },
            False,
        ),
        3: ("status", {}, False),
    },
    "Job": {
        1: ("metadata", OBJECT_META, False),
        2: (
            "spec",
            {
                1: ("parallelism", "int", False),
                2: ("completions", "int", False),
                3: ("activeDeadlineSeconds", "int", False),
                4: ("selector", LABEL_SELECTOR, False),
                6: ("template", POD_TEMPLATE, False),
                7: ("backoffLimit", "int", False),
            },
            False,
        ),
        3: ("status", {}, False),
    },
    "Service": {
        1: ("metadata", OBJECT_META, False),
        2: (
            "spec",
            {
                1: (
                    "ports",
                    {
                        1: ("name", "string", False),
                        2: ("protocol", "string", False),
                        3: ("port", "int", False),
                        4: ("targetPort", "intorstring", False),
                        5: ("nodePort", "int", False),
                    },
                    True,
                ),
                2: ("selector", ("map", "string"), False),
                3: ("clusterIP", "string", False),
                4: ("type", "string", False),
                5: ("externalIPs", "string", True),
                7: ("sessionAffinity", "string", False),
                10: ("externalName", "string", False),
            },
            False,
        ),
        3: ("status", {}, False),
    },
    "PriorityClass": {
        1: ("metadata", OBJECT_META, False),
        2: ("value", "int", False),
        3: ("globalDefault", "bool", False),
        4: ("description", "string", False),
        5: ("preemptionPolicy", "string", False),
    },
    "DeleteOptions": {
        1: ("gracePeriodSeconds", "int", False),
        2: ("preconditions", {1: ("uid", "string", False), 2: ("resourceVersion", "string", False)}, False),
        3: ("orphanDependents", "bool", False),
        4: ("propagationPolicy", "string", False),
        5: ("dryRun", "string", True),
    },
}


EPOCH = "1970-01-01T00:00:00Z"
# Go pointer fields: present on the wire only when set, so a zero there is meant
POINTER_FIELDS = {
    "replicas",
    "parallelism",
    "completions",
    "backoffLimit",
    "activeDeadlineSeconds",
    "terminationGracePeriodSeconds",
    "automountServiceAccountToken",
    "immutable",
    "expirationSeconds",
    "gracePeriodSeconds",
    "orphanDependents",
    "deletionGracePeriodSeconds",
    "controller",
    "blockOwnerDeletion",
    "revisionHistoryLimit",
    "leaseDurationSeconds",
    "leaseTransitions",
    "holderIdentity",
}


# Fields whose JSON has no omitempty: kept at their zero value, by kind.
ALWAYS_PRESENT: dict[str, dict[str, Any]] = {"PriorityClass": {"value": 0}}


class ProtobufError(ValueError):
    pass


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= len(data):
            raise ProtobufError("truncated varint")
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _fields(data: bytes) -> list[tuple[int, int, Any]]:
    """(field number, wire type, value: int for varints, bytes for length-delimited)."""
    out: list[tuple[int, int, Any]] = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
            out.append((number, wire, value))
        elif wire == 2:
            length, pos = _varint(data, pos)
            out.append((number, wire, data[pos : pos + length]))
            pos += length
        elif wire == 1:
            out.append((number, wire, int.from_bytes(data[pos : pos + 8], "little")))
            pos += 8
        elif wire == 5:
            out.append((number, wire, int.from_bytes(data[pos : pos + 4], "little")))
            pos += 4
        else:
            raise ProtobufError(f"unsupported wire type {wire}")
    return out


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _time(data: bytes, micro: bool = False) -> str:
    t = decode_message(data, TIME)
    ts = datetime.fromtimestamp(int(t.get("seconds", 0)) + int(t.get("nanos", 0)) / 1e9, UTC)
    return ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if micro else ts.strftime("%Y-%m-%dT%H:%M:%SZ")


def _scalar(typ: Any, wire: int, value: Any) -> Any:
    if typ == "string":
        return value.decode() if isinstance(value, bytes) else str(value)
    if typ == "bytes":
        return base64.b64encode(value).decode()
    if typ == "int":
        return _signed(value)
    if typ == "bool":
        return bool(value)
    if typ == "time":
        return _time(value)
    if typ == "microtime":
        return _time(value, micro=True)
    if typ == "fields":
        import json

        raw = decode_message(value, {1: ("raw", "rawbytes", False)}).get("raw", b"{}")
        return json.loads(raw or b"{}")
    if typ == "rawbytes":
        return value
    if typ == "quantity":
        return decode_message(value, {1: ("string", "string", False)}).get("string", "0")
    if typ == "intorstring":
        ios = decode_message(
            value, {1: ("type", "int", False), 2: ("intVal", "int", False), 3: ("strVal", "string", False)}
        )
        return ios.get("strVal", "") if ios.get("type") == 1 else ios.get("intVal", 0)
    if isinstance(typ, dict):
        return decode_message(value, typ)
    raise ProtobufError(f"unknown field type {typ!r}")


def decode_message(data: bytes, schema: Schema) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for number, wire, value in _fields(data):
        field = schema.get(number)
        if field is None:
            continue  # a field this decoder does not know is dropped
        name, typ, repeated = field
        if isinstance(typ, tuple) and typ[0] == "map":
            entry = decode_message(value, {1: ("key", "string", False), 2: ("value", typ[1], False)})
            out.setdefault(name, {})[entry.get("key", "")] = entry.get("value", "")
        elif repeated:
            if typ in ("string", "bytes") or isinstance(typ, dict):
                out.setdefault(name, []).append(_scalar(typ, wire, value))
            elif wire == 2:  # packed scalars
                packed = bytes(value)
                pos = 0
                while pos < len(packed):
                    item, pos = _varint(packed, pos)
                    out.setdefault(name, []).append(_scalar(typ, 0, item))
            else:
                out.setdefault(name, []).append(_scalar(typ, wire, value))
        else:
            scalar = _scalar(typ, wire, value)
            # Go always encodes non-pointer fields; JSON omits their zero values (omitempty)
            zero = not isinstance(scalar, dict) and (scalar in ("", 0, False) or scalar == EPOCH)
            if zero and name not in POINTER_FIELDS:
                continue
            out[name] = scalar
    return out


def decode(body: bytes) -> dict[str, Any]:
    """A protobuf request body as the JSON object it stands for; ProtobufError if not possible."""
    if not body.startswith(MAGIC):
        raise ProtobufError("missing the k8s protobuf magic prefix")
    unknown = decode_message(
        body[len(MAGIC) :],
        {
            1: ("typeMeta", {1: ("apiVersion", "string", False), 2: ("kind", "string", False)}, False),
            2: ("raw", "rawbytes", False),
            3: ("contentEncoding", "string", False),
            4: ("contentType", "string", False),
        },
    )
    type_meta = unknown.get("typeMeta") or {}
    kind = type_meta.get("kind", "")
    schema = KINDS.get(kind)
    if schema is None:
        raise ProtobufError(f"protobuf bodies of kind {kind or 'unknown'} are not supported: send JSON")
    obj = {**ALWAYS_PRESENT.get(kind, {}), **decode_message(unknown.get("raw", b""), schema)}
    if type_meta.get("apiVersion"):
        obj["apiVersion"] = type_meta["apiVersion"]
    obj["kind"] = kind
    return obj
