"""The coordinator behind its real HTTP app, on SeaweedFS and on a directory."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import boto3
from prometheus_client.parser import text_string_to_metric_families

from tests.support.coordinator import (
    PREFIX,
    TOKEN,
    StartCoordinator,
    history_lines,
    keys,
    report_body,
    upload,
)
from trainjob_operator.api.types import COORDINATOR_STATUS_FIELDS, TrainJobStatus
from trainjob_operator.coordinator.committing import RetentionPolicy
from trainjob_operator.local.seaweedfs import SeaweedFS
from worker_sdk._contract import CoordinatorState
from worker_sdk._layout import ScoreOrder
from worker_sdk.protocol import MANIFEST_NAME
from worker_sdk.storage import open_storage


async def test_two_ranks_commit_retain_and_settle(start_coordinator: StartCoordinator) -> None:
    retention = RetentionPolicy(num_to_keep=2, score_attribute="loss", score_order=ScoreOrder.MIN)
    harness = await start_coordinator(world_size=2, retention=retention)
    losses = {1: 0.9, 2: 0.5, 3: 0.7, 4: 0.6}
    for iteration, loss in losses.items():
        files = {"model.pt": 100 + iteration}  # a rank-0-only checkpoint every iteration
        upload(harness.storage, iteration, files)
        await harness.report(0, iteration, metrics={"loss": loss}, files=files)
        await harness.report(1, iteration, metrics={"loss": loss + 1})
    state = await harness.wait_for(
        lambda s: s["latestCheckpoint"] and s["latestCheckpoint"]["iteration"] == 4
    )
    assert state["iteration"] == 4
    assert state["metrics"] == {"loss": 0.6}
    assert state["ranks"] == {"0": 4, "1": 4}
    # The best two by min loss (2 and 4); 4 is also the latest.
    assert [c["iteration"] for c in state["checkpoints"]] == [2, 4]
    assert state["checkpoints"][0] == {
        "uri": harness.storage.uri_for(f"{PREFIX}/checkpoint_000002"),
        "iteration": 2,
        "score": 0.5,
    }
    assert state["bestCheckpoint"]["iteration"] == 2
    assert state["latestCheckpoint"]["sizeBytes"] == 104
    assert state["latestCheckpoint"]["metrics"] == {"loss": 0.6}
    assert not state["settled"]

    await harness.finalize(0, 4)
    await harness.finalize(1, 4)
    state = await harness.wait_for(lambda s: s["settled"])
    assert state["finalized"] == [0, 1] and state["pendingCommits"] == 0
    assert [k for k in keys(harness.storage) if "checkpoint_" in k] == [
        f"{PREFIX}/checkpoint_000002/{MANIFEST_NAME}",
        f"{PREFIX}/checkpoint_000002/attempt-0/model.pt",
        f"{PREFIX}/checkpoint_000004/{MANIFEST_NAME}",
        f"{PREFIX}/checkpoint_000004/attempt-0/model.pt",
    ]
    lines = history_lines(harness.storage)
    assert [(line["iteration"], line["metrics"]) for line in lines] == [
        (i, {"loss": x}) for i, x in losses.items()
    ]

    status = harness.sink.status
    assert set(status) == {
        "iteration",
        "metrics",
        "lastReportTime",
        "latestCheckpoint",
        "bestCheckpoint",
        "checkpoints",
        "slowestRank",
        "storage",
        "lastCommitTime",
    }  # nothing wrong: reportCountMismatch and coordinatorMessage stay absent
    assert status["storage"]["available"] is True
    assert status["lastCommitTime"] == status["latestCheckpoint"]["committedAt"]
    assert status["iteration"] == 4
    assert status["latestCheckpoint"] == state["latestCheckpoint"]
    assert status["checkpoints"] == state["checkpoints"]
    assert status["slowestRank"]["iteration"] == 4


async def test_sharded_checkpoint_merges_and_removes_a_dead_attempt_leftovers(
    start_coordinator: StartCoordinator,
) -> None:
    harness = await start_coordinator(world_size=3)
    upload(harness.storage, 1, {"stale-from-attempt-0.pt": 7})
    for rank in range(3):
        files = {f"shard-{rank}.pt": 10 * (rank + 1)}
        upload(harness.storage, 1, files)
        await harness.report(rank, 1, files=files)
    state = await harness.wait_for(lambda s: s["latestCheckpoint"] is not None)
    assert state["latestCheckpoint"]["sizeBytes"] == 60
    assert sorted(k.rsplit("/", 1)[1] for k in keys(harness.storage) if "checkpoint_" in k) == [
        MANIFEST_NAME,
        "shard-0.pt",
        "shard-1.pt",
        "shard-2.pt",
    ]


async def test_a_checkpoint_with_a_short_file_waits_and_says_why(start_coordinator: StartCoordinator) -> None:
    harness = await start_coordinator(world_size=1)
    harness.storage.put_bytes(f"{PREFIX}/checkpoint_000001/attempt-0/model.pt", b"half")
    await harness.report(0, 1, files={"model.pt": 8})
    state = await harness.wait_for(lambda s: s["message"] is not None)
    assert "model.pt has 4 bytes, the report listed 8" in state["message"]
    assert state["latestCheckpoint"] is None and state["pendingCommits"] == 1
    assert f"{PREFIX}/checkpoint_000001/{MANIFEST_NAME}" not in keys(harness.storage)
    # The upload completes: the retry commits it.
    upload(harness.storage, 1, {"model.pt": 8})
    state = await harness.wait_for(lambda s: s["latestCheckpoint"] is not None)
    assert state["message"] is None


async def test_two_ranks_listing_one_file_is_not_committed_and_surfaced(
    start_coordinator: StartCoordinator,
) -> None:
    harness = await start_coordinator(world_size=2)
    upload(harness.storage, 1, {"model.pt": 3})
    await harness.report(0, 1, files={"model.pt": 3})
    await harness.report(1, 1, files={"model.pt": 4})
    state = await harness.state()
    assert "ranks 0 and 1 both listed checkpoint_000001/model.pt with different sizes" in state["message"]
    # Published within the status interval; waited for, not slept on (the machine may be loaded).
    await harness.wait_for(lambda s: "coordinatorMessage" in harness.sink.status)
    assert "ranks 0 and 1 both listed" in harness.sink.status["coordinatorMessage"]
    assert (await harness.state())["latestCheckpoint"] is None


async def test_healthz_and_metrics_need_no_token_and_state_does(start_coordinator: StartCoordinator) -> None:
    harness = await start_coordinator(world_size=1)
    assert (await harness.client.get("/healthz")).status == 200
    assert (await harness.client.get("/v1/state")).status == 401
    assert (await harness.client.get("/v1/state", headers=harness.headers("wrong"))).status == 401
    finalize = await harness.client.post("/v1/finalize", json={"rank": 0, "attempt": 0, "iteration": 0})
    assert finalize.status == 401
    metrics = await (await harness.client.get("/metrics")).text()
    assert TOKEN not in metrics


async def test_metrics_parse_and_count(start_coordinator: StartCoordinator) -> None:
    harness = await start_coordinator(world_size=2)
    upload(harness.storage, 1, {"model.pt": 123})
    await harness.report(0, 1, files={"model.pt": 123})
    await harness.report(1, 1)
    await harness.report(1, 1)  # a duplicate is accepted
    await harness.post("/v1/reports", report_body(0, 1), token="wrong")
    await harness.wait_for(lambda s: s["latestCheckpoint"] is not None)
    await harness.report(0, 2)
    text = await (await harness.client.get("/metrics")).text()
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    assert samples[("trainjob_coordinator_iteration", ())] == 1
    assert samples[("trainjob_coordinator_rank_iteration", (("rank", "0"),))] == 2
    assert samples[("trainjob_coordinator_rank_iteration", (("rank", "1"),))] == 1
    assert samples[("trainjob_coordinator_checkpoints_committed_total", ())] == 1
    assert samples[("trainjob_coordinator_checkpoint_bytes_committed_total", ())] == 123
    assert samples[("trainjob_coordinator_reports_accepted_total", ())] == 4
    assert samples[("trainjob_coordinator_reports_refused_total", (("reason", "unauthorized"),))] == 1
    assert samples[("trainjob_coordinator_commit_duration_seconds_count", ())] == 1
    assert 0 <= samples[("trainjob_coordinator_seconds_since_last_report", ())] < 60


async def test_status_publishes_are_coalesced(start_coordinator: StartCoordinator) -> None:
    harness = await start_coordinator(world_size=2, status_interval=1.0)
    await asyncio.sleep(1.2)  # let the publish after recovery go out
    harness.sink.patches.clear()
    started = asyncio.get_running_loop().time()
    for iteration in range(1, 26):
        await harness.report(0, iteration)
        await harness.report(1, iteration)
    took = asyncio.get_running_loop().time() - started
    await asyncio.sleep(1.5)
    # At most one patch per interval while the 50 reports came in (a loaded machine may take
    # longer than one interval to send them), and one after: never one per report.
    assert 1 <= len(harness.sink.patches) <= 2 + int(took), (took, harness.sink.patches)
    assert harness.sink.status["iteration"] == 25
    # Nothing changed: nothing published.
    count = len(harness.sink.patches)
    await asyncio.sleep(1.2)
    assert len(harness.sink.patches) == count


async def test_a_commit_is_published_without_waiting_when_idle(start_coordinator: StartCoordinator) -> None:
    """A report alone would wait a whole interval (6 s here) to coalesce; a commit goes out at once.
    (The interval is long so that "at once" stays far from it on a loaded machine: the commit
    itself, storage round trips included, took 2.2 s once at load average ~15.)"""
    harness = await start_coordinator(world_size=1, status_interval=6.0)
    await asyncio.sleep(6.2)
    upload(harness.storage, 1, {"m": 1})
    started = asyncio.get_running_loop().time()
    await harness.report(0, 1, files={"m": 1})
    while "latestCheckpoint" not in harness.sink.status:
        await asyncio.sleep(0.02)
    assert asyncio.get_running_loop().time() - started < 4.0
    assert harness.sink.status["iteration"] == 1


async def test_duplicate_with_an_uncommitted_checkpoint_is_recorded(
    start_coordinator: StartCoordinator,
) -> None:
    harness = await start_coordinator(world_size=2)
    await harness.report(0, 1)
    await harness.report(0, 2)
    body = await harness.report(0, 2, files={"model.pt": 5})  # re-sent, now with its checkpoint
    assert body["duplicate"] is True and body["coordinatorId"]
    upload(harness.storage, 2, {"model.pt": 5})
    await harness.report(1, 1)
    await harness.report(1, 2)
    state = await harness.wait_for(lambda s: s["latestCheckpoint"] is not None)
    assert state["latestCheckpoint"]["iteration"] == 2


async def test_storage_outage_keeps_accepting_reports_and_commits_when_back(
    seaweedfs: SeaweedFS, s3_env: dict[str, str], start_coordinator: StartCoordinator
) -> None:
    bucket = f"late-{uuid.uuid4().hex[:8]}"
    storage = open_storage(f"s3://{bucket}/jobs", retry_budget_seconds=0.5)
    harness = await start_coordinator(world_size=1, storage=storage)
    for iteration in range(1, 4):
        await harness.report(0, iteration, files={"model.pt": 2} if iteration == 3 else None)
    state = await harness.wait_for(lambda s: not s["storageAvailable"])
    assert "storage unavailable" in state["message"]
    assert state["iteration"] == 3 and state["pendingCommits"] == 1
    await asyncio.sleep(0.5)
    # A name of its own: mypy would carry this narrowing past the awaits to the check below.
    during_outage = harness.sink.status["storage"]
    assert during_outage["available"] is False

    boto3.client("s3", endpoint_url=seaweedfs.endpoint).create_bucket(Bucket=bucket)
    upload(storage, 3, {"model.pt": 2})
    state = await harness.wait_for(lambda s: s["latestCheckpoint"] is not None, timeout=30)
    assert state["storageAvailable"] and state["message"] is None
    await asyncio.sleep(0.5)
    assert harness.sink.status["storage"]["available"] is True
    assert "coordinatorMessage" not in harness.sink.status


async def test_the_status_without_a_score_attribute_is_valid_for_the_crd(
    start_coordinator: StartCoordinator,
) -> None:
    """The API server refuses a status the CRD schema does not allow (a null score, say): the
    coordinator's status must validate, or no progress ever reaches the TrainJob."""
    import jsonschema

    from trainjob_operator.api.crd import trainjob_openapi_schema

    def plain(node: Any) -> Any:  # JSON Schema without Kubernetes' extensions
        if isinstance(node, dict):
            return {k: plain(v) for k, v in node.items() if not k.startswith("x-kubernetes-")}
        return [plain(v) for v in node] if isinstance(node, list) else node

    harness = await start_coordinator(world_size=1, retention=RetentionPolicy(num_to_keep=2))
    for iteration in (1, 2):
        upload(harness.storage, iteration, {"model.pt": 10})
        await harness.report(0, iteration, metrics={"loss": 0.5}, files={"model.pt": 10})
    await harness.wait_for(lambda s: s["latestCheckpoint"] and s["latestCheckpoint"]["iteration"] == 2)
    await harness.finalize(0, 2)
    await harness.wait_for(lambda s: s["settled"])

    status_schema = plain(trainjob_openapi_schema()["properties"]["status"])
    jsonschema.validate(harness.sink.status, status_schema)
    assert [set(c) for c in harness.sink.status["checkpoints"]] == [{"uri", "iteration"}] * 2


async def test_a_new_attempt_starts_at_the_latest_committed_checkpoint(
    start_coordinator: StartCoordinator,
) -> None:
    """A new attempt's coordinator starts where the job is: at the latest committed checkpoint (the
    workers resume from it), not at iteration 0 with no metrics until the first report."""
    first = await start_coordinator(world_size=1)
    for iteration in (1, 2):
        upload(first.storage, iteration, {"model.pt": 3})
        await first.report(0, iteration, files={"model.pt": 3}, metrics={"loss": 1.0 / iteration})
    await first.wait_for(lambda s: (s.get("latestCheckpoint") or {}).get("iteration") == 2)

    second = await start_coordinator(world_size=1, attempt=1, storage=first.storage)
    state = await second.wait_for(lambda s: bool(s["recovered"]))
    assert state["iteration"] == 2
    assert state["metrics"] == {"loss": 0.5}
    await second.wait_for(lambda s: bool(second.sink.patches))
    assert all(patch.get("iteration", 2) == 2 for patch in second.sink.patches), second.sink.patches

    await second.report(0, 3, attempt=1, metrics={"loss": 0.25})
    state = await second.wait_for(lambda s: s["iteration"] == 3)
    assert state["metrics"] == {"loss": 0.25}


async def test_a_rank_reporting_one_time_fewer_is_named_and_the_attempt_settles(
    start_coordinator: StartCoordinator,
) -> None:
    """Ranks that report different numbers of times: once all have finalized, the coordinator names the
    ranks and iterations, gives up the iterations not every rank reported, and settles at once; it
    publishes the mismatch as its typed field, never as status.message."""
    harness = await start_coordinator(world_size=2)
    for iteration in (1, 2, 3):
        upload(harness.storage, iteration, {"model.pt": 2})
        await harness.report(0, iteration, files={"model.pt": 2})
        if iteration < 3:
            await harness.report(1, iteration)
    await harness.finalize(0, 3)
    await harness.finalize(1, 2)

    state = await harness.wait_for(lambda s: bool(s["settled"]))
    parsed = CoordinatorState.from_json(state)  # what the SDK reads of it
    assert parsed.settled and parsed.recovered and parsed.coordinator_id == harness.coordinator.id
    assert parsed.latest_checkpoint is not None and parsed.latest_checkpoint.iteration == 2
    message = (
        "rank 1 finalized after 2 reports but rank 0 after 3: iteration 3 was not reported by every rank"
    )
    assert state["message"] == message
    assert state["iteration"] == 2
    assert state["latestCheckpoint"]["iteration"] == 2
    assert state["pendingCommits"] == 0
    await harness.wait_for(lambda s: "reportCountMismatch" in harness.sink.status)
    assert harness.sink.status["reportCountMismatch"] == {
        "attempt": 0,
        "shortRanks": [1],
        "reports": 2,
        "longestRank": 0,
        "mostReports": 3,
        "message": message,
    }
    assert "message" not in harness.sink.status  # the operator's: it turns the field into a condition


async def test_the_published_status_holds_only_coordinator_owned_fields(
    start_coordinator: StartCoordinator,
) -> None:
    """One writer per status field: everything the coordinator can publish, with every problem it
    can have at once (a checkpoint that cannot commit, a report-count mismatch, storage state), is exactly the
    coordinator-owned list next to the API types; `message` and the rest are the operator's."""
    harness = await start_coordinator(world_size=2)
    upload(harness.storage, 1, {"model.pt": 3})
    await harness.report(0, 1, files={"model.pt": 8})  # 3 bytes stored: iteration 1 cannot commit
    await harness.report(1, 1)
    await harness.report(0, 2)
    await harness.finalize(0, 2)
    await harness.finalize(1, 1)
    await harness.wait_for(lambda s: "reportCountMismatch" in harness.sink.status)
    await harness.wait_for(lambda s: {"coordinatorMessage", "storage"} <= set(harness.sink.status))

    owned = {TrainJobStatus.model_fields[name].alias for name in COORDINATOR_STATUS_FIELDS}
    built = harness.coordinator.status()
    assert set(built) == owned
    published = {key for patch in harness.sink.patches for key in patch}
    assert published <= owned
    assert {"reportCountMismatch", "coordinatorMessage", "storage"} <= published
    assert "model.pt has 3 bytes, the report listed 8" in harness.sink.status["coordinatorMessage"]
    TrainJobStatus.from_wire(harness.sink.status)  # and it parses as the API type
