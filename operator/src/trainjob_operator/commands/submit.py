"""`trainjob submit FILE [--follow]`: create the TrainJobs in FILE, or replace their spec."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

from trainjob_operator import views
from trainjob_operator.api import constants
from trainjob_operator.client import CommandError, Kube, add_cluster_arguments, connect
from trainjob_operator.follow import follow_jobs


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "submit",
        help="create TrainJobs from a YAML file (or replace their spec)",
        description="Create each TrainJob in FILE (YAML, several documents allowed); one that exists "
        "already gets FILE's spec. With --follow, show live progress until every job finished: exit 0 "
        "when all succeeded, 1 otherwise.",
    )
    parser.add_argument(
        "file", type=Path, metavar="FILE", help="YAML file with TrainJob manifests ('-' is stdin)"
    )
    parser.add_argument("--follow", "-f", action="store_true", help="show progress until the jobs finish")
    add_cluster_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    manifests = read_manifests(args.file)
    kube = connect(args)
    console = views.make_console()
    submitted: list[tuple[str, str]] = []
    for manifest in manifests:
        namespace = str(manifest["metadata"].get("namespace") or kube.namespace)
        name = str(manifest["metadata"]["name"])
        console.print(f"trainjob.{constants.GROUP}/{name} {submit(kube, manifest, namespace)}")
        submitted.append((namespace, name))
    if not args.follow:
        return 0
    jobs = follow_jobs(kube, submitted, console)
    for job in jobs.values():
        status = views.status_of(job)
        console.print(
            f"TrainJob {views.job_name(job)} {status.get('phase')}"
            + (f": {status['message']}" if status.get("message") else "")
        )
    return 0 if all(views.status_of(job).get("phase") == "Succeeded" for job in jobs.values()) else 1


def submit(kube: Kube, manifest: dict[str, Any], namespace: str) -> str:
    """Create the job, or put the manifest's spec on the existing one; says which happened."""
    existing = kube.find_job(str(manifest["metadata"]["name"]), namespace)
    if existing is None:
        kube.create_job(manifest, namespace)
        return "created"
    if existing.get("spec") == manifest["spec"]:
        return "unchanged"
    existing["spec"] = manifest["spec"]
    kube.replace_job(existing)
    return "configured"


def read_manifests(path: Path) -> list[dict[str, Any]]:
    import sys

    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text()
    except OSError as error:
        raise CommandError(f"cannot read {path}: {error.strerror or error}") from None
    try:
        documents = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as error:
        raise CommandError(f"{path} is not valid YAML: {' '.join(str(error).split())}") from None
    if not documents:
        raise CommandError(f"{path} holds no TrainJob")
    for index, document in enumerate(documents):
        where = f"{path} document {index + 1}"
        if not isinstance(document, dict):
            raise CommandError(f"{where} is not a Kubernetes object")
        if document.get("apiVersion") != constants.API_VERSION or document.get("kind") != constants.KIND:
            raise CommandError(
                f"{where} is {document.get('apiVersion')}/{document.get('kind')}, not a "
                f"{constants.API_VERSION} {constants.KIND} (apply other objects with kubectl)"
            )
        if not isinstance(document.get("metadata"), dict) or not document["metadata"].get("name"):
            raise CommandError(f"{where} has no metadata.name")
        if not isinstance(document.get("spec"), dict):
            raise CommandError(f"{where} has no spec")
    return documents
