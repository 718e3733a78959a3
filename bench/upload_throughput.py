"""Scenario 3: the SDK's upload of a checkpoint directory against the limit: the best plain boto3
(``upload_file`` with a tuned TransferConfig, files in parallel) and a local disk copy, same data,
same SeaweedFS. Two shapes: one large file, and many small files.

    python -m bench.upload_throughput [--large-mib 256] [--small-count 256] [--small-kib 256] [--repeats 3]
"""

from __future__ import annotations

import os
import shutil
import statistics
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.common import MiB, emit, log, scenario_parser, seaweedfs, workdir


def make_files(directory: Path, count: int, size: int) -> int:
    directory.mkdir(parents=True)
    block = os.urandom(min(size, 4 * MiB))
    for index in range(count):
        with open(directory / f"part-{index:05d}.bin", "wb") as f:
            left = size
            while left > 0:
                f.write(block[: min(left, len(block))])
                left -= min(left, len(block))
    return count * size


def boto3_uploader(s3: Any, concurrency: int, chunk_mib: int) -> Callable[[Path, str], None]:
    import boto3
    from boto3.s3.transfer import TransferConfig
    from botocore.config import Config

    client = boto3.session.Session().client(
        "s3",
        endpoint_url=s3.endpoint,
        aws_access_key_id=s3.access_key,
        aws_secret_access_key=s3.secret_key,
        region_name="us-east-1",
        config=Config(max_pool_connections=max(10, concurrency * 2)),
    )
    config = TransferConfig(
        multipart_threshold=chunk_mib * MiB,
        multipart_chunksize=chunk_mib * MiB,
        max_concurrency=concurrency,
        use_threads=True,
    )

    def upload(directory: Path, prefix: str) -> None:
        files = sorted(p for p in directory.rglob("*") if p.is_file())
        with ThreadPoolExecutor(max_workers=min(concurrency, len(files))) as pool:
            list(
                pool.map(
                    lambda p: client.upload_file(
                        str(p), s3.bucket, f"{prefix}/{p.relative_to(directory)}", Config=config
                    ),
                    files,
                )
            )

    return upload


def sdk_uploader(s3: Any) -> Callable[[Path, str], None]:
    from worker_sdk.checkpoint import list_checkpoint_files
    from worker_sdk.storage import S3Storage, join_key

    os.environ.update(s3.credentials_env)  # the SDK reads the standard AWS variables, as in a pod
    storage = S3Storage(f"s3://{s3.bucket}", endpoint_url=s3.endpoint)

    def upload(directory: Path, prefix: str) -> None:
        files = list_checkpoint_files(directory)
        storage.upload_files((f.source, join_key(prefix, f.relative)) for f in files)

    return upload


def disk_copy(directory: Path, prefix: str) -> None:
    target = directory.parent / f"copy-{prefix.replace('/', '-')}"
    shutil.copytree(directory, target)
    with open(next(iter(target.iterdir())), "rb") as f:
        os.fsync(f.fileno())
    shutil.rmtree(target)


def measure(
    candidates: dict[str, Callable[[Path, str], None]], directory: Path, size: int, repeats: int
) -> dict[str, Any]:
    """Each candidate once per round, ``repeats`` rounds: on a shared machine the load drifts,
    and interleaving lets it hit every candidate alike (one after the other, the last would be
    measured in a different minute than the first)."""
    rates: dict[str, list[float]] = {name: [] for name in candidates}
    for round_number in range(repeats):
        for name, upload in candidates.items():
            log(f"upload_throughput: round {round_number + 1}/{repeats} {name}")
            started = time.perf_counter()
            upload(directory, f"bench/{uuid.uuid4().hex[:8]}")
            rates[name].append(size / MiB / (time.perf_counter() - started))
    return {
        name: {"mib_per_s": round(statistics.median(runs), 1), "runs": [round(r, 1) for r in runs]}
        for name, runs in rates.items()
    }


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = scenario_parser(__doc__)
    parser.add_argument("--large-mib", type=int, default=256)
    parser.add_argument("--small-count", type=int, default=256)
    parser.add_argument("--small-kib", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    lines = []
    with workdir("upload") as tmp, seaweedfs(tmp) as s3:
        shapes = {
            "one_large_file": (1, args.large_mib * MiB),
            "many_small_files": (args.small_count, args.small_kib * 1024),
        }
        for shape, (count, size) in shapes.items():
            directory = tmp / shape
            total = make_files(directory, count, size)
            candidates: dict[str, Callable[[Path, str], None]] = {"sdk": sdk_uploader(s3)}
            for concurrency, chunk in ((10, 8), (10, 16), (16, 32), (32, 8)):
                candidates[f"boto3_c{concurrency}_chunk{chunk}mib"] = boto3_uploader(s3, concurrency, chunk)
            candidates["disk_copy"] = disk_copy
            for name, upload in candidates.items():
                upload(directory, f"warmup/{name}")  # connections, page cache
            log(f"upload_throughput: {shape}")
            results = measure(candidates, directory, total, args.repeats)
            boto = {k: v for k, v in results.items() if k.startswith("boto3")}
            best_name = max(boto, key=lambda k: boto[k]["mib_per_s"])
            best = boto[best_name]["mib_per_s"]
            fraction = round(results["sdk"]["mib_per_s"] / best, 3)
            lines.append(
                emit(
                    "upload_throughput",
                    {"shape": shape, "files": count, "file_bytes": size, "total_mib": round(total / MiB, 1)},
                    {"sdk": results["sdk"]},
                    {"best_boto3": best_name, **{k: v for k, v in results.items() if k != "sdk"}},
                    {"sdk_over_best_boto3": fraction},
                    {"target": "sdk >= 90% of the best plain boto3", "met": fraction >= 0.9},
                )
            )
    return lines


if __name__ == "__main__":
    main()
