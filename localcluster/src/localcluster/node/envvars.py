"""A container's environment and command line, resolved as the kubelet resolves them.

Everything here is a pure function of the pod, the container and the objects it references
(secrets and config maps fetched beforehand), so it is tested without a server.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from localcluster.node.quantity import divide_ceil

JSON = dict[str, Any]


class ConfigError(Exception):
    """The container cannot be configured (CreateContainerConfigError in Kubernetes)."""


@dataclass
class PodContext:
    """What env resolution and the downward API need to know about the pod besides its spec."""

    pod: JSON
    pod_ip: str = ""
    host_ip: str = "127.0.0.1"
    node_capacity: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Refs:
    """Secrets and config maps by (namespace, name) -> decoded string data; None = not found."""

    secrets: dict[tuple[str, str], dict[str, str] | None] = field(default_factory=dict)
    configmaps: dict[tuple[str, str], dict[str, str] | None] = field(default_factory=dict)

    def secret(self, ns: str, name: str) -> dict[str, str] | None:
        return self.secrets.get((ns, name))

    def configmap(self, ns: str, name: str) -> dict[str, str] | None:
        return self.configmaps.get((ns, name))


def decode_secret(obj: JSON) -> dict[str, str]:
    out = {k: base64.b64decode(v).decode("utf-8", "replace") for k, v in (obj.get("data") or {}).items()}
    out.update(obj.get("stringData") or {})
    return out


def decode_configmap(obj: JSON) -> dict[str, str]:
    out = dict(obj.get("data") or {})
    out.update(
        {k: base64.b64decode(v).decode("utf-8", "replace") for k, v in (obj.get("binaryData") or {}).items()}
    )
    return out


_VAR = re.compile(r"\$(\$|\(([^)]*)\))")


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion: `$$` escapes, unknown `$(X)` stays as written."""

    def sub(m: re.Match[str]) -> str:
        if m.group(1) == "$":
            return "$"
        name = m.group(2)
        return env[name] if name in env else m.group(0)

    return _VAR.sub(sub, text)


def referenced_objects(pod: JSON) -> tuple[set[str], set[str]]:
    """Names of the secrets and config maps that the pod's env and volumes reference."""
    secrets: set[str] = set()
    configmaps: set[str] = set()
    spec = pod.get("spec") or {}
    for c in all_containers(spec):
        for src in c.get("envFrom") or []:
            if "secretRef" in src:
                secrets.add(src["secretRef"].get("name", ""))
            if "configMapRef" in src:
                configmaps.add(src["configMapRef"].get("name", ""))
        for e in c.get("env") or []:
            vf = e.get("valueFrom") or {}
            if "secretKeyRef" in vf:
                secrets.add(vf["secretKeyRef"].get("name", ""))
            if "configMapKeyRef" in vf:
                configmaps.add(vf["configMapKeyRef"].get("name", ""))
    for v in spec.get("volumes") or []:
        if "secret" in v:
            secrets.add(v["secret"].get("secretName", ""))
        if "configMap" in v:
            configmaps.add(v["configMap"].get("name", ""))
        for src in (v.get("projected") or {}).get("sources") or []:
            if "secret" in src:
                secrets.add(src["secret"].get("name", ""))
            if "configMap" in src:
                configmaps.add(src["configMap"].get("name", ""))
    secrets.discard("")
    configmaps.discard("")
    return secrets, configmaps


def all_containers(spec: JSON) -> Iterable[JSON]:
    yield from spec.get("initContainers") or []
    yield from spec.get("containers") or []


def field_ref_value(ctx: PodContext, path: str) -> str:
    """The value of a downward-API fieldRef (env or volume)."""
    meta = ctx.pod.get("metadata") or {}
    spec = ctx.pod.get("spec") or {}
    m = re.fullmatch(r"metadata\.(labels|annotations)\['([^']*)'\]", path) or re.fullmatch(
        r'metadata\.(labels|annotations)\["([^"]*)"\]', path
    )
    if m:
        return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
    if path in ("metadata.labels", "metadata.annotations"):
        items = meta.get(path.split(".")[1]) or {}
        return "".join(f'{k}="{_escape(str(v))}"\n' for k, v in sorted(items.items()))
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", "default"),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName") or spec.get("serviceAccount") or "default",
        "status.podIP": ctx.pod_ip,
        "status.podIPs": ctx.pod_ip,
        "status.hostIP": ctx.host_ip,
        "status.hostIPs": ctx.host_ip,
    }
    if path not in simple:
        raise ConfigError(f"unsupported fieldRef fieldPath {path!r}")
    return str(simple[path])


def _escape(value: str) -> str:
    # The downward API writes label values as Go-quoted strings.
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def resource_field_value(ctx: PodContext, container_name: str | None, ref: JSON) -> str:
    resource = ref.get("resource", "")
    cname = ref.get("containerName") or container_name
    spec = ctx.pod.get("spec") or {}
    container = next((c for c in all_containers(spec) if c.get("name") == cname), None)
    if container is None:
        raise ConfigError(f"resourceFieldRef names unknown container {cname!r}")
    kind, _, res = resource.partition(".")
    resources = container.get("resources") or {}
    value = (resources.get(kind) or {}).get(res)
    if value is None and kind == "requests":
        value = (resources.get("limits") or {}).get(res)
    if value is None:
        # Without a limit the kubelet exposes the node's allocatable amount; requests default to 0.
        value = ctx.node_capacity.get(res, "0") if kind == "limits" else "0"
    return divide_ceil(value, ref.get("divisor"))


def resolve_env(
    container: JSON,
    ctx: PodContext,
    refs: Refs,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The container's environment: base, then envFrom, then env (later wins), `$(VAR)` expanded."""
    ns = (ctx.pod.get("metadata") or {}).get("namespace", "default")
    env: dict[str, str] = dict(base or {})
    for src in container.get("envFrom") or []:
        prefix = src.get("prefix", "")
        if "configMapRef" in src:
            ref, data = src["configMapRef"], refs.configmap(ns, src["configMapRef"].get("name", ""))
            kind = "configmap"
        elif "secretRef" in src:
            ref, data = src["secretRef"], refs.secret(ns, src["secretRef"].get("name", ""))
            kind = "secret"
        else:
            continue
        if data is None:
            if ref.get("optional"):
                continue
            raise ConfigError(f'{kind} "{ref.get("name")}" not found')
        for k, v in data.items():
            env[prefix + k] = v
    for item in container.get("env") or []:
        name = item["name"]
        if "valueFrom" not in item:
            env[name] = expand(str(item.get("value", "")), env)
            continue
        vf = item["valueFrom"] or {}
        value: str | None
        if "fieldRef" in vf:
            value = field_ref_value(ctx, vf["fieldRef"].get("fieldPath", ""))
        elif "resourceFieldRef" in vf:
            value = resource_field_value(ctx, container.get("name"), vf["resourceFieldRef"])
        elif "secretKeyRef" in vf or "configMapKeyRef" in vf:
            is_secret = "secretKeyRef" in vf
            ref = vf["secretKeyRef"] if is_secret else vf["configMapKeyRef"]
            data = (refs.secret if is_secret else refs.configmap)(ns, ref.get("name", ""))
            kind = "secret" if is_secret else "configmap"
            if data is None:
                if ref.get("optional"):
                    continue
                raise ConfigError(f'{kind} "{ref.get("name")}" not found')
            value = data.get(ref.get("key", ""))
            if value is None:
                if ref.get("optional"):
                    continue
                # The kubelet's words (makeEnvironmentVariables): the kind capitalized here.
                kind_name = "Secret" if is_secret else "ConfigMap"
                raise ConfigError(f"couldn't find key {ref.get('key')} in {kind_name} {ns}/{ref.get('name')}")
        else:
            raise ConfigError(f"env {name}: unsupported valueFrom {sorted(vf)}")
        env[name] = value
    return env


def resolve_argv(container: JSON, env: Mapping[str, str]) -> list[str]:
    """command + args with `$(VAR)` expanded; the image's entrypoint does not exist locally."""
    command = [expand(str(a), env) for a in container.get("command") or []]
    args = [expand(str(a), env) for a in container.get("args") or []]
    argv = command + args
    if not argv:
        raise ConfigError(
            f"container {container.get('name')!r} has no command: images are ignored by localcluster, "
            "so every container needs `command` (or `args`)"
        )
    return argv


# Variables of the agent's own environment that make sense inside a local process. Everything
# else (KUBECONFIG, cloud credentials, ...) stays out, as it would in a container.
PASS_THROUGH = (
    "HOME",
    "LANG",
    "LANGUAGE",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "TERM",
    "USER",
    "LOGNAME",
    "PYTHONPATH",
    "VIRTUAL_ENV",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
)


def base_environment(
    *,
    python_bin_dir: str,
    hostname: str,
    agent_env: Mapping[str, str] | None = None,
    pass_env: Iterable[str] = (),
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """What a local process starts with before the pod's env: PATH with the project's Python first."""
    agent_env = os.environ if agent_env is None else agent_env
    env = {k: agent_env[k] for k in (*PASS_THROUGH, *pass_env) if k in agent_env}
    path = agent_env.get("PATH", "/usr/local/bin:/usr/bin:/bin")
    env["PATH"] = python_bin_dir + os.pathsep + path if python_bin_dir else path
    env["HOSTNAME"] = hostname
    # Logs reach `kubectl logs -f` while the process runs, not at exit; the pod's env may override.
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env
