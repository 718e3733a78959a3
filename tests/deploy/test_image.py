"""The operator image built from the Dockerfile and run: `trainjob operator` from the image drives
a TrainJob to success on the local cluster, so the Dockerfile is checked for real, not only linted.

No container engine or registry is reachable here, so the image is built with buildah (chroot
isolation) on the stand-in base `make image-base` makes (Debian bookworm's Python 3.11 by
mmdebstrap, in place of python:3.11-slim), and run with `buildah run`. The job's pods are local
processes as always on the local cluster; the operator is the image's. `make test-image` runs this
(as root; it installs what it needs).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.chart import ROOT
from trainjob_operator.local.stack import CREDENTIALS_SECRET, LocalStack

# The build alone takes minutes on 2 cores (pip resolves the operator inside the image).
pytestmark = [pytest.mark.image, pytest.mark.timeout(1200)]

BASE = os.environ.get("TRAINJOB_IMAGE_BASE", "localhost/trainjob-pybase:3.11")
STORAGE = ["--storage-driver", "vfs"]
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
NAMESPACE = "default"
TRAINER = "import os; print('rank', os.environ['RANK'], 'of', os.environ['WORLD_SIZE'])"


def buildah(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["buildah", *STORAGE, *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def image() -> Iterator[str]:
    """The Dockerfile's operator target; removed afterwards (vfs keeps a full copy per image)."""
    assert shutil.which("buildah"), "buildah is not installed: run `make image-base` (as root)"
    present = buildah("inspect", "--type", "image", BASE)
    assert present.returncode == 0, f"no base image {BASE}: run `make image-base` (as root)"
    tag = f"localhost/trainjob-operator:test-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    build = buildah(
        "bud",
        "--isolation", "chroot",
        "--network", "host",
        "--target", "operator",
        "--build-arg", f"PYTHON_IMAGE={BASE}",
        # pip inside the build reaches the package index with the host's CA bundle.
        "-v", f"{CA_BUNDLE}:{CA_BUNDLE}:ro",
        "-t", tag,
        str(ROOT),
        timeout=1200,
    )  # fmt: skip
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]
    size = subprocess.run(
        ["podman", *STORAGE, "image", "inspect", "--format", "{{.Size}}", tag],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    print(f"built {tag} in {time.monotonic() - started:.0f} s: {int(size) / 1e6:.0f} MB")
    try:
        yield tag
    finally:
        buildah("rmi", tag)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[LocalStack]:
    with LocalStack(tmp_path / "stack", root=ROOT, with_operator=False) as running:
        yield running


def trainjob(name: str, bucket: str) -> dict[str, Any]:
    return {
        "apiVersion": "trainjob.dev/v1alpha1",
        "kind": "TrainJob",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "workers": 2,
            "template": {
                "spec": {
                    "containers": [{"name": "trainer", "image": "w", "command": ["python", "-c", TRAINER]}]
                }
            },
            "storage": {"uri": f"s3://{bucket}/image-test/{name}", "credentialsSecret": CREDENTIALS_SECRET},
            "failurePolicy": {"maxRestarts": 0},
        },
    }


def test_the_image_s_operator_runs_a_trainjob_to_success(
    image: str, stack: LocalStack, tmp_path: Path
) -> None:
    assert stack.seaweedfs is not None
    # The image's user (65532) reads the kubeconfig from a read-only mount.
    kube_dir = tmp_path / "kube"
    kube_dir.mkdir(mode=0o755)
    shutil.copy(stack.kubeconfig, kube_dir / "kubeconfig")
    (kube_dir / "kubeconfig").chmod(0o644)
    kube_dir.chmod(0o755)
    made = buildah("from", image)
    assert made.returncode == 0, made.stderr
    container = made.stdout.strip()
    log_path = tmp_path / "operator.log"
    operator: subprocess.Popen[bytes] | None = None
    try:
        # What the image has, and what it lacks: production code only.
        probe = buildah(
            "run", "--isolation", "chroot", container, "--",
            "python", "-c", "import trainjob_operator, worker_sdk, importlib.util as u; "
            "print([m for m in ('localcluster', 'matplotlib') if u.find_spec(m)])",
        )  # fmt: skip
        assert (probe.returncode, probe.stdout.strip()) == (0, "[]"), probe.stderr
        with open(log_path, "ab") as log:
            operator = subprocess.Popen(
                ["buildah", *STORAGE, "run", "--isolation", "chroot", "--network", "host",
                 "-v", f"{kube_dir}:/kube:ro", container, "--",
                 "trainjob", "operator", "--kubeconfig", "/kube/kubeconfig",
                 "--default-storage-endpoint", stack.seaweedfs.endpoint,
                 "--per-job-master-port", "--api-plain-http"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        name = f"image-{uuid.uuid4().hex[:6]}"
        jobs = f"/apis/trainjob.dev/v1alpha1/namespaces/{NAMESPACE}/trainjobs"
        stack.api("POST", jobs, trainjob(name, stack.seaweedfs.bucket))
        deadline = time.monotonic() + 240
        status: dict[str, Any] = {}
        while time.monotonic() < deadline and status.get("phase") not in ("Succeeded", "Failed"):
            assert operator.poll() is None, "the image's operator exited:\n" + log_path.read_text()[-4000:]
            status = stack.api("GET", f"{jobs}/{name}").get("status") or {}
            time.sleep(1)
        assert status.get("phase") == "Succeeded", f"{status}\noperator log:\n{log_path.read_text()[-4000:]}"
        assert status["workers"]["succeeded"] == 2, status
    finally:
        if operator is not None and operator.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(operator.pid, signal.SIGTERM)
            try:
                operator.wait(30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(operator.pid, signal.SIGKILL)
                operator.wait()
        buildah("rm", container)
