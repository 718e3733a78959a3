"""The coordinator's pure bookkeeping: no storage, no server, no clock."""

from __future__ import annotations

import pytest

from trainjob_operator.coordinator.aggregation import Aggregator, ReportRejected, Verdict
from worker_sdk.protocol import CheckpointFile, Finalize, Report, ReportedCheckpoint


def report(
    rank: int,
    iteration: int,
    *,
    files: dict[str, int] | None = None,
    dir_name: str | None = None,
    attempt: int = 0,
    loss: float = 1.0,
) -> Report:
    checkpoint = None
    if files is not None:
        checkpoint = ReportedCheckpoint(
            dir_name or f"checkpoint_{iteration:06d}",
            tuple(CheckpointFile(path, size) for path, size in files.items()),
        )
    return Report(rank, attempt, iteration, {"loss": loss}, checkpoint)


def test_iteration_is_the_highest_every_rank_reached() -> None:
    agg = Aggregator(world_size=3, attempt=0)
    for iteration in (1, 2, 3):
        agg.add_report(report(0, iteration, loss=10 - iteration), now=float(iteration))
    assert agg.iteration == 0  # ranks 1 and 2 have not reported at all
    agg.add_report(report(1, 1), now=4.0)
    agg.add_report(report(2, 1), now=5.0)
    assert agg.iteration == 1
    assert agg.metrics == {"loss": 9}  # rank 0's at iteration 1, not its latest
    agg.add_report(report(1, 2), now=6.0)
    assert agg.iteration == 1
    agg.add_report(report(2, 2), now=7.0)
    assert agg.iteration == 2
    assert agg.metrics == {"loss": 8}
    assert [(i, m) for i, _, m in agg.take_completed_metrics()] == [(1, {"loss": 9}), (2, {"loss": 8})]
    assert agg.take_completed_metrics() == []  # each iteration once


def test_slowest_rank_is_the_one_furthest_behind_then_least_recent() -> None:
    agg = Aggregator(world_size=3, attempt=0)
    agg.add_report(report(0, 1), now=1.0)
    agg.add_report(report(1, 1), now=2.0)
    agg.add_report(report(2, 1), now=3.0)
    agg.add_report(report(0, 2), now=4.0)
    agg.add_report(report(2, 2), now=5.0)
    slowest = agg.slowest_rank()
    assert slowest is not None and slowest[0] == 1 and slowest[1].last_iteration == 1
    agg.add_report(report(1, 2), now=6.0)
    slowest = agg.slowest_rank()
    assert slowest is not None and slowest[0] == 0  # all at 2; rank 0 reported longest ago


def test_rank_zero_only_checkpoint_is_ready_once_every_rank_reached_it() -> None:
    agg = Aggregator(world_size=2, attempt=0)
    agg.add_report(report(0, 1, files={"model.pt": 10}), now=1.0)
    assert agg.ready_to_commit() == []
    agg.add_report(report(1, 1), now=2.0)
    [candidate] = agg.ready_to_commit()
    assert candidate.iteration == 1
    assert candidate.dir_name == "checkpoint_000001"
    assert candidate.files == {"model.pt": 10}
    assert candidate.metrics == {"loss": 1.0}
    assert candidate.every_rank_known
    agg.mark_committed(1)
    assert agg.ready_to_commit() == []


def test_sharded_checkpoint_merges_every_rank_files() -> None:
    agg = Aggregator(world_size=3, attempt=0)
    for rank in range(3):
        agg.add_report(report(rank, 1, files={f"shard-{rank}.pt": 100 + rank}), now=1.0)
    [candidate] = agg.ready_to_commit()
    assert candidate.files == {"shard-0.pt": 100, "shard-1.pt": 101, "shard-2.pt": 102}


def test_two_ranks_listing_one_path_with_different_sizes_is_a_conflict_and_never_ready() -> None:
    agg = Aggregator(world_size=2, attempt=0)
    agg.add_report(report(0, 1, files={"model.pt": 10}), now=1.0)
    agg.add_report(report(1, 1, files={"model.pt": 11}), now=1.0)
    assert agg.ready_to_commit() == []
    assert len(agg.conflicts) == 1
    assert (
        "ranks 0 and 1 both listed checkpoint_000001/model.pt with different sizes (10 and 11 bytes)"
        in (agg.conflicts[0])
    )


def test_every_rank_saving_one_replicated_file_commits_it_once() -> None:
    """Ray's examples save the (DDP-replicated) model as model.pt from every rank: as in Ray, one
    upload wins; both are the same size, so the listing verifies."""
    agg = Aggregator(world_size=2, attempt=0)
    agg.add_report(report(0, 1, files={"model.pt": 10}), now=1.0)
    agg.add_report(report(1, 1, files={"model.pt": 10, "rank-1.txt": 2}), now=1.0)
    [candidate] = agg.ready_to_commit()
    assert candidate.files == {"model.pt": 10, "rank-1.txt": 2}
    assert agg.conflicts == []


def test_ranks_naming_different_directories_for_one_iteration_conflict() -> None:
    agg = Aggregator(world_size=2, attempt=0)
    agg.add_report(report(0, 1, files={"a.pt": 1}, dir_name="ckpt-a"), now=1.0)
    agg.add_report(report(1, 1, files={"b.pt": 1}, dir_name="ckpt-b"), now=1.0)
    assert agg.ready_to_commit() == []
    assert "'ckpt-b'" in agg.conflicts[0]


def test_duplicates_are_idempotent_and_skips_are_refused() -> None:
    agg = Aggregator(world_size=2, attempt=0)
    assert agg.add_report(report(0, 1), now=1.0) is Verdict.ACCEPTED
    assert agg.add_report(report(0, 2), now=2.0) is Verdict.ACCEPTED
    assert agg.add_report(report(0, 2), now=3.0) is Verdict.DUPLICATE
    assert agg.add_report(report(0, 1), now=3.0) is Verdict.DUPLICATE
    assert agg.ranks[0].last_iteration == 2
    with pytest.raises(ReportRejected) as refused:
        agg.add_report(report(0, 4), now=4.0)
    assert refused.value.status == 409
    assert "next expected: 3" in str(refused.value)


def test_other_attempt_and_out_of_range_rank_are_refused() -> None:
    agg = Aggregator(world_size=2, attempt=3)
    with pytest.raises(ReportRejected) as refused:
        agg.add_report(report(0, 1, attempt=2), now=1.0)
    assert refused.value.status == 409 and "serves attempt 3" in str(refused.value)
    with pytest.raises(ReportRejected) as refused:
        agg.add_report(report(2, 1, attempt=3), now=1.0)
    assert refused.value.status == 422 and "world size is 2" in str(refused.value)
    assert agg.ranks == {}


def test_first_report_after_a_resume_may_start_anywhere() -> None:
    agg = Aggregator(world_size=2, attempt=1)
    agg.add_report(report(0, 41, attempt=1), now=1.0)
    agg.add_report(report(1, 41, attempt=1), now=1.0)
    assert agg.iteration == 41


def test_resent_checkpoint_after_a_restart_completes_the_commit() -> None:
    """A new coordinator first hears rank 1 at iteration 6 and rank 0 at 6; rank 0 re-sends
    its uncommitted report 5 with a checkpoint: recorded although it goes backwards."""
    agg = Aggregator(world_size=2, attempt=0)
    agg.add_report(report(0, 6), now=1.0)
    agg.add_report(report(1, 6), now=1.0)
    assert agg.add_report(report(0, 5, files={"model.pt": 7}), now=2.0) is Verdict.DUPLICATE
    [candidate] = agg.ready_to_commit()
    assert candidate.iteration == 5 and candidate.files == {"model.pt": 7}
    # Rank 1's part of iteration 5 (if any) went to the previous coordinator: unknown.
    assert not candidate.every_rank_known
    agg.add_report(report(1, 5), now=3.0)
    [candidate] = agg.ready_to_commit()
    assert candidate.every_rank_known


def test_duplicate_of_a_committed_checkpoint_is_not_recorded_again() -> None:
    agg = Aggregator(world_size=1, attempt=0)
    agg.add_report(report(0, 1, files={"m": 1}), now=1.0)
    agg.mark_committed(1)
    agg.add_report(report(0, 1, files={"m": 1}), now=2.0)
    assert agg.pending == {}


def test_committing_a_newer_checkpoint_gives_up_older_pending_ones() -> None:
    agg = Aggregator(world_size=1, attempt=0)
    agg.add_report(report(0, 1, files={"m": 1}), now=1.0)
    agg.add_report(report(0, 2, files={"m": 1}), now=1.0)
    agg.mark_committed(2)
    assert agg.pending == {}


def test_finalize() -> None:
    agg = Aggregator(world_size=2, attempt=0)
    agg.add_report(report(0, 1), now=1.0)
    with pytest.raises(ReportRejected) as refused:
        agg.add_finalize(Finalize(0, 0, 2), now=2.0)
    assert refused.value.status == 409
    agg.add_finalize(Finalize(0, 0, 1), now=2.0)
    # A rank whose reports all went to a previous coordinator: it reached that iteration.
    agg.add_finalize(Finalize(1, 0, 1), now=2.0)
    assert agg.all_finalized and agg.iteration == 1
    with pytest.raises(ReportRejected):
        agg.add_report(report(0, 2), now=3.0)


def test_many_ranks_cost_little_per_report() -> None:
    agg = Aggregator(world_size=512, attempt=0)
    for iteration in range(1, 21):
        for rank in range(512):
            agg.add_report(report(rank, iteration), now=float(iteration))
    assert agg.iteration == 20


def test_resent_checkpoint_reports_may_leave_gaps_until_a_live_report() -> None:
    """The SDK re-sends only its uncommitted checkpoint reports (8 and 10) when it first sees a
    new coordinator id through GET /v1/state, then goes on with its live report 11."""
    agg = Aggregator(world_size=1, attempt=0)
    agg.add_report(report(0, 8, files={"m": 1}), now=1.0)
    agg.add_report(report(0, 10, files={"m": 1}), now=1.0)
    assert agg.ranks[0].first_iteration == 10  # iteration 9 went to the previous coordinator
    agg.add_report(report(0, 11), now=1.0)
    assert agg.iteration == 11
    with pytest.raises(ReportRejected) as refused:
        agg.add_report(report(0, 13, files={"m": 1}), now=2.0)
    assert refused.value.status == 409
