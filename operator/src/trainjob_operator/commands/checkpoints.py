"""`trainjob checkpoints JOB` lists committed checkpoints; `trainjob checkpoints download JOB DIR`
fetches one."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from trainjob_operator import views
from trainjob_operator.client import CommandError, add_cluster_arguments, connect
from trainjob_operator.job_storage import open_job_storage
from worker_sdk._layout import CommittedCheckpoint

DOWNLOAD = "download"


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "checkpoints",
        help="list a TrainJob's committed checkpoints, or download one",
        usage="trainjob checkpoints [-h] JOB [options]\n"
        "       trainjob checkpoints download JOB DIR [--iteration N] [options]",
        description="List the committed checkpoints in the job's storage (those whose manifest exists): "
        "iteration, attempt, score (spec.checkpoints.scoreAttribute), size, commit time and URI, with "
        "the latest and the best marked. `download JOB DIR` fetches one (the latest unless "
        "--iteration) into DIR: exactly the files its manifest lists. S3 credentials: AWS_* from the "
        "environment, else the job's spec.storage.credentialsSecret.",
    )
    # argparse cannot mix an optional `download` word with a JOB positional, nor options between
    # positionals of a variable count; so the words are parsed by one of two inner parsers.
    parser.add_argument(
        "words", nargs=argparse.REMAINDER, metavar="JOB | download JOB DIR", help=argparse.SUPPRESS
    )
    parser.add_argument("--iteration", type=int, metavar="N", help="download: the checkpoint of iteration N")
    add_cluster_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    words: list[str] = args.words
    if words and words[0] == DOWNLOAD:
        download_parser = argparse.ArgumentParser(prog="trainjob checkpoints download")
        download_parser.add_argument("job", metavar="JOB")
        download_parser.add_argument("directory", type=Path, metavar="DIR")
        download_parser.add_argument("--iteration", type=int, metavar="N")
        add_cluster_arguments(download_parser)
        download_parser.parse_args(words[1:], namespace=args)
        return download(args, job_name=args.job, directory=args.directory)
    list_parser = argparse.ArgumentParser(prog="trainjob checkpoints")
    list_parser.add_argument("job", metavar="JOB")
    add_cluster_arguments(list_parser)
    list_parser.parse_args(words, namespace=args)
    if args.iteration is not None:
        raise CommandError("--iteration is for `trainjob checkpoints download JOB DIR`")
    return show(args, job_name=args.job)


def show(args: argparse.Namespace, *, job_name: str) -> int:
    kube = connect(args)
    job = kube.get_job(job_name)
    storage = open_job_storage(kube, job)
    checkpoints = storage.committed_checkpoints()
    console = views.make_console()
    if not checkpoints:
        console.print(
            f'TrainJob "{job_name}" has no committed checkpoint in {storage.storage.uri_for(storage.prefix)}'
        )
        return 0
    score_name = (storage.spec.get("checkpoints") or {}).get("scoreAttribute")
    best = storage.best(checkpoints)
    rows = [
        {
            "uri": checkpoint.uri,
            "iteration": checkpoint.iteration,
            "attempt": checkpoint.manifest.attempt,
            "score": checkpoint.score(score_name),
            "sizeBytes": checkpoint.manifest.size_bytes,
            "committedAt": checkpoint.manifest.committed_at,
        }
        for checkpoint in checkpoints
    ]
    console.print(
        views.checkpoints_table(
            rows, latest_uri=checkpoints[-1].uri, best_uri=best.uri if best else None, score_name=score_name
        )
    )
    return 0


def download(args: argparse.Namespace, *, job_name: str, directory: Path) -> int:
    kube = connect(args)
    job = kube.get_job(job_name)
    storage = open_job_storage(kube, job)
    checkpoints = storage.committed_checkpoints()
    chosen = pick(checkpoints, args.iteration, job_name)
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise CommandError(f"{directory} exists and is not an empty directory")
    files = storage.download(chosen, directory)
    console = views.make_console()
    console.print(
        f"downloaded {chosen.uri} (iteration {chosen.iteration}, {len(files)} files, "
        f"{views.human_size(chosen.manifest.size_bytes)}) to {directory}"
    )
    for path in files:
        console.print(f"  {path}")
    return 0


def pick(checkpoints: list[CommittedCheckpoint], iteration: int | None, job_name: str) -> CommittedCheckpoint:
    if not checkpoints:
        raise CommandError(f'TrainJob "{job_name}" has no committed checkpoint')
    if iteration is None:
        return checkpoints[-1]
    for checkpoint in reversed(checkpoints):  # a later attempt's commit of that iteration first
        if checkpoint.iteration == iteration:
            return checkpoint
    kept = ", ".join(str(c.iteration) for c in checkpoints)
    raise CommandError(
        f'TrainJob "{job_name}" has no committed checkpoint at iteration {iteration} (committed: {kept})'
    )
