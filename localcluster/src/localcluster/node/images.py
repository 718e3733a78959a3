"""Container images as a kubelet sees them, for a node that runs processes and not images.

Nothing is pulled: every well-formed image counts as present, except the ones this node is told
it cannot pull, so that a cluster's image failures can be had on purpose:

- a reference that does not parse (the distribution reference grammar) fails at once with the
  kubelet's `InvalidImageName` and its message;
- an image whose registry host is under the reserved `.invalid` domain (RFC 2606), such as
  `registry.invalid/app:1`, or that matches one of the node's `--unpullable-image` patterns
  (shell-style, matched against the reference as written), fails every pull: `ErrImagePull`, then
  `ImagePullBackOff` while the kubelet's image back-off runs (10 s doubling up to 300 s, per pod
  and image);
- `imagePullPolicy: Never` with such an image gives `ErrImageNeverPull`.

The messages and event reasons are the kubelet's (pkg/kubelet/images/image_manager.go).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

# The kubelet's image pull back-off (backOffPeriod and MaxContainerBackOff in pkg/kubelet).
PULL_BACKOFF_INITIAL = 10.0
PULL_BACKOFF_MAX = 300.0

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|-+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REFERENCE = re.compile(
    rf"(?P<name>(?:(?P<domain>{_DOMAIN})/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)"
    rf"(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?"
)
_HEX64 = re.compile(r"[a-f0-9]{64}")


@dataclass(frozen=True)
class ImageRef:
    """A parsed reference, normalized as the runtime sees it (docker.io/library/... for short names)."""

    domain: str
    path: str
    tag: str | None
    digest: str | None

    @property
    def full(self) -> str:
        out = f"{self.domain}/{self.path}"
        if self.tag is not None:
            out += f":{self.tag}"
        if self.digest is not None:
            out += f"@{self.digest}"
        return out


def parse_reference(image: str) -> ImageRef:
    """The reference, or ValueError with the parser's words for what is wrong."""
    if _HEX64.fullmatch(image):
        raise ValueError("invalid repository name (64-byte hexadecimal strings are reserved)")
    m = _REFERENCE.fullmatch(image)
    if m is None:
        if image and _REFERENCE.fullmatch(image.lower()):
            raise ValueError("repository name must be lowercase")
        raise ValueError("invalid reference format")
    name = m.group("name")
    if len(name) > 255:
        raise ValueError("repository name must not be more than 255 characters")
    first, _, rest = name.partition("/")
    # The first component is a registry only if it looks like a host (as the runtime decides).
    if rest and ("." in first or ":" in first or first == "localhost"):
        domain, path = first, rest
    else:
        domain, path = "docker.io", name
    if path != path.lower():
        raise ValueError("invalid reference format: repository name must be lowercase")
    if domain == "docker.io" and "/" not in path:
        path = f"library/{path}"
    tag = m.group("tag")
    digest = m.group("digest")
    if tag is None and digest is None:
        tag = "latest"
    return ImageRef(domain=domain, path=path, tag=tag, digest=digest)


def invalid_name_message(image: str) -> str | None:
    """The kubelet's InvalidImageName message for `image`, or None when it parses."""
    try:
        parse_reference(image)
    except ValueError as e:
        return f'Failed to apply default image tag "{image}": couldn\'t parse image reference "{image}": {e}'
    return None


@dataclass(frozen=True)
class PullRules:
    """Which images this node cannot pull (besides those of `.invalid` registries)."""

    unpullable: Sequence[str] = ()

    def pull_error(self, image: str) -> str | None:
        """The runtime's error for pulling `image`, or None when the pull succeeds."""
        ref = parse_reference(image)
        host = ref.domain.rsplit(":", 1)[0] if not ref.domain.startswith("[") else ref.domain
        head = f'failed to pull and unpack image "{ref.full}": failed to resolve reference "{ref.full}"'
        if host == "invalid" or host.endswith(".invalid"):
            manifest = ref.digest or ref.tag
            url = f"https://{ref.domain}/v2/{ref.path}/manifests/{manifest}"
            return (
                f"rpc error: code = Unknown desc = {head}: failed to do request: "
                f'Head "{url}": dial tcp: lookup {host}: no such host'
            )
        for pattern in self.unpullable:
            if fnmatch.fnmatchcase(image, pattern):
                return f"rpc error: code = NotFound desc = {head}: {ref.full}: not found"
        return None


@dataclass
class PullBackOff:
    """The kubelet's per-(pod, image) pull back-off: each failure doubles the wait, up to a cap."""

    initial: float = PULL_BACKOFF_INITIAL
    maximum: float = PULL_BACKOFF_MAX
    _current: dict[str, float] = field(default_factory=dict)

    def next(self, key: str) -> float:
        """Record a failed pull of `key`; returns how long to wait before the next attempt."""
        current = self._current.get(key)
        current = self.initial if current is None else min(current * 2, self.maximum)
        self._current[key] = current
        return current

    def reset(self, key: str) -> None:
        self._current.pop(key, None)
