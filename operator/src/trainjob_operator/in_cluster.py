"""The API server from inside a pod: its address, CA and ServiceAccount token, in one place.

The operator (kopf's login and its own kubernetes client), the coordinator's status sink and the
CLI reach the API server this way when they run in a pod, as client-go's `rest.InClusterConfig`
does: `https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT`, verified with the mounted
`ca.crt`, authenticated with the mounted token, which is re-read for every request because the
kubelet rotates it.

Plain HTTP is never inferred (not from an empty or a missing `ca.crt`: that is a broken mount,
and it is refused). It is the explicit `--api-plain-http` setting, which only the local cluster
needs because it serves plain HTTP: `trainjob local up` passes it to the operator, and the
operator to every coordinator it starts (README.md, "The local cluster").
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from kubernetes import client as k8s

from trainjob_operator.api import constants

SERVICE_ACCOUNT_DIR = Path(constants.SERVICE_ACCOUNT_MOUNT_DIR)
# The one name of the setting, on every command that may run in a pod.
PLAIN_HTTP_FLAG = constants.API_PLAIN_HTTP_FLAG
PLAIN_HTTP_HELP = (
    "in a pod, reach the API server over plain HTTP instead of TLS with the mounted ca.crt "
    "(only for a cluster that serves plain HTTP, like the local one)"
)


class InClusterError(RuntimeError):
    """The pod's environment names an API server that cannot be reached as asked; one line."""


@dataclass(frozen=True)
class InClusterAccess:
    """How this pod reaches its API server."""

    server: str
    token_file: Path
    # None: plain HTTP, because the setting said so.
    ca_file: Path | None
    # The pod's namespace (the mounted `namespace` file), if mounted.
    namespace: str | None

    @property
    def plain_http(self) -> bool:
        return self.ca_file is None

    def token(self) -> str:
        """The current token: read at every call, since the kubelet replaces the file."""
        return self.token_file.read_text().strip()

    def ssl_context(self) -> ssl.SSLContext | None:
        """For aiohttp: a context that trusts the cluster's CA; None over plain HTTP."""
        return None if self.ca_file is None else ssl.create_default_context(cafile=str(self.ca_file))

    def kubernetes_configuration(self) -> k8s.Configuration:
        """A kubernetes-client configuration that re-reads the token before each request."""
        configuration = k8s.Configuration()
        configuration.host = self.server
        if self.ca_file is not None:
            configuration.ssl_ca_cert = str(self.ca_file)

        def refresh(conf: k8s.Configuration) -> None:
            conf.api_key["authorization"] = "Bearer " + self.token()

        configuration.refresh_api_key_hook = refresh  # type: ignore[assignment]
        refresh(configuration)
        return configuration


def in_cluster_access(
    *,
    plain_http: bool,
    account_dir: Path = SERVICE_ACCOUNT_DIR,
    environ: Mapping[str, str] | None = None,
) -> InClusterAccess | None:
    """This pod's API server, or None outside a pod (as client-go: no KUBERNETES_SERVICE_HOST or
    KUBERNETES_SERVICE_PORT, or no token mounted).

    Raises InClusterError when TLS is asked for (the default) and the mounted CA is missing or empty.
    """
    env = os.environ if environ is None else environ
    host = env.get("KUBERNETES_SERVICE_HOST", "")
    port = env.get("KUBERNETES_SERVICE_PORT", "")
    token_file = account_dir / "token"
    if not host or not port or not token_file.exists():
        return None
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    namespace_file = account_dir / "namespace"
    namespace = namespace_file.read_text().strip() or None if namespace_file.exists() else None
    if plain_http:
        return InClusterAccess(f"http://{host}:{port}", token_file, None, namespace)
    ca_file = account_dir / "ca.crt"
    if not ca_file.is_file() or ca_file.stat().st_size == 0:
        raise InClusterError(
            f"no cluster CA in {ca_file} (missing or empty), so the API server at https://{host}:{port} "
            f"cannot be verified; a cluster that serves plain HTTP is named with {PLAIN_HTTP_FLAG}"
        )
    return InClusterAccess(f"https://{host}:{port}", token_file, ca_file, namespace)
