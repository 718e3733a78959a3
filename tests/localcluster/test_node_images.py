"""Images as the kubelet treats them: invalid references, pulls that fail and their back-off, and
containers whose configuration names a missing key (CreateContainerConfigError).

The pure parts (reference grammar, which pulls fail, the back-off sequence) are tested directly;
the node agent's behaviour through kubectl against a real local cluster.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from localcluster.node.__main__ import parse_args
from localcluster.node.images import PullBackOff, PullRules, invalid_name_message, parse_reference
from tests.localcluster.node_fixtures import Kube, cluster, cstatus, kube, phase, pod, py

__all__ = ["cluster", "kube"]  # fixtures, used by name

JSON = dict[str, Any]


@pytest.mark.parametrize(
    ("image", "full"),
    [
        ("busybox", "docker.io/library/busybox:latest"),
        ("python:3.11-slim", "docker.io/library/python:3.11-slim"),
        ("ghcr.io/org/app:1", "ghcr.io/org/app:1"),
        ("localhost:5000/app", "localhost:5000/app:latest"),
        ("registry.invalid/app:1", "registry.invalid/app:1"),
        ("org/app@sha256:" + "a" * 64, "docker.io/org/app@sha256:" + "a" * 64),
    ],
)
def test_valid_references_normalize(image: str, full: str) -> None:
    assert parse_reference(image).full == full
    assert invalid_name_message(image) is None


@pytest.mark.parametrize(
    ("image", "why"),
    [
        ("Bad Image!", "invalid reference format"),
        ("app:", "invalid reference format"),
        ("UPPER/app", "repository name must be lowercase"),
        ("a" * 64, "64-byte hexadecimal strings are reserved"),
    ],
)
def test_invalid_references_get_the_kubelets_message(image: str, why: str) -> None:
    prefix = f'Failed to apply default image tag "{image}": couldn\'t parse image reference "{image}": '
    message = invalid_name_message(image)
    assert message is not None and message.startswith(prefix) and why in message


def test_which_pulls_fail() -> None:
    rules = PullRules(unpullable=("example.com/private/*",))
    assert rules.pull_error("python:3.11") is None
    assert rules.pull_error("example.com/public/app:1") is None
    dns = rules.pull_error("registry.invalid/app:1")
    assert dns is not None and "lookup registry.invalid: no such host" in dns
    assert 'failed to pull and unpack image "registry.invalid/app:1"' in dns
    assert rules.pull_error("a.b.invalid:5000/x") is not None, "any host under .invalid, any port"
    missing = rules.pull_error("example.com/private/app:2")
    assert missing is not None and missing.endswith("example.com/private/app:2: not found")
    # `invalid` as a path component is not a registry host.
    assert rules.pull_error("invalid/app") is None


def test_pull_backoff_doubles_to_the_kubelets_cap_per_image() -> None:
    backoff = PullBackOff()
    waits = [backoff.next("img") for _ in range(7)]
    assert waits == [10, 20, 40, 80, 160, 300, 300]
    assert backoff.next("other") == 10, "each image has its own back-off"
    backoff.reset("img")
    assert backoff.next("img") == 10


def test_node_agent_takes_unpullable_patterns() -> None:
    [config] = parse_args(["--kubeconfig", "k", "--unpullable-image", "a/*", "--unpullable-image", "b:1"])
    assert config.unpullable_images == ("a/*", "b:1")


def _waiting(p: JSON, name: str = "main") -> JSON:
    state = cstatus(p, name)["state"]
    assert isinstance(state, dict)
    waiting = state.get("waiting") or {}
    assert isinstance(waiting, dict)
    return waiting


def _events(kube: Kube, pod_name: str) -> list[JSON]:
    out = kube.kubectl("get", "events", "--field-selector", f"involvedObject.name={pod_name}", "-o", "json")
    assert out.returncode == 0, out.stderr
    items = json.loads(out.stdout)["items"]
    assert isinstance(items, list)
    return items


def test_unpullable_image_backs_off_and_stays_pending(kube: Kube) -> None:
    image = "registry.invalid/app:1"
    kube.create(pod("nopull", [{"name": "main", "image": image, "command": py("print('ran')")}]))
    p = kube.wait_pod("nopull", lambda p: _waiting(p).get("reason") == "ErrImagePull", what="ErrImagePull")
    assert "lookup registry.invalid: no such host" in str(_waiting(p)["message"])
    assert phase(p) == "Pending"
    p = kube.wait_pod(
        "nopull",
        lambda p: _waiting(p).get("reason") == "ImagePullBackOff",
        timeout=30,
        what="ImagePullBackOff",
    )
    assert str(_waiting(p)["message"]).startswith(f'Back-off pulling image "{image}": ErrImagePull: ')
    assert phase(p) == "Pending" and cstatus(p, "main")["restartCount"] == 0
    got = kube.kubectl("get", "pod", "nopull", "--no-headers")
    assert "ImagePullBackOff" in got.stdout and "Pending" not in got.stderr, got
    events = {(e["type"], e["reason"], e["message"]) for e in _events(kube, "nopull")}
    assert ("Normal", "Pulling", f'Pulling image "{image}"') in events
    failed = f'Failed to pull image "{image}": '
    assert any(t == "Warning" and r == "Failed" and m.startswith(failed) for t, r, m in events)
    assert ("Normal", "BackOff", f'Back-off pulling image "{image}"') in events
    assert ("Warning", "Failed", "Error: ErrImagePull") in events
    for e in _events(kube, "nopull"):
        if e["reason"] == "Scheduled":  # the scheduler's, before the kubelet's
            assert e["source"] == {"component": "default-scheduler"}
            continue
        assert e["source"] == {"component": "kubelet", "host": "localnode"}
        assert e["involvedObject"]["fieldPath"] == "spec.containers{main}"
    logs = kube.kubectl("logs", "nopull")
    assert logs.returncode != 0 and "ran" not in logs.stdout, "the command never ran"
    kube.delete_pod("nopull", grace=0)


def test_invalid_image_name(kube: Kube) -> None:
    image = "Bad Image!"
    kube.create(pod("badname", [{"name": "main", "image": image, "command": py("print('ran')")}]))
    p = kube.wait_pod(
        "badname", lambda p: _waiting(p).get("reason") == "InvalidImageName", what="InvalidImageName"
    )
    assert _waiting(p)["message"] == (
        f'Failed to apply default image tag "{image}": couldn\'t parse image reference "{image}": '
        "invalid reference format"
    )
    assert phase(p) == "Pending"
    reasons = {e["reason"] for e in _events(kube, "badname")}
    assert {"InspectFailed", "Failed"} <= reasons
    kube.delete_pod("badname", grace=0)


def test_missing_key_is_create_container_config_error(kube: Kube) -> None:
    kube.create({"kind": "Secret", "metadata": {"name": "creds"}, "stringData": {"user": "u"}})
    kube.create({"kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"mode": "m"}})
    for name, ref, message in [
        ("nokey-s", {"secretKeyRef": {"name": "creds", "key": "password"}}, f"Secret {kube.ns}/creds"),
        ("nokey-c", {"configMapKeyRef": {"name": "cfg", "key": "level"}}, f"ConfigMap {kube.ns}/cfg"),
    ]:
        container = {"name": "main", "command": py("print('ran')"), "env": [{"name": "X", "valueFrom": ref}]}
        kube.create(pod(name, [container], restartPolicy="Never"))
        key = next(iter(ref.values()))["key"]
        p = kube.wait_pod(
            name,
            lambda p: _waiting(p).get("reason") == "CreateContainerConfigError",
            what="CreateContainerConfigError",
        )
        assert _waiting(p)["message"] == f"couldn't find key {key} in {message}"
        assert phase(p) == "Pending"
        kube.delete_pod(name, grace=0)


def test_volume_missing_key_stays_container_creating(kube: Kube) -> None:
    """As the kubelet: a volume item naming a missing key fails the mount (FailedMount), not the
    container's configuration; the pod stays Pending in ContainerCreating."""
    kube.create({"kind": "ConfigMap", "metadata": {"name": "cfgv"}, "data": {"mode": "m"}})
    volume = {"name": "conf", "configMap": {"name": "cfgv", "items": [{"key": "level", "path": "level"}]}}
    container = {
        "name": "main",
        "command": py("print('ran')"),
        "volumeMounts": [{"name": "conf", "mountPath": "/etc/conf"}],
    }
    kube.create(pod("nokey-v", [container], restartPolicy="Never", volumes=[volume]))
    want = 'MountVolume.SetUp failed for volume "conf" : configmap references non-existent config key: level'

    def failed_mount(p: JSON) -> bool:
        events = _events(kube, "nokey-v")
        return _waiting(p).get("message") == want and any(
            e["reason"] == "FailedMount" and e["message"] == want for e in events
        )

    p = kube.wait_pod("nokey-v", failed_mount, what="FailedMount event")
    assert phase(p) == "Pending" and _waiting(p)["reason"] == "ContainerCreating"
    kube.delete_pod("nokey-v", grace=0)
