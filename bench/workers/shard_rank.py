"""One rank of the sharded-checkpoint scenario: ``python -m bench.workers.shard_rank PARAMS``.

PARAMS (JSON): mode (``sdk_sync``, ``sdk_sync_signed``, ``sdk_async_given_up``, ``sdk_async_copy``
or ``boto3``),
shards (one prewritten file per rank), start_at (wall time every rank starts at, so that the ranks
upload together), workroot, and for ``boto3`` concurrency and chunk_mib.

The SDK modes report the rank's shard through ``worker_sdk.report`` (the shard is hard-linked into
a fresh directory: O(1), and the handed-over directory's removal leaves the prewritten file
alone); ``boto3`` uploads it with ``upload_file`` and a TransferConfig, as a user without the SDK
would. Every rank prints one JSON line: when it began and when its call returned (or its upload
ended), the CPU seconds it spent from when it began (for async: until the commit, so the
background upload's too), and its peak RSS
(VmHWM) once its upload is over, beside the RSS before it began.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

MiB = 1024 * 1024


def rss_mib(field: str) -> float:
    """VmRSS (now) or VmHWM (peak) of this process, in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def cpu_s() -> float:
    """User + system CPU seconds of this process so far (every thread)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def wait_until(at: float) -> None:
    while (left := at - time.time()) > 0:
        time.sleep(min(left, 0.05))


def wait_committed(timeout: float = 600) -> None:
    """Until the coordinator shows a committed checkpoint: the background upload is over then."""
    url = os.environ["TRAINJOB_COORDINATOR_URL"] + "/v1/state"
    token = os.environ["TRAINJOB_REPORT_TOKEN"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})  # noqa: S310
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
            if json.loads(response.read()).get("latestCheckpoint"):
                return
        time.sleep(0.05)
    raise TimeoutError("no checkpoint committed")


def run_boto3(params: dict[str, Any], shard: Path, rank: int) -> dict[str, Any]:
    import boto3
    from boto3.s3.transfer import TransferConfig
    from botocore.config import Config

    concurrency, chunk = int(params["concurrency"]), int(params["chunk_mib"]) * MiB
    client = boto3.session.Session().client(
        "s3",
        endpoint_url=os.environ["AWS_ENDPOINT_URL_S3"],
        region_name="us-east-1",
        config=Config(max_pool_connections=max(10, concurrency * 2)),
    )
    config = TransferConfig(
        multipart_threshold=chunk, multipart_chunksize=chunk, max_concurrency=concurrency, use_threads=True
    )
    before = rss_mib("VmRSS")
    wait_until(float(params["start_at"]))
    began, cpu = time.time(), cpu_s()
    client.upload_file(
        str(shard), "trainjob", f"plain/{uuid.uuid4().hex[:8]}/shard-{rank}.bin", Config=config
    )
    ended = time.time()
    return {
        "began": began,
        "returned": ended,
        "cpu_s": cpu_s() - cpu,
        "rss_before_mib": before,
        "peak_rss_mib": rss_mib("VmHWM"),
    }


def run_sdk(params: dict[str, Any], shard: Path, rank: int) -> dict[str, Any]:
    import worker_sdk as train

    mode = params["mode"]
    directory = Path(params["workroot"]) / f"rank-{rank}-{uuid.uuid4().hex[:8]}"
    directory.mkdir(parents=True)
    os.link(shard, directory / f"shard-{rank}.bin")
    from worker_sdk import session

    train.get_checkpoint()  # the session and its resume point, before the clock starts
    # The S3 client too (made on first use; importing boto3 takes seconds on a loaded machine):
    # a job pays that once, at its first checkpoint, and boto3's processes have it made already.
    storage = session.current()._storage
    if mode == "sdk_sync_signed":
        # The before of issue 16 goal 3's last change, in the same run: data bodies SHA-256-signed
        # too (botocore's default over plain HTTP), a second pass over every byte.
        storage.sign_data_payloads = True  # type: ignore[attr-defined]
    _ = storage._data_client  # type: ignore[attr-defined]
    before = rss_mib("VmRSS")
    wait_until(float(params["start_at"]))
    began, cpu = time.time(), cpu_s()
    train.report(
        {"rank": rank},
        checkpoint=train.Checkpoint.from_directory(directory),
        upload="sync" if mode in ("sdk_sync", "sdk_sync_signed") else "async",
        delete_local_checkpoint_after_upload=mode == "sdk_async_given_up",
    )
    returned = time.time()
    if mode not in ("sdk_sync", "sdk_sync_signed"):
        wait_committed()  # the background upload is over: its memory is in VmHWM now
    return {
        "began": began,
        "returned": returned,
        "cpu_s": cpu_s() - cpu,
        "rss_before_mib": before,
        "peak_rss_mib": rss_mib("VmHWM"),
    }


def main() -> None:
    params = json.loads(sys.argv[1])
    rank = int(os.environ.get("RANK", params.get("rank", 0)))
    shard = Path(params["shards"][rank])
    result = run_boto3(params, shard, rank) if params["mode"] == "boto3" else run_sdk(params, shard, rank)
    print(json.dumps({"rank": rank, "mode": params["mode"], **result}), flush=True)


if __name__ == "__main__":
    main()
