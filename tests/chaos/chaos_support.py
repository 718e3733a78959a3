"""What the chaos scenarios share: digits jobs tuned to be quick, finding a container's pid,
sampling the status while faults happen, and checking every committed checkpoint in storage."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from pathlib import Path
from typing import Any, Self

import torch
import yaml

from tests.support.kube import Cluster
from tests.support.processes import REPO_ROOT
from worker_sdk.checkpoint import committed_checkpoint, read_manifest
from worker_sdk.protocol import MANIFEST_NAME
from worker_sdk.storage import join_key, open_storage
from worker_sdk.torch import load_state

EXAMPLE = REPO_ROOT / "deploy" / "examples" / "digits.yaml"


def digits_job(name: str, *, epochs: int, step_sleep: float, **spec: Any) -> dict[str, Any]:
    """The digits example, short, keeping every checkpoint, restarting without backoff."""
    manifest: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    manifest["metadata"]["name"] = name
    manifest["spec"]["config"] = {"epochs": epochs, "step_sleep": step_sleep, "lr": 0.05}
    manifest["spec"]["storage"]["uri"] = f"s3://trainjob/chaos-{name}"
    manifest["spec"]["checkpoints"]["numToKeep"] = 50
    manifest["spec"]["failurePolicy"] = {"maxRestarts": 3, "restartPolicy": "OnFailure", "backoffSeconds": 0}
    for key, value in spec.items():
        if isinstance(value, dict) and isinstance(manifest["spec"].get(key), dict):
            manifest["spec"][key] = {**manifest["spec"][key], **value}
        else:
            manifest["spec"][key] = value
    return manifest


def container_pid(cluster: Cluster, pod: str, container: str) -> int | None:
    """The local pid of a running container (`containerID: local://<pid>`), or None."""
    obj = cluster.get("pod", pod)
    if obj is None:
        return None
    status = obj.get("status") or {}
    for entry in (status.get("containerStatuses") or []) + (status.get("initContainerStatuses") or []):
        if entry.get("name") == container and "running" in (entry.get("state") or {}):
            container_id = str(entry.get("containerID") or "")
            if container_id.startswith("local://"):
                return int(container_id.removeprefix("local://"))
    return None


class BackgroundSampler:
    """Calls ``sample()`` every ``interval`` seconds in a thread, from ``with`` to its end. A sample
    that fails (the API server restarting, a loaded machine) is skipped: it is not a finding."""

    interval = 0.5

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):
                self.sample()
            self._stop.wait(self.interval)


class StatusSampler(BackgroundSampler):
    """Samples (attempt, iteration, phase) of a TrainJob."""

    interval = 0.3

    def __init__(self, cluster: Cluster, name: str) -> None:
        super().__init__()
        self.cluster = cluster
        self.name = name
        self.samples: list[tuple[int, int, str]] = []

    def sample(self) -> None:
        status = (self.cluster.get("trainjob", self.name) or {}).get("status") or {}
        if "attempt" in status:
            iteration = int(status.get("iteration") or 0)
            self.samples.append((int(status["attempt"]), iteration, str(status.get("phase"))))

    def check_iteration(self, epochs: int, resumed_at: dict[int, int] | None = None) -> None:
        """status.iteration never exceeds the epochs and never decreases within an attempt, but
        for one step back to the checkpoint the attempt resumed from (`resumed_at`: attempt ->
        iteration), before the attempt's first progress."""
        assert self.samples, "no status sampled"
        last: dict[int, int] = {}
        rewound: set[int] = set()
        for attempt, iteration, _ in self.samples:
            assert 0 <= iteration <= epochs, (attempt, iteration, self.samples)
            if attempt not in last:
                # An attempt's first sample is where the last one left the status (its highest
                # reported iteration, which may be past the checkpoint this attempt resumes
                # from), not progress of its own.
                last[attempt] = iteration
                continue
            previous = last[attempt]
            if iteration < previous:
                allowed = (resumed_at or {}).get(attempt)
                assert attempt not in rewound and iteration == allowed, (
                    f"iteration went back in attempt {attempt} ({previous} -> {iteration}): {self.samples}"
                )
            if iteration != previous:
                rewound.add(attempt)
            last[attempt] = iteration


def check_committed_checkpoints(job_uri: str, namespace: str, name: str) -> list[int]:
    """Every checkpoint with a manifest has each file it lists, with the listed size, and loads
    with torch. Returns the committed iterations."""
    storage = open_storage(job_uri, retry_budget_seconds=10)
    prefix = join_key(namespace, name)
    objects = {obj.key: obj.size for obj in storage.list_objects(prefix)}
    manifests = sorted(key for key in objects if key.endswith("/" + MANIFEST_NAME))
    iterations = []
    for key in manifests:
        directory = key.rsplit("/", 1)[0]
        manifest = read_manifest(storage, key)
        assert manifest is not None, f"unreadable manifest {key}"
        # The files of the attempt that committed it (fenced: <dir>/attempt-<a>/ since format 2).
        data = join_key(directory, manifest.data_dir) if manifest.data_dir else directory
        for listed in manifest.files:
            stored = objects.get(join_key(data, listed.path))
            assert stored == listed.size, f"{directory}/{listed.path}: listed {listed.size}, stored {stored}"
        checkpoint = committed_checkpoint(storage.uri_for(directory), retry_budget_seconds=10)
        assert checkpoint is not None
        model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
        with checkpoint.as_directory() as local:
            extra = load_state(Path(local), model=model)
        assert extra["epoch"] == manifest.iteration - 1, (directory, extra)
        iterations.append(manifest.iteration)
    return iterations


def is_committed(uri: str) -> bool:
    return committed_checkpoint(uri, retry_budget_seconds=10) is not None


def resumed_iteration(log: str) -> int | None:
    """N of the trainer's "resumed from <uri> at epoch N" line (the checkpoint's iteration)."""
    for line in log.splitlines():
        if "resumed from " in line and " at epoch " in line:
            return int(line.rsplit(" at epoch ", 1)[1])
    return None


def resumed_from(log: str) -> list[str]:
    """The checkpoint URIs in the trainer's "resumed from <uri> at epoch N" lines."""
    return [
        line.split("resumed from ", 1)[1].split(" at epoch", 1)[0]
        for line in log.splitlines()
        if "resumed from " in line
    ]


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=1, default=str)[:4000]


def sleep_until(deadline: float) -> None:
    time.sleep(max(0.0, deadline - time.monotonic()))
