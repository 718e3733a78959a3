"""How a container's process sees its volumes, its /etc/hosts and its hostname.

With mount namespaces (util-linux `unshare`), the process is started as

    unshare --mount --uts [--user --map-root-user] -- /bin/sh -c SCRIPT localcluster-pod ARGV...

where SCRIPT bind-mounts the pod's hosts file over /etc/hosts, each volume at its real
`mountPath` (read-only ones remounted read-only), sets the pod's hostname, `cd`s to the working
directory and `exec`s the command: the container's process is the pid the agent started, in its
own process group. Mount propagation is private (unshare's default), so nothing is visible
outside, and the real /etc/hosts is never written. A mount point that does not exist is created
on the host (an empty directory or file), since a bind mount needs one.

As root `unshare --mount` suffices; unprivileged, a user namespace mapping the user to root
(`unshare -Urm`) gives the same. `detect_isolation` probes both at agent start.

Fallback (no usable namespaces, or `--isolation none`): the process runs directly; nothing is
mounted. The agent logs a warning; the process finds its volumes and hosts file through
`LOCALCLUSTER_VOLUME_<NAME>` / `LOCALCLUSTER_MOUNTS` (JSON {mountPath: dir}) and
`LOCALCLUSTER_HOSTS_FILE`, and cluster names do not resolve through the resolver.
"""

from __future__ import annotations

import enum
import json
import logging
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from localcluster.node.volumes import Mount

log = logging.getLogger(__name__)


class Isolation(enum.Enum):
    MOUNT_NS = "mount"  # unshare --mount (root)
    USER_NS = "user"  # unshare --user --map-root-user --mount (unprivileged)
    NONE = "none"


def _unshare_prefix(isolation: Isolation, uts: bool) -> list[str]:
    unshare = shutil.which("unshare") or "unshare"
    argv = [unshare, "--mount", "--propagation", "private"]
    if uts:
        argv.append("--uts")
    if isolation is Isolation.USER_NS:
        argv[1:1] = ["--user", "--map-root-user"]
    return [*argv, "--"]


def _probe(isolation: Isolation, uts: bool) -> bool:
    with tempfile.TemporaryDirectory(prefix="localcluster-probe-") as d:
        src, dst = Path(d, "src"), Path(d, "dst")
        src.write_text("ok\n")
        dst.write_text("")
        script = (
            f"mount --bind {shlex.quote(str(src))} {shlex.quote(str(dst))} && cat {shlex.quote(str(dst))}"
        )
        if uts:
            script += " && echo probe > /proc/sys/kernel/hostname"
        try:
            out = subprocess.run(
                [*_unshare_prefix(isolation, uts), "/bin/sh", "-c", script],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return False
        # The host's file must be untouched: propagation really is private.
        return out.returncode == 0 and out.stdout.strip() == "ok" and dst.read_text() == ""


@dataclass(frozen=True)
class SandboxMode:
    isolation: Isolation
    uts: bool = False


def detect_isolation(requested: str = "auto") -> SandboxMode:
    """The best isolation this machine allows ('auto'), or the requested one if it works."""
    if requested == "none":
        return SandboxMode(Isolation.NONE)
    candidates = [Isolation.MOUNT_NS, Isolation.USER_NS]
    if requested in ("mount", "user"):
        candidates = [Isolation(requested)]
    if shutil.which("unshare"):
        for iso in candidates:
            if _probe(iso, uts=True):
                return SandboxMode(iso, uts=True)
            if _probe(iso, uts=False):
                return SandboxMode(iso, uts=False)
    log.warning(
        "mount namespaces are not available (unshare failed): pods run without their own /etc/hosts "
        "and volumes are not mounted at their mountPath; see LOCALCLUSTER_MOUNTS / "
        "LOCALCLUSTER_HOSTS_FILE in the process environment"
    )
    return SandboxMode(Isolation.NONE)


def _env_name(volume_name: str) -> str:
    return "LOCALCLUSTER_VOLUME_" + re.sub(r"[^A-Za-z0-9]", "_", volume_name).upper()


def fallback_env(mounts: Sequence[Mount], volume_dirs: dict[str, Path], hosts_file: Path) -> dict[str, str]:
    """Where a process finds what namespaces would have mounted for it (set in every mode)."""
    env = {_env_name(name): str(path) for name, path in volume_dirs.items()}
    env["LOCALCLUSTER_MOUNTS"] = json.dumps({m.target: m.source for m in mounts}, sort_keys=True)
    env["LOCALCLUSTER_HOSTS_FILE"] = str(hosts_file)
    return env


def split_hiding_mounts(mounts: Sequence[Mount], keep: Sequence[str]) -> tuple[list[Mount], list[Mount]]:
    """(mounts to make, mounts withheld): a mount whose target contains a path in `keep` (the
    project's Python environment, the containers' root directory) would hide it from the process,
    so it is not made there. The process still finds it through LOCALCLUSTER_MOUNTS, and a
    withheld /tmp becomes its TMPDIR. This happens where the project itself lives under a mount
    path, e.g. a checkout under /tmp and a pod with an emptyDir at /tmp."""
    made: list[Mount] = []
    withheld: list[Mount] = []
    # A mount hides every path the kernel passes through, not only the one written: a `.venv`
    # that is a symlink to a directory under /tmp is hidden by an emptyDir at /tmp. A target that
    # is a symlink is followed by the mount as well.
    kept = {step for path in keep for step in _resolution_steps(path)}
    for mount in mounts:
        targets = {Path(mount.target), Path(os.path.realpath(mount.target))}
        hides = any(path.is_relative_to(target) for path in kept for target in targets)
        (withheld if hides else made).append(mount)
    return made, withheld


def _resolution_steps(path: str, max_links: int = 40) -> set[Path]:
    """`path` and what it becomes after each symlink on the way is replaced by its target."""
    current = Path(os.path.normpath(Path(path).absolute()))
    steps = {current}
    for _ in range(max_links):
        parts = current.parts
        for i in range(2, len(parts) + 1):
            prefix = Path(*parts[:i])
            if prefix.is_symlink():
                target = prefix.readlink()
                current = Path(os.path.normpath(prefix.parent / target)).joinpath(*parts[i:])
                steps.add(current)
                break
        else:
            break
    return steps


def _shadowing_last(mounts: Sequence[Mount]) -> list[Mount]:
    """The mounts in order, except that one whose target contains another's source goes after it.

    The agent's state (and so every volume's source) may live under /tmp; a container that mounts
    an emptyDir at /tmp would hide the sources of the mounts made after it.
    """

    def shadows(mount: Mount) -> bool:
        target = Path(mount.target)
        return any(Path(other.source).is_relative_to(target) for other in mounts if other is not mount)

    return sorted(mounts, key=shadows)


def _mount_script(
    mounts: Sequence[Mount], hosts_file: Path | None, hostname: str | None, workdir: str
) -> str:
    q = shlex.quote
    lines = ["set -e"]
    if hosts_file is not None:
        lines.append(f"mount --bind {q(str(hosts_file))} /etc/hosts")
    for m in _shadowing_last(mounts):
        src, dst = q(m.source), q(m.target)
        lines.append(
            f'if [ -d {src} ]; then mkdir -p {dst}; elif [ ! -e {dst} ]; then mkdir -p "$(dirname {dst})"; '
            f": > {dst}; fi"
        )
        lines.append(f"mount --bind {src} {dst}")
        if m.read_only:
            # Read-only is a protection, not a feature a process depends on: do not fail on it.
            lines.append(f"mount -o remount,bind,ro {dst} 2>/dev/null || true")
    if hostname:
        lines.append(f"echo {q(hostname)} > /proc/sys/kernel/hostname")
    lines.append(f"mkdir -p {q(workdir)} 2>/dev/null || true")
    lines.append(f"cd {q(workdir)}")
    lines.append('exec "$@"')
    return "\n".join(lines)


def wrap_command(
    mode: SandboxMode,
    argv: Sequence[str],
    *,
    mounts: Sequence[Mount],
    hosts_file: Path | None,
    hostname: str | None,
    workdir: str,
) -> tuple[list[str], str | None]:
    """(argv to execute, cwd for Popen): the container's command inside its sandbox."""
    if mode.isolation is Isolation.NONE:
        Path(workdir).mkdir(parents=True, exist_ok=True)
        return list(argv), workdir
    script = _mount_script(mounts, hosts_file, hostname if mode.uts else None, workdir)
    return [
        *_unshare_prefix(mode.isolation, mode.uts),
        "/bin/sh",
        "-c",
        script,
        "localcluster-pod",
        *argv,
    ], None


def enter_command(mode: SandboxMode, pid: int, argv: Sequence[str]) -> list[str]:
    """argv that runs a command inside a running container's namespaces (exec probes)."""
    if mode.isolation is Isolation.NONE:
        return list(argv)
    nsenter = shutil.which("nsenter") or "nsenter"
    flags = ["--mount"] + (["--uts"] if mode.uts else [])
    if mode.isolation is Isolation.USER_NS:
        flags = ["--user", "--preserve-credentials", *flags]
    return [nsenter, f"--target={pid}", *flags, "--", *argv]
