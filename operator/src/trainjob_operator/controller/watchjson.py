"""Watch events decoded by orjson instead of the standard library's json.

kopf parses every line of its watch streams with `json.loads`. At 1000 TrainJobs x 8 pods that
is ~50 000 pod events of ~13 KiB each (a pod with its managedFields); py-spy put 28% of the event
loop's busy samples there at 300 x 8 (wall-clock samples on a loaded machine: in CPU seconds the
gain was a few percent of the operator's cost per job, bench/RESULTS.md "Round four"):
orjson decodes the same lines in about half the time. kopf has no setting for its decoder, so
`install` swaps the `json` name its API module uses for a stand-in whose `loads` is orjson's and
whose other attributes are the standard module's. A line orjson refuses (it accepts only 64-bit
integers; a custom resource may hold a larger one) is decoded by the standard library, so the
result is the same for every line the standard library accepts.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from kopf._cogs.clients import api as _kopf_api


class _Json:
    """The `json` module as kopf's API module sees it after `install`."""

    JSONDecodeError = json.JSONDecodeError

    @staticmethod
    def loads(text: str | bytes, **kwargs: Any) -> Any:
        if kwargs:
            return json.loads(text, **kwargs)
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            return json.loads(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(json, name)


_MODULE_NAME = "json"  # the name kopf's API module imports the json module under


def install() -> None:
    """Make kopf's watch streams decode with orjson (idempotent; before the operator starts)."""
    setattr(_kopf_api, _MODULE_NAME, _Json())


def in_use() -> Any:
    """What kopf's watch streams decode with now (the `json` name of its API module)."""
    return getattr(_kopf_api, _MODULE_NAME)


def installed() -> bool:
    return isinstance(in_use(), _Json)
