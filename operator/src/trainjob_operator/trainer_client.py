"""``TrainerClient``: TrainJobs from a notebook or a pipeline step, after Kubeflow's
``TrainerClient``; ``result(name)`` is Ray Train's ``Result``.

    from trainjob_operator.trainer_client import TrainerClient

    def train_func(config):
        import worker_sdk as train                 # imports inside: only the function travels
        ...
        train.report({"loss": loss}, checkpoint=...)

    client = TrainerClient()
    name = client.train(train_func, workers=2, config={"lr": 0.1})
    client.wait_for_job_status(name)
    result = client.result(name)
    result.metrics_dataframe, result.best_checkpoints, result.checkpoint

A function's source travels in the TrainJob (as Kubeflow ships a function's source in its job):
an environment variable of the trainer container that ``python -m worker_sdk.run --source-env``
runs, so the image needs only the SDK and the function needs no file of the notebook. Like
Kubeflow's, the function must import what it uses inside its body.

Why here: the client is the ``trainjob`` CLI's Python face, so it reuses the CLI's cluster
connection (:mod:`trainjob_operator.client`) and storage reader (:mod:`trainjob_operator.job_storage`)
rather than copying them; importing it loads the kubernetes client, never kopf or the local
cluster (a test checks that in a fresh interpreter). The worker SDK distribution stays without the
kubernetes client: it is installed in every training image.

Errors are :class:`~trainjob_operator.client.CommandError` with the CLI's one-line messages.
"""

from __future__ import annotations

import argparse
import copy
import inspect
import textwrap
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from trainjob_operator.api import constants
from trainjob_operator.client import REQUEST_TIMEOUT, CommandError, Kube, connect
from trainjob_operator.job_storage import open_job_storage
from trainjob_operator.result import Result, TrainingFailedError

__all__ = ["CommandError", "Result", "TrainerClient", "TrainingFailedError"]

DEFAULT_IMAGE = "ghcr.io/trainjob-dev/trainjob-worker:0.1.0"
# What `trainjob local up` provides; pass storage_uri/credentials_secret for another cluster.
DEFAULT_STORAGE_URI = "s3://trainjob/checkpoints"
DEFAULT_CREDENTIALS_SECRET = "trainjob-s3"  # noqa: S105 - a Secret's name
FUNCTION_SOURCE_ENV = "TRAINJOB_FUNCTION_SOURCE"
FINISHED = ("Succeeded", "Failed")


class TrainerClient:
    """TrainJobs in one namespace of one cluster: ``kubeconfig``, else ``$KUBECONFIG``, else a
    running ``trainjob local up``, else in-cluster, else ``~/.kube/config`` (as ``trainjob``)."""

    def __init__(self, *, kubeconfig: str | Path | None = None, namespace: str | None = None) -> None:
        self._kube: Kube = connect(
            argparse.Namespace(kubeconfig=str(kubeconfig) if kubeconfig else None, namespace=namespace)
        )

    @property
    def namespace(self) -> str:
        return self._kube.namespace

    # ---- submitting ---------------------------------------------------------------------------

    def train(
        self,
        function: Callable[..., Any] | None = None,
        *,
        command: Sequence[str] | None = None,
        name: str | None = None,
        workers: int = 1,
        config: Mapping[str, Any] | None = None,
        image: str = DEFAULT_IMAGE,
        storage_uri: str = DEFAULT_STORAGE_URI,
        credentials_secret: str | None = DEFAULT_CREDENTIALS_SECRET,
        env: Mapping[str, str] | None = None,
        spec: Mapping[str, Any] | None = None,
    ) -> str:
        """Create a TrainJob running ``function`` (``FUNCTION(config)``, as ``TorchTrainer``) or
        ``command`` on ``workers`` pods; returns its name. ``spec`` adds or overrides spec fields
        (``checkpoints``, ``failurePolicy``, ``procsPerWorker``...)."""
        if (function is None) == (command is None):
            raise CommandError("train() takes a function or a command, one of them")
        container: dict[str, Any] = {"name": constants.TRAINER_CONTAINER, "image": image}
        variables = dict(env or {})
        if function is not None:
            variables[FUNCTION_SOURCE_ENV] = function_source(function)
            container["command"] = ["python", "-m", "worker_sdk.run", "--source-env", FUNCTION_SOURCE_ENV]
            container["command"].append(function.__name__)
            default_name = function.__name__.replace("_", "-").lower()
        else:
            container["command"] = list(command or [])
            default_name = "train"
        if variables:
            container["env"] = [{"name": key, "value": value} for key, value in variables.items()]
        storage: dict[str, Any] = {"uri": storage_uri}
        if credentials_secret:
            storage["credentialsSecret"] = credentials_secret
        manifest: dict[str, Any] = {
            "apiVersion": f"{constants.GROUP}/{constants.VERSION}",
            "kind": "TrainJob",
            "metadata": {"name": name} if name else {"generateName": f"{default_name}-"},
            "spec": {
                "workers": workers,
                "template": {"spec": {"containers": [container]}},
                "storage": storage,
                **({"config": dict(config)} if config is not None else {}),
                **dict(spec or {}),
            },
        }
        return self.submit(manifest)

    def submit(self, manifest: Mapping[str, Any] | str | Path) -> str:
        """Create the TrainJob a manifest describes (a dict, YAML text, or a YAML file's path);
        returns its name (the generated one with ``metadata.generateName``)."""
        if isinstance(manifest, Path) or (isinstance(manifest, str) and "\n" not in manifest):
            try:
                manifest = Path(manifest).read_text()
            except OSError as error:
                raise CommandError(f"cannot read manifest {manifest}: {error.strerror}") from None
        loaded = yaml.safe_load(manifest) if isinstance(manifest, str) else copy.deepcopy(dict(manifest))
        if not isinstance(loaded, dict) or loaded.get("kind") != "TrainJob":
            raise CommandError("the manifest is not a TrainJob (kind: TrainJob)")
        metadata = loaded.setdefault("metadata", {})
        if not metadata.get("name") and not metadata.get("generateName"):
            raise CommandError("the manifest has neither metadata.name nor metadata.generateName")
        namespace = str(metadata.get("namespace") or self.namespace)
        created = self._kube.create_job(loaded, namespace)
        return str(created["metadata"]["name"])

    # ---- reading ------------------------------------------------------------------------------

    def list_jobs(self) -> list[dict[str, Any]]:
        """The namespace's TrainJobs, by name."""
        return self._kube.list_jobs()

    def get_job(self, name: str) -> dict[str, Any]:
        return self._kube.get_job(name)

    def wait_for_job_status(
        self,
        name: str,
        status: str | Sequence[str] = "Succeeded",
        *,
        timeout: float = 600,
        polling_interval: float = 2,
    ) -> dict[str, Any]:
        """The job once its phase is one of ``status``; a job that finished in another phase
        raises (its message says why), as does the timeout."""
        wanted = {status} if isinstance(status, str) else set(status)
        deadline = time.monotonic() + timeout
        while True:
            job = self.get_job(name)
            phase = (job.get("status") or {}).get("phase")
            if phase in wanted:
                return job
            if phase in FINISHED:
                message = (job.get("status") or {}).get("message") or ""
                raise CommandError(f'TrainJob "{name}" {phase}, not {"/".join(sorted(wanted))}: {message}')
            if time.monotonic() > deadline:
                raise CommandError(
                    f'TrainJob "{name}" is {phase or "not started"} after {timeout:g}s, '
                    f"not {'/'.join(sorted(wanted))}"
                )
            time.sleep(polling_interval)

    def get_job_logs(self, name: str, *, rank: int = 0, follow: bool = False) -> Iterator[str]:
        """The trainer log lines of one rank's pod in the current attempt (as ``trainjob logs``);
        ``follow`` streams them until the container exits."""
        job = self.get_job(name)
        attempt = int((job.get("status") or {}).get("attempt") or 0)
        pods = self._kube.job_pods(name, attempt=attempt, rank=rank)
        if not pods:
            raise CommandError(f'TrainJob "{name}" has no pod for rank {rank} of attempt {attempt}')
        pod = str(pods[0].metadata.name if pods[0].metadata else "")
        with self._kube.calling(f"cannot read the log of pod {pod!r}"):
            response: Any = self._kube.core.read_namespaced_pod_log(
                pod,
                self.namespace,
                container=constants.TRAINER_CONTAINER,
                follow=follow,
                _preload_content=False,
                _request_timeout=None if follow else REQUEST_TIMEOUT,
            )
        try:
            pending = b""
            for chunk in response.stream(4096):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    yield line.decode(errors="replace")
            if pending:
                yield pending.decode(errors="replace")
        finally:
            response.release_conn()

    def delete_job(self, name: str) -> None:
        with self._kube.calling(
            f"cannot delete TrainJob {name!r}",
            not_found=f'TrainJob "{name}" not found in namespace "{self.namespace}"',
        ):
            self._kube.custom.delete_namespaced_custom_object(
                constants.GROUP,
                constants.VERSION,
                self.namespace,
                constants.PLURAL,
                name,
                _request_timeout=REQUEST_TIMEOUT,
            )

    def result(self, name: str) -> Result:
        """What the job produced so far: metrics, checkpoints and, for a failed job, ``error``.
        Storage credentials: ``AWS_*`` here, else the job's Secret (as ``trainjob checkpoints``);
        downloading a checkpoint's files uses this process's ``AWS_*``."""
        job = self.get_job(name)
        status = job.get("status") or {}
        error = (
            TrainingFailedError(status.get("message") or f'TrainJob "{name}" failed')
            if status.get("phase") == "Failed"
            else None
        )
        return Result.from_storage(open_job_storage(self._kube, job), error=error)


def function_source(function: Callable[..., Any]) -> str:
    """The function's own source, dedented (a function defined in a notebook cell or a method
    body works too), its annotations left unevaluated; what cannot be shipped is a clear error."""
    if not inspect.isfunction(function) or function.__name__ == "<lambda>":
        raise CommandError(f"train() ships a function defined with def, not {function!r}")
    try:
        source = inspect.getsource(function)
    except (OSError, TypeError) as error:
        raise CommandError(f"cannot read the source of {function.__name__}: {error}") from None
    # Annotations stay strings: they may name what the notebook imported (`Any`), which the
    # function's source alone does not define.
    return "from __future__ import annotations\n\n" + textwrap.dedent(source)
