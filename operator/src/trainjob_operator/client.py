"""Kubernetes access for the `trainjob` CLI: which cluster and namespace, and the calls it makes.

The cluster is `--kubeconfig`, else `$KUBECONFIG`, else the kubeconfig of a `trainjob local up`
running in the default directory, else the in-cluster service account (`trainjob_operator.in_cluster`,
plain HTTP only with `--api-plain-http`), else `~/.kube/config`.
Every failure becomes a :class:`CommandError` with a one-line message; `cli.main` prints it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from trainjob_operator.api import constants
from trainjob_operator.in_cluster import PLAIN_HTTP_FLAG, PLAIN_HTTP_HELP, InClusterError, in_cluster_access

DEFAULT_LOCAL_DIRECTORY = Path(".local/trainjob")
# Seconds per API request: an unreachable server is reported quickly instead of hanging.
REQUEST_TIMEOUT = 15.0
FINISHED_PHASES = ("Succeeded", "Failed")


class CommandError(Exception):
    """What the user did or what the cluster said, in one line; the command exits 1."""


class _NotFound(CommandError):
    """A 404 where the caller said what a missing object means (see `Kube.find_job`)."""


def add_cluster_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--kubeconfig",
        help="kubeconfig file (default: $KUBECONFIG, else a running `trainjob local up`, else in-cluster, "
        "else ~/.kube/config)",
    )
    parser.add_argument(
        "--namespace", "-n", help="namespace (default: the kubeconfig context's namespace, else default)"
    )
    parser.add_argument(PLAIN_HTTP_FLAG, action="store_true", help=PLAIN_HTTP_HELP)


@dataclass(frozen=True)
class Kube:
    """A connection to one cluster, working in one namespace."""

    api_client: k8s.ApiClient
    namespace: str
    # What `trainjob local up` wrote about the stack serving this cluster, if one does.
    stack_info: dict[str, Any] | None = None

    @property
    def host(self) -> str:
        return str(self.api_client.configuration.host)

    @property
    def custom(self) -> k8s.CustomObjectsApi:
        return k8s.CustomObjectsApi(self.api_client)

    @property
    def core(self) -> k8s.CoreV1Api:
        return k8s.CoreV1Api(self.api_client)

    @contextlib.contextmanager
    def calling(self, what: str, *, not_found: str | None = None) -> Iterator[None]:
        """Turn connection failures and API errors of `what` into one-line CommandErrors;
        `not_found` is the whole message for a 404."""
        try:
            yield
        except ApiException as error:
            if error.status == 404 and not_found is not None:
                raise CommandError(not_found) from None
            if error.status == 404:
                raise _NotFound(f"{what}: {api_error_message(error)}") from None
            raise CommandError(f"{what}: {api_error_message(error)}") from None
        except BrokenPipeError:
            raise  # our stdout closed (`| head`), not the API: cli.main ends quietly
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise CommandError(
                f"cannot reach the Kubernetes API at {self.host}: {connection_reason(error)}"
            ) from None

    # ---- TrainJobs --------------------------------------------------------------------------

    def get_job(self, name: str, namespace: str | None = None) -> dict[str, Any]:
        namespace = namespace or self.namespace
        job = self.find_job(name, namespace)
        if job is None:
            raise CommandError(f'TrainJob "{name}" not found in namespace "{namespace}"')
        return job

    def find_job(self, name: str, namespace: str) -> dict[str, Any] | None:
        """The TrainJob, or None when there is none of that name."""
        try:
            with self.calling(f"cannot read TrainJob {name!r}"):
                job = self.custom.get_namespaced_custom_object(
                    constants.GROUP,
                    constants.VERSION,
                    namespace,
                    constants.PLURAL,
                    name,
                    _request_timeout=REQUEST_TIMEOUT,
                )
        except _NotFound:
            return None
        return as_object(job)

    def list_jobs(self) -> list[dict[str, Any]]:
        with self.calling("cannot list TrainJobs"):
            listed = self.custom.list_namespaced_custom_object(
                constants.GROUP,
                constants.VERSION,
                self.namespace,
                constants.PLURAL,
                _request_timeout=REQUEST_TIMEOUT,
            )
        items = as_object(listed).get("items") or []
        return sorted((as_object(item) for item in items), key=lambda job: str(job["metadata"]["name"]))

    def create_job(self, manifest: dict[str, Any], namespace: str) -> dict[str, Any]:
        metadata = manifest["metadata"]
        with self.calling(f"cannot create TrainJob {metadata.get('name') or metadata.get('generateName')!r}"):
            created = self.custom.create_namespaced_custom_object(
                constants.GROUP,
                constants.VERSION,
                namespace,
                constants.PLURAL,
                manifest,
                _request_timeout=REQUEST_TIMEOUT,
            )
        return as_object(created)

    def replace_job(self, job: dict[str, Any]) -> dict[str, Any]:
        metadata = job["metadata"]
        with self.calling(f"cannot update TrainJob {metadata['name']!r}"):
            replaced = self.custom.replace_namespaced_custom_object(
                constants.GROUP,
                constants.VERSION,
                metadata["namespace"],
                constants.PLURAL,
                metadata["name"],
                job,
                _request_timeout=REQUEST_TIMEOUT,
            )
        return as_object(replaced)

    # ---- what belongs to a job --------------------------------------------------------------

    def job_pods(self, job: str, *, attempt: int | None = None, rank: int | None = None) -> list[k8s.V1Pod]:
        selector = [f"{constants.LABEL_NAME}={job}"]
        if attempt is not None:
            selector.append(f"{constants.LABEL_ATTEMPT}={attempt}")
        if rank is not None:
            selector.append(f"{constants.LABEL_RANK}={rank}")
        with self.calling(f"cannot list the pods of TrainJob {job!r}"):
            pods = self.core.list_namespaced_pod(
                self.namespace, label_selector=",".join(selector), _request_timeout=REQUEST_TIMEOUT
            )
        return list(pods.items)

    def job_events(self, job: str) -> list[k8s.CoreV1Event]:
        with self.calling(f"cannot list the events of TrainJob {job!r}"):
            events = self.core.list_namespaced_event(
                self.namespace,
                field_selector=f"involvedObject.name={job}",
                _request_timeout=REQUEST_TIMEOUT,
            )
        return sorted(events.items, key=event_time)

    def secret_data(self, name: str) -> dict[str, str]:
        import base64

        with self.calling(
            f'cannot read Secret "{name}" in namespace "{self.namespace}"',
            not_found=f'Secret "{name}" not found in namespace "{self.namespace}"',
        ):
            secret = self.core.read_namespaced_secret(name, self.namespace, _request_timeout=REQUEST_TIMEOUT)
        return {key: base64.b64decode(value).decode() for key, value in (secret.data or {}).items()}


def as_object(value: object) -> dict[str, Any]:
    """A custom object as the API returned it (the client types those as `object`)."""
    if not isinstance(value, dict):
        raise CommandError(f"the API server answered with {type(value).__name__}, not an object")
    return value


def event_time(event: k8s.CoreV1Event) -> str:
    moment = event.last_timestamp or event.event_time or event.metadata.creation_timestamp
    return moment.isoformat() if moment is not None else ""


def api_error_message(error: ApiException) -> str:
    """The Status message the API server sent, else the HTTP status."""
    import json

    try:
        body = json.loads(error.body or "")
    except (ValueError, TypeError):
        body = None
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])
    return f"HTTP {error.status} {error.reason}"


def connection_reason(error: BaseException) -> str:
    reason = getattr(error, "reason", None) or error
    text = str(reason)
    # urllib3 wraps the socket error in several layers; the errno text is the useful part.
    for marker in ("Connection refused", "timed out", "Name or service not known", "No route to host"):
        if marker in text:
            return marker.lower()
    return text.splitlines()[0] if text else type(error).__name__


def connect(args: argparse.Namespace) -> Kube:
    """The cluster and namespace the command's `--kubeconfig`/`--namespace` arguments select."""
    kubeconfig: str | None = getattr(args, "kubeconfig", None)
    namespace: str | None = getattr(args, "namespace", None)
    configuration = k8s.Configuration()
    context_namespace: str | None = None
    if kubeconfig is not None and not Path(kubeconfig).is_file():
        raise CommandError(f"kubeconfig {kubeconfig} does not exist")
    try:
        if kubeconfig is None and not os.environ.get("KUBECONFIG"):
            kubeconfig = local_stack_kubeconfig()
        access = None
        if kubeconfig is None and not os.environ.get("KUBECONFIG"):
            access = in_cluster_access(plain_http=bool(getattr(args, "api_plain_http", False)))
        if access is None:
            k8s_config.load_kube_config(
                config_file=kubeconfig, client_configuration=configuration, persist_config=False
            )
            context_namespace = kubeconfig_namespace(kubeconfig)
        else:
            configuration = access.kubernetes_configuration()
            context_namespace = access.namespace
    except InClusterError as error:
        raise CommandError(str(error)) from None
    except (ConfigException, OSError) as error:
        raise CommandError(
            f"no usable Kubernetes configuration ({error}): pass --kubeconfig, set KUBECONFIG, or start "
            "a local cluster with `trainjob local up`"
        ) from None
    # One retry: a refused connection should fail in a second, not after urllib3's default backoff.
    configuration.retries = 1
    api_client = k8s.ApiClient(configuration)
    return Kube(
        api_client,
        namespace or context_namespace or "default",
        stack_info_for(Path(kubeconfig) if kubeconfig else None),
    )


def local_stack_kubeconfig() -> str | None:
    """The kubeconfig of a `trainjob local up` in the default directory; said on stderr."""
    from trainjob_operator.local.stack import read_stack_info

    info = read_stack_info(DEFAULT_LOCAL_DIRECTORY)
    if info is None:
        return None
    path = str(info["kubeconfig"])
    print(f"using the local cluster of `trainjob local up` ({path})", file=sys.stderr)
    return path


def stack_info_for(kubeconfig: Path | None) -> dict[str, Any] | None:
    """What the `trainjob local up` serving this kubeconfig wrote (its S3 endpoint), if one runs.

    A stack keeps its kubeconfig at `<dir>/cluster/kubeconfig`, so the stack's directory is found
    from the kubeconfig path; the default directory is the fallback.
    """
    from trainjob_operator.local.stack import read_stack_info

    path = kubeconfig or (Path(os.environ["KUBECONFIG"]) if os.environ.get("KUBECONFIG") else None)
    candidates = [path.resolve().parent.parent] if path is not None else []
    candidates.append(DEFAULT_LOCAL_DIRECTORY)
    for directory in candidates:
        info = read_stack_info(directory)
        if info is not None and (path is None or Path(info["kubeconfig"]).resolve() == path.resolve()):
            return info
    return None


def kubeconfig_namespace(kubeconfig: str | None) -> str | None:
    with contextlib.suppress(ConfigException, OSError, KeyError, TypeError):
        _, active = k8s_config.list_kube_config_contexts(config_file=kubeconfig)
        namespace = (active or {}).get("context", {}).get("namespace")
        return str(namespace) if namespace else None
    return None
