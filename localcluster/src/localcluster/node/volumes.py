"""Pod volumes as directories under the pod's state directory.

emptyDir, secret, configMap, downwardAPI and projected volumes (with serviceAccountToken sources
obtained through TokenRequest) become directories under `<pod dir>/volumes/<name>`; hostPath is
the host directory itself; a persistentVolumeClaim is a directory per (namespace, claim) under
the agent's state directory, so it outlives pods as a claim does. How a container then sees them
at their `mountPath` is sandbox.py's business.

`volume_files` is pure (tested without a server); `write_files` puts its result on disk with a
rename per file, so a reader never sees half a file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localcluster.node.envvars import (
    ConfigError,
    PodContext,
    Refs,
    expand,
    field_ref_value,
    resource_field_value,
)

JSON = dict[str, Any]

SA_MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
AUTO_SA_VOLUME = "kube-api-access-localcluster"
DEFAULT_TOKEN_SECONDS = 3607  # what the kubelet asks for the automounted token


class VolumeError(Exception):
    """The volume cannot be set up yet (a missing secret, a failed token request): retried."""


@dataclass(frozen=True)
class FileContent:
    data: bytes
    mode: int


@dataclass(frozen=True)
class Mount:
    """One bind mount of a container: host `source` appears at `target` in the container."""

    source: str
    target: str
    read_only: bool = False


TokenKey = tuple[str, int]  # (audience, expirationSeconds); audience "" = the API server's


def with_automount(pod: JSON) -> JSON:
    """The pod with the service-account volume that Kubernetes' admission would have added.

    Only when the pod does not opt out and no container already mounts something at the
    service-account path (a real API server adds `kube-api-access-*` itself; then this is a no-op).
    """
    spec = pod.get("spec") or {}
    if spec.get("automountServiceAccountToken") is False:
        return pod
    containers = [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
    if any(
        m.get("mountPath", "").rstrip("/") == SA_MOUNT_PATH
        for c in containers
        for m in c.get("volumeMounts") or []
    ):
        return pod
    volume = {
        "name": AUTO_SA_VOLUME,
        "projected": {
            "defaultMode": 0o644,
            "sources": [
                {"serviceAccountToken": {"path": "token", "expirationSeconds": DEFAULT_TOKEN_SECONDS}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {
                    "downwardAPI": {
                        "items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]
                    }
                },
            ],
        },
    }
    mount = {"name": AUTO_SA_VOLUME, "mountPath": SA_MOUNT_PATH, "readOnly": True}
    new_spec = dict(spec)
    new_spec["volumes"] = [*(spec.get("volumes") or []), volume]
    for key in ("initContainers", "containers"):
        if spec.get(key):
            new_spec[key] = [
                {**c, "volumeMounts": [*(c.get("volumeMounts") or []), mount]} for c in spec[key]
            ]
    return {**pod, "spec": new_spec}


def token_requests(pod: JSON) -> list[TokenKey]:
    keys: list[TokenKey] = []
    for v in (pod.get("spec") or {}).get("volumes") or []:
        for src in (v.get("projected") or {}).get("sources") or []:
            t = src.get("serviceAccountToken")
            if t is not None:
                key = (str(t.get("audience") or ""), int(t.get("expirationSeconds") or 3600))
                if key not in keys:
                    keys.append(key)
    return keys


def _items(
    data: Mapping[str, bytes], items: list[JSON] | None, mode: int, missing: str, optional: bool
) -> dict[str, FileContent]:
    """The files of `items` (all keys without), or VolumeError `missing` + the key that is not there."""
    if not items:
        return {k: FileContent(v, mode) for k, v in data.items()}
    out: dict[str, FileContent] = {}
    for item in items:
        key = item.get("key", "")
        if key not in data:
            if optional:
                continue
            raise VolumeError(f"{missing}{key}")
        out[item.get("path") or key] = FileContent(data[key], int(item.get("mode", mode)))
    return out


def _secret_files(ns: str, src: JSON, refs: Refs, mode: int, name_key: str) -> dict[str, FileContent]:
    name = src.get(name_key, "")
    data = refs.secret(ns, name)
    optional = bool(src.get("optional"))
    if data is None:
        if optional:
            return {}
        raise VolumeError(f'secret "{name}" not found')
    raw = {k: v.encode() for k, v in data.items()}
    # The kubelet's secret and configMap volume plugins' words for a missing key.
    missing = "references non-existent secret key: "
    return _items(raw, src.get("items"), int(src.get("defaultMode", mode)), missing, optional)


def _configmap_files(ns: str, src: JSON, refs: Refs, mode: int) -> dict[str, FileContent]:
    name = src.get("name", "")
    data = refs.configmap(ns, name)
    optional = bool(src.get("optional"))
    if data is None:
        if name == "kube-root-ca.crt":
            # The local API server speaks plain HTTP and may have no CA to publish.
            return {"ca.crt": FileContent(b"", mode)}
        if optional:
            return {}
        raise VolumeError(f'configmap "{name}" not found')
    raw = {k: v.encode() for k, v in data.items()}
    missing = "configmap references non-existent config key: "
    return _items(raw, src.get("items"), int(src.get("defaultMode", mode)), missing, optional)


def _downward_files(ctx: PodContext, src: JSON, mode: int) -> dict[str, FileContent]:
    out: dict[str, FileContent] = {}
    for item in src.get("items") or []:
        try:
            if "fieldRef" in item:
                value = field_ref_value(ctx, item["fieldRef"].get("fieldPath", ""))
            elif "resourceFieldRef" in item:
                value = resource_field_value(ctx, None, item["resourceFieldRef"])
            else:
                continue
        except ConfigError as e:
            raise VolumeError(str(e)) from e
        out[item["path"]] = FileContent(value.encode(), int(item.get("mode", src.get("defaultMode", mode))))
    return out


def volume_files(
    volume: JSON, ctx: PodContext, refs: Refs, tokens: Mapping[TokenKey, str]
) -> dict[str, FileContent] | None:
    """The files of a content volume, or None for a plain directory (emptyDir, hostPath, PVC)."""
    ns = (ctx.pod.get("metadata") or {}).get("namespace", "default")
    if "secret" in volume:
        return _secret_files(ns, volume["secret"], refs, 0o644, "secretName")
    if "configMap" in volume:
        return _configmap_files(ns, volume["configMap"], refs, 0o644)
    if "downwardAPI" in volume:
        src = volume["downwardAPI"]
        return _downward_files(ctx, src, int(src.get("defaultMode", 0o644)))
    if "projected" in volume:
        proj = volume["projected"]
        mode = int(proj.get("defaultMode", 0o644))
        files: dict[str, FileContent] = {}
        for src in proj.get("sources") or []:
            if "secret" in src:
                files.update(_secret_files(ns, src["secret"], refs, mode, "name"))
            elif "configMap" in src:
                files.update(_configmap_files(ns, src["configMap"], refs, mode))
            elif "downwardAPI" in src:
                files.update(_downward_files(ctx, src["downwardAPI"], mode))
            elif "serviceAccountToken" in src:
                t = src["serviceAccountToken"]
                key = (str(t.get("audience") or ""), int(t.get("expirationSeconds") or 3600))
                if key not in tokens:
                    raise VolumeError("service account token not available")
                files[t.get("path", "token")] = FileContent(tokens[key].encode(), mode)
        return files
    return None


def volume_dir(volume: JSON, pod_dir: Path, shared_dir: Path, namespace: str) -> Path:
    """Where a volume's files live on this machine."""
    if "hostPath" in volume:
        return Path(volume["hostPath"].get("path", "/"))
    if "persistentVolumeClaim" in volume:
        return shared_dir / "pvc" / namespace / str(volume["persistentVolumeClaim"].get("claimName", "claim"))
    return pod_dir / "volumes" / str(volume["name"])


def prepare_dir_volume(volume: JSON, path: Path) -> None:
    if "hostPath" in volume:
        kind = volume["hostPath"].get("type", "") or ""
        if kind in ("", "DirectoryOrCreate"):
            path.mkdir(parents=True, exist_ok=True)
        elif kind == "FileOrCreate" and not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
        elif not path.exists():
            raise VolumeError(f"hostPath {path} does not exist")
        return
    path.mkdir(parents=True, exist_ok=True)
    # emptyDir and claims are shared by every container of the pod, whatever user they run as.
    with contextlib.suppress(OSError):
        path.chmod(0o777)


def write_files(dest: Path, files: Mapping[str, FileContent]) -> bool:
    """Make `dest` hold exactly `files`; returns whether anything changed."""
    dest.mkdir(parents=True, exist_ok=True)
    changed = False
    wanted: set[Path] = set()
    for rel, content in files.items():
        target = dest / rel
        if ".." in Path(rel).parts or Path(rel).is_absolute():
            raise VolumeError(f"invalid volume item path {rel!r}")
        wanted.add(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            same = target.read_bytes() == content.data and (target.stat().st_mode & 0o7777) == content.mode
        except OSError:
            same = False
        if same:
            continue
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as f:
            f.write(content.data)
        Path(tmp).chmod(content.mode)
        Path(tmp).replace(target)
        changed = True
    for existing in sorted(dest.rglob("*"), reverse=True):
        if existing.is_file() and existing not in wanted:
            existing.unlink()
            changed = True
        elif existing.is_dir() and not any(existing.iterdir()):
            existing.rmdir()
    return changed


def container_mounts(container: JSON, volume_dirs: Mapping[str, Path], env: Mapping[str, str]) -> list[Mount]:
    """The container's volumeMounts as bind mounts (subPath and subPathExpr resolved)."""
    mounts: list[Mount] = []
    for vm in container.get("volumeMounts") or []:
        name = vm.get("name", "")
        if name not in volume_dirs:
            raise ConfigError(f"volumeMount {name!r} names no volume of the pod")
        source = volume_dirs[name]
        sub = vm.get("subPath") or (expand(vm["subPathExpr"], env) if vm.get("subPathExpr") else "")
        if sub:
            if ".." in Path(sub).parts or Path(sub).is_absolute():
                raise ConfigError(f"invalid subPath {sub!r}")
            source = source / sub
            if not source.exists():
                # The kubelet creates a missing subPath as a directory.
                source.mkdir(parents=True, exist_ok=True)
        mounts.append(Mount(str(source), vm.get("mountPath", ""), bool(vm.get("readOnly"))))
    # Parents before children, so a mount inside another volume lands inside it.
    mounts.sort(key=lambda m: len(Path(m.target).parts))
    return mounts
