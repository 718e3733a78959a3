"""The local cluster for scenarios 4, 6 and 7: ``LocalStack`` with the API server's request log on
(``LocalCluster``'s ``apiserver_log_level``, through the stack's ``cluster_options``).

The API server logs every request at DEBUG (``localcluster.apiserver.handlers: METHOD PATH``);
:func:`count_requests` reads that log, so API requests are counted at the server without changing
it. Also: TrainJob manifests, status reads, pod logs.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from tests.support import manifests
from tests.support.processes import REPO_ROOT
from trainjob_operator.api import constants
from trainjob_operator.local.stack import LocalStack

_REQUEST = re.compile(r"localcluster\.apiserver\.handlers: (GET|POST|PUT|PATCH|DELETE) (\S+)")
WRITES = ("POST", "PUT", "PATCH", "DELETE")


@dataclass
class BenchStack(LocalStack):
    """LocalStack whose API server logs each request (for counting)."""

    cluster_options: dict[str, Any] = field(default_factory=lambda: BenchStack.default_cluster_options())

    @staticmethod
    def default_cluster_options() -> dict[str, Any]:
        """The API server logs each request at DEBUG: the scenarios count them from its log."""
        return {"apiserver_log_level": "DEBUG"}

    @property
    def apiserver_log(self) -> Path:
        return self.directory / "cluster" / "apiserver.log"

    def log_offset(self) -> int:
        return self.apiserver_log.stat().st_size

    @staticmethod
    def jobs_path(namespace: str | None = None) -> str:
        """The API path of the TrainJobs of `namespace` (POST a job there), or of every namespace's."""
        where = "" if namespace is None else f"namespaces/{namespace}/"
        return f"/apis/{constants.GROUP}/{constants.VERSION}/{where}{constants.PLURAL}"

    def job(self, namespace: str, name: str) -> dict[str, Any]:
        job: dict[str, Any] = self.api("GET", f"{self.jobs_path(namespace)}/{name}")
        return job

    def pods(self, namespace: str, selector: str = "") -> list[dict[str, Any]]:
        query = f"?labelSelector={selector}" if selector else ""
        items: list[dict[str, Any]] = self.api("GET", f"/api/v1/namespaces/{namespace}/pods{query}")["items"]
        return items

    def pod_log(self, namespace: str, pod: str, container: str = "trainer") -> str:
        assert self.cluster is not None
        import urllib.request

        request = urllib.request.Request(  # noqa: S310 - loopback
            f"{self.cluster.url}/api/v1/namespaces/{namespace}/pods/{pod}/log?container={container}",
            headers={"Authorization": f"Bearer {self.cluster.token}"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return str(response.read().decode(errors="replace"))

    def submit(self, namespace: str, manifest: dict[str, Any]) -> None:
        self.api("POST", self.jobs_path(namespace), manifest)


def count_requests(log_path: Path, offset: int) -> list[tuple[str, str, str, str]]:
    """(method, namespace, resource[/subresource], name) of each request logged after ``offset``."""
    with open(log_path, "rb") as f:
        f.seek(offset)
        text = f.read().decode(errors="replace")
    found = []
    for match in _REQUEST.finditer(text):
        method, path = match.groups()
        parts = urlparse(path).path.strip("/").split("/")
        namespace = name = ""
        if "namespaces" in parts:
            i = parts.index("namespaces")
            if len(parts) > i + 2:
                namespace = parts[i + 1]
                rest = parts[i + 2 :]
            else:
                rest = ["namespaces"]
                namespace = parts[i + 1] if len(parts) > i + 1 else ""
        else:
            rest = parts[2:] if parts[0] == "api" else parts[3:]
        resource = rest[0] if rest else "/".join(parts)
        name = rest[1] if len(rest) > 1 else ""
        if len(rest) > 2:
            resource += "/" + rest[2]
        found.append((method, namespace, resource, name))
    return found


def breakdown(requests: list[tuple[str, str, str, str]], namespaces: set[str]) -> dict[str, Any]:
    """Writes by resource and verb, for the requests in ``namespaces``; reads in total."""
    writes: Counter[str] = Counter()
    reads = 0
    for method, namespace, resource, _ in requests:
        if namespace not in namespaces:
            continue
        if method in WRITES:
            writes[f"{method} {resource}"] += 1
        else:
            reads += 1
    return {"writes": dict(sorted(writes.items())), "reads": reads, "total": sum(writes.values()) + reads}


def trainjob(
    name: str, command: list[str], *, workers: int, extra_spec: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The tests' manifest, with storage of its own and up to three restarts."""
    return manifests.trainjob(
        name,
        command,
        workers=workers,
        failure_policy={"maxRestarts": 3},
        extra_spec=extra_spec,
        storage_uri=f"s3://trainjob/bench-{name}",
    )


def json_lines(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


__all__ = ["REPO_ROOT", "BenchStack", "breakdown", "count_requests", "json_lines", "trainjob"]
