"""The "restricted" Pod Security Standard as a check on a pod spec, for any test to use.

Written from the controls the Kubernetes documentation lists for the baseline and restricted
profiles (what Pod Security Admission enforces with `pod-security.kubernetes.io/enforce:
restricted`): `restricted_violations(pod_spec)` returns one message per broken control, and
`assert_restricted(pod_spec)` fails with all of them. Works on a Pod's `spec` or a pod template's.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

JSON = dict[str, Any]

# restricted: only these volume sources (hostPath and the non-core in-tree types are refused).
ALLOWED_VOLUME_TYPES = frozenset(
    {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
)
# restricted: every container drops ALL and may add back only this one.
ALLOWED_ADDED_CAPABILITIES = frozenset({"NET_BIND_SERVICE"})
SECURE_SECCOMP_TYPES = frozenset({"RuntimeDefault", "Localhost"})
# baseline: the namespaced sysctls known to be safe.
SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    }
)
ALLOWED_SELINUX_TYPES = frozenset(
    {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
)
ALLOWED_APPARMOR_TYPES = frozenset({"RuntimeDefault", "Localhost"})


def _containers(spec: JSON) -> Iterator[tuple[str, JSON]]:
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for container in spec.get(key) or []:
            yield f"{key}[{container.get('name', '?')}]", container


def _check_selinux(where: str, options: JSON | None, out: list[str]) -> None:
    if not options:
        return
    if options.get("type", "") not in ALLOWED_SELINUX_TYPES:
        out.append(f"{where}: seLinuxOptions.type {options['type']!r} is not allowed")
    for field in ("user", "role"):
        if options.get(field):
            out.append(f"{where}: seLinuxOptions.{field} must not be set")


def _check_apparmor(where: str, profile: JSON | None, out: list[str]) -> None:
    if profile and profile.get("type") not in ALLOWED_APPARMOR_TYPES:
        out.append(f"{where}: appArmorProfile.type {profile.get('type')!r} is not allowed")


def restricted_violations(spec: JSON, annotations: JSON | None = None) -> list[str]:
    """Every control of the restricted profile that `spec` (a PodSpec) breaks; [] when it passes.
    `annotations`: the pod's, for the AppArmor annotation form."""
    out: list[str] = []
    pod_sc: JSON = spec.get("securityContext") or {}

    # baseline: host namespaces
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field):
            out.append(f"pod: {field} must not be true")
    if (pod_sc.get("windowsOptions") or {}).get("hostProcess"):
        out.append("pod: windowsOptions.hostProcess must not be true")

    # volumes: no hostPath (baseline), only the allowed types (restricted)
    for volume in spec.get("volumes") or []:
        kinds = [key for key in volume if key != "name"]
        for kind in kinds:
            if kind not in ALLOWED_VOLUME_TYPES:
                out.append(f"volume {volume.get('name')!r}: type {kind} is not allowed")

    # baseline: sysctls, SELinux, AppArmor (pod level)
    for sysctl in pod_sc.get("sysctls") or []:
        if sysctl.get("name") not in SAFE_SYSCTLS:
            out.append(f"pod: sysctl {sysctl.get('name')!r} is not allowed")
    _check_selinux("pod", pod_sc.get("seLinuxOptions"), out)
    _check_apparmor("pod", pod_sc.get("appArmorProfile"), out)
    for key, value in (annotations or {}).items():
        if key.startswith("container.apparmor.security.beta.kubernetes.io/") and not (
            value == "runtime/default" or str(value).startswith("localhost/")
        ):
            out.append(f"pod: AppArmor annotation {key}={value!r} is not allowed")

    # restricted: runAsNonRoot, runAsUser != 0, seccomp (pod level, or every container)
    pod_non_root = pod_sc.get("runAsNonRoot")
    if pod_sc.get("runAsUser") == 0:
        out.append("pod: runAsUser must not be 0")
    pod_seccomp = (pod_sc.get("seccompProfile") or {}).get("type")
    if pod_seccomp is not None and pod_seccomp not in SECURE_SECCOMP_TYPES:
        out.append(f"pod: seccompProfile.type {pod_seccomp!r} is not allowed")

    for where, container in _containers(spec):
        sc: JSON = container.get("securityContext") or {}
        if sc.get("privileged"):
            out.append(f"{where}: privileged must not be true")
        if (sc.get("windowsOptions") or {}).get("hostProcess"):
            out.append(f"{where}: windowsOptions.hostProcess must not be true")
        for port in container.get("ports") or []:
            if port.get("hostPort"):
                out.append(f"{where}: hostPort {port['hostPort']} is not allowed")
        if sc.get("procMount", "Default") != "Default":
            out.append(f"{where}: procMount must be Default")
        _check_selinux(where, sc.get("seLinuxOptions"), out)
        _check_apparmor(where, sc.get("appArmorProfile"), out)

        if sc.get("allowPrivilegeEscalation") is not False:
            out.append(f"{where}: allowPrivilegeEscalation must be false")
        non_root = sc.get("runAsNonRoot", pod_non_root)
        if non_root is not True:
            out.append(f"{where}: runAsNonRoot must be true (pod or container)")
        if sc.get("runAsUser") == 0:
            out.append(f"{where}: runAsUser must not be 0")
        seccomp = (sc.get("seccompProfile") or {}).get("type", pod_seccomp)
        if seccomp not in SECURE_SECCOMP_TYPES:
            out.append(f"{where}: seccompProfile.type must be RuntimeDefault or Localhost, not {seccomp!r}")
        capabilities: JSON = sc.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            out.append(f"{where}: capabilities.drop must include ALL")
        added = set(capabilities.get("add") or []) - ALLOWED_ADDED_CAPABILITIES
        if added:
            out.append(f"{where}: capabilities.add {sorted(added)} is not allowed")
    return out


def assert_restricted(spec: JSON, annotations: JSON | None = None) -> None:
    violations = restricted_violations(spec, annotations)
    assert not violations, "not Pod Security Standard 'restricted':\n  " + "\n  ".join(violations)
