"""kopf's watch lines decoded by orjson (`controller.watchjson`): the same objects as the
standard library's json for every line it accepts, and the same error for a line it refuses."""

from __future__ import annotations

import json

import pytest

from trainjob_operator.controller import watchjson

_EVENT = {
    "type": "MODIFIED",
    "object": {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "job-0-0", "namespace": "ns", "labels": {"a": "é"}, "resourceVersion": "12"},
        "spec": {"schedulingGates": [{"name": "trainjob.dev/gang"}], "priority": 0},
        "status": {"phase": "Pending", "conditions": [], "ratio": 0.5, "ready": False, "nothing": None},
    },
}


def test_kopf_watch_lines_decode_as_the_standard_library_does() -> None:
    watchjson.install()
    watchjson.install()  # idempotent
    assert watchjson.installed()
    line = json.dumps(_EVENT).encode()
    # What kopf's `stream` does with each line of a watch response.
    assert watchjson.in_use().loads(line.decode("utf-8")) == json.loads(line) == _EVENT
    # Other attributes are the standard module's.
    assert watchjson.in_use().dumps is json.dumps


def test_a_line_orjson_refuses_is_decoded_by_the_standard_library() -> None:
    watchjson.install()
    huge = {"spec": {"seed": 2**70}}  # orjson takes 64-bit integers only
    assert watchjson.in_use().loads(json.dumps(huge)) == huge


def test_a_broken_line_raises_json_decode_error() -> None:
    watchjson.install()
    with pytest.raises(json.JSONDecodeError):
        watchjson.in_use().loads('{"type": "ADDED", "object": ')
