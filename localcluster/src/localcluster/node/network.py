"""Pod IPs on the loopback network and the per-pod hosts file that stands in for cluster DNS.

Every pod gets its own address in 127.0.0.0/8 (127.x.y.z, x >= 1), so two pods can listen on the
same port. Linux routes the whole /8 to `lo`, so no interface configuration is needed.

Addresses are leased machine-wide with an flock on a file per address (under a shared directory
in /tmp), so several node agents on one machine (parallel test sessions) never hand out the same
address; a lease dies with its holder's process.

Names: there is no DNS server. Each pod's mount namespace gets its own /etc/hosts (see
sandbox.py) rendered by `render_hosts` from the pods and services the agent knows:

- the pod itself: `<ip> <fqdn> <hostname>` as the kubelet writes it;
- pods with `hostname` + `subdomain` where a headless Service named `subdomain` exists in their
  namespace: `<hostname>.<subdomain>.<ns>.svc.cluster.local` and the shorter forms
  (`.svc`, `.<ns>`, and `<hostname>.<subdomain>` from the same namespace);
- headless services: every ready pod selected (every pod with an IP when
  `publishNotReadyAddresses`), `<svc>.<ns>.svc.cluster.local` and short forms;
- ClusterIP services: there is no kube-proxy and no virtual IP, so the name resolves to the
  first ready selected pod (by name). Service port -> targetPort translation does not happen:
  use the same port number for both;
- `kubernetes.default.svc...`: the API server's host.

Short forms come from the same expansion a resolver's search path would do (`<svc>` only from the
same namespace). glibc re-reads /etc/hosts on every lookup (no nscd here), so rewriting the file
in place is seen by running processes at their next lookup.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_LEASE_DIR = Path("/tmp/localcluster-ip-leases")  # noqa: S108 - machine-wide by design
CLUSTER_DOMAIN = "cluster.local"


class IPAllocator:
    """Unique loopback addresses for pods, leased with flock so agents on one machine never clash."""

    def __init__(
        self, lease_dir: Path = DEFAULT_LEASE_DIR, first: str = "127.1.0.1", last: str = "127.254.255.254"
    ) -> None:
        self.lease_dir = lease_dir
        self._first = int(ipaddress.IPv4Address(first))
        self._last = int(ipaddress.IPv4Address(last))
        self._held: dict[str, tuple[str, int]] = {}  # owner -> (ip, fd)
        self._next = self._first

    def allocate(self, owner: str) -> str:
        if owner in self._held:
            return self._held[owner][0]
        self.lease_dir.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            self.lease_dir.chmod(0o1777)
        span = self._last - self._first + 1
        for i in range(span):
            n = self._first + (self._next - self._first + i) % span
            ip = str(ipaddress.IPv4Address(n))
            if ip.endswith((".0", ".255")) or ip in {h[0] for h in self._held.values()}:
                continue
            fd = os.open(self.lease_dir / ip, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()} {owner}\n".encode())
            self._held[owner] = (ip, fd)
            # Round-robin, so a freed address is not reused at once (clients may still hold it).
            self._next = n + 1
            return ip
        raise RuntimeError("no free pod IP left")

    def release(self, owner: str) -> None:
        held = self._held.pop(owner, None)
        if held is not None:
            # Unlock, never unlink: unlinking races with another agent opening the same path.
            with contextlib.suppress(OSError):
                fcntl.flock(held[1], fcntl.LOCK_UN)
            os.close(held[1])

    def release_all(self) -> None:
        for owner in list(self._held):
            self.release(owner)

    def held(self) -> dict[str, str]:
        return {owner: ip for owner, (ip, _) in self._held.items()}


@dataclass(frozen=True)
class PodRecord:
    namespace: str
    name: str
    ip: str
    hostname: str
    subdomain: str
    labels: Mapping[str, str] = field(default_factory=dict)
    ready: bool = False
    host_aliases: Sequence[Mapping[str, object]] = ()


@dataclass(frozen=True)
class ServiceRecord:
    namespace: str
    name: str
    headless: bool
    selector: Mapping[str, str] | None
    publish_not_ready: bool = False


def pod_record(pod: Mapping[str, object], ip: str, ready: bool) -> PodRecord:
    meta: Mapping[str, object] = pod.get("metadata") or {}  # type: ignore[assignment]
    spec: Mapping[str, object] = pod.get("spec") or {}  # type: ignore[assignment]
    name = str(meta.get("name", ""))
    return PodRecord(
        namespace=str(meta.get("namespace") or "default"),
        name=name,
        ip=ip,
        hostname=pod_hostname(pod),
        subdomain=str(spec.get("subdomain") or ""),
        labels=dict(meta.get("labels") or {}),  # type: ignore[call-overload]
        ready=ready,
        host_aliases=list(spec.get("hostAliases") or []),  # type: ignore[call-overload]
    )


def pod_hostname(pod: Mapping[str, object]) -> str:
    meta: Mapping[str, object] = pod.get("metadata") or {}  # type: ignore[assignment]
    spec: Mapping[str, object] = pod.get("spec") or {}  # type: ignore[assignment]
    # As the kubelet does: spec.hostname, else the pod name cut to a DNS label.
    return str(spec.get("hostname") or meta.get("name", ""))[:63].rstrip("-.")


def service_record(svc: Mapping[str, object]) -> ServiceRecord:
    meta: Mapping[str, object] = svc.get("metadata") or {}  # type: ignore[assignment]
    spec: Mapping[str, object] = svc.get("spec") or {}  # type: ignore[assignment]
    selector = spec.get("selector")
    return ServiceRecord(
        namespace=str(meta.get("namespace") or "default"),
        name=str(meta.get("name", "")),
        headless=spec.get("clusterIP") == "None",
        selector=dict(selector) if isinstance(selector, dict) else None,
        publish_not_ready=bool(spec.get("publishNotReadyAddresses")),
    )


def _names(parts: Sequence[str], ns: str, viewer_ns: str, domain: str) -> list[str]:
    """`parts` + namespace expanded as a resolver's search path would from `viewer_ns`."""
    base = ".".join(parts)
    names = [f"{base}.{ns}.svc.{domain}", f"{base}.{ns}.svc", f"{base}.{ns}"]
    if ns == viewer_ns:
        names.append(base)
    return names


def _selects(selector: Mapping[str, str] | None, labels: Mapping[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in (selector or {}).items())


def cluster_entries(
    pods: Iterable[PodRecord],
    services: Iterable[ServiceRecord],
    viewer_ns: str,
    *,
    api_host: str = "127.0.0.1",
    domain: str = CLUSTER_DOMAIN,
) -> list[tuple[str, list[str]]]:
    """(ip, names) lines for what cluster DNS would answer, seen from a pod in `viewer_ns`."""
    pods = sorted((p for p in pods if p.ip), key=lambda p: (p.namespace, p.name))
    services = sorted(services, key=lambda s: (s.namespace, s.name))
    entries: list[tuple[str, list[str]]] = []
    headless = {(s.namespace, s.name): s for s in services if s.headless}
    for p in pods:
        svc = headless.get((p.namespace, p.subdomain)) if p.subdomain else None
        if svc is not None and p.hostname and (p.ready or svc.publish_not_ready):
            entries.append((p.ip, _names([p.hostname, p.subdomain], p.namespace, viewer_ns, domain)))
    for s in services:
        if (s.namespace, s.name) == ("default", "kubernetes"):
            continue
        members = [
            p
            for p in pods
            if p.namespace == s.namespace
            and _selects(s.selector, p.labels)
            and (p.ready or (s.headless and s.publish_not_ready))
        ]
        if not s.headless:
            members = members[:1]
        for p in members:
            entries.append((p.ip, _names([s.name], s.namespace, viewer_ns, domain)))
    entries.append((api_host, _names(["kubernetes"], "default", viewer_ns, domain)))
    return entries


def render_hosts(
    pod: PodRecord,
    pods: Iterable[PodRecord],
    services: Iterable[ServiceRecord],
    *,
    api_host: str = "127.0.0.1",
    domain: str = CLUSTER_DOMAIN,
) -> str:
    lines = [
        "# Kubernetes-managed hosts file (localcluster: per-pod, stands in for cluster DNS).",
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
    ]
    if pod.ip:
        own = [pod.hostname]
        if pod.subdomain:
            own.insert(0, f"{pod.hostname}.{pod.subdomain}.{pod.namespace}.svc.{domain}")
        lines.append(f"{pod.ip}\t{' '.join(own)}")
    for alias in pod.host_aliases:
        names = [str(h) for h in alias.get("hostnames") or []]  # type: ignore[attr-defined]
        if alias.get("ip") and names:
            lines.append(f"{alias['ip']}\t{' '.join(names)}")
    lines.append("# cluster names")
    seen: set[tuple[str, str]] = set()
    for ip, names in cluster_entries(pods, services, pod.namespace, api_host=api_host, domain=domain):
        fresh = [n for n in names if (ip, n) not in seen]
        seen.update((ip, n) for n in fresh)
        if fresh:
            lines.append(f"{ip}\t{' '.join(fresh)}")
    return "\n".join(lines) + "\n"


def write_in_place(path: Path, content: str) -> bool:
    """Rewrite a file keeping its inode (it is bind-mounted: a rename would not be seen)."""
    data = content.encode()
    try:
        if path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        # Write, then cut: a concurrent reader sees the old or the new lines, never an empty file.
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.ftruncate(fd, len(data))
    finally:
        os.close(fd)
    return True
