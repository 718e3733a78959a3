"""The commit protocol and retention on real storage: SeaweedFS (S3) and a directory."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest

from trainjob_operator.coordinator.aggregation import CommitCandidate
from trainjob_operator.coordinator.committing import (
    Committer,
    NotCommitted,
    RetentionPolicy,
    checkpoint_status,
)
from trainjob_operator.coordinator.recovery import recover
from worker_sdk._layout import CommittedCheckpoint, ScoreOrder
from worker_sdk.protocol import MANIFEST_NAME, CheckpointManifest
from worker_sdk.storage import Storage, open_storage

NS, JOB = "ml", "digits"
PREFIX = f"{NS}/{JOB}"


def candidate(
    iteration: int, files: dict[str, int], *, every_rank_known: bool = True, loss: float = 1.0
) -> CommitCandidate:
    return CommitCandidate(iteration, f"checkpoint_{iteration:06d}", files, {"loss": loss}, every_rank_known)


def upload(storage: Storage, iteration: int, files: dict[str, int], *, attempt: int = 0) -> None:
    """What the ranks of `attempt` upload: under the checkpoint directory's `attempt-<a>/`."""
    for path, size in files.items():
        storage.put_bytes(f"{PREFIX}/checkpoint_{iteration:06d}/attempt-{attempt}/{path}", b"x" * size)


def keys(storage: Storage) -> list[str]:
    return [obj.key for obj in storage.list_objects(PREFIX)]


def commit(
    committer: Committer, iteration: int, files: dict[str, int], loss: float = 1.0
) -> CommittedCheckpoint:
    upload(committer.storage, iteration, files, attempt=committer.attempt)
    outcome = committer.commit(candidate(iteration, files, loss=loss), now=1_700_000_000.0)
    assert isinstance(outcome, CommittedCheckpoint), outcome
    return outcome


def test_commit_writes_the_manifest_with_every_rank_files(storage: Storage) -> None:
    files = {"shard-0.pt": 10, "shard-1.pt": 20, "sub/optimizer.pt": 5}
    upload(storage, 3, files, attempt=2)
    committed = Committer(storage, NS, JOB, attempt=2).commit(
        candidate(3, files, loss=0.5), now=1_700_000_000.0
    )
    assert isinstance(committed, CommittedCheckpoint)
    assert committed.uri == storage.uri_for(f"{PREFIX}/checkpoint_000003")
    data = storage.get_bytes(f"{PREFIX}/checkpoint_000003/{MANIFEST_NAME}")
    assert data is not None
    manifest = CheckpointManifest.from_json(json.loads(data))
    assert manifest.iteration == 3 and manifest.attempt == 2
    assert manifest.metrics == {"loss": 0.5}
    assert {f.path: f.size for f in manifest.files} == files
    assert manifest.size_bytes == 35
    assert manifest.committed_at == "2023-11-14T22:13:20.000Z"
    assert checkpoint_status(committed)["sizeBytes"] == 35


@pytest.mark.parametrize("problem", ["missing", "short"])
def test_a_missing_or_short_file_is_never_committed(storage: Storage, problem: str) -> None:
    upload(storage, 1, {"a.pt": 10} if problem == "missing" else {"a.pt": 10, "b.pt": 3})
    before = keys(storage)
    outcome = Committer(storage, NS, JOB, 0).commit(candidate(1, {"a.pt": 10, "b.pt": 4}), now=0.0)
    assert isinstance(outcome, NotCommitted) and outcome.retry
    assert (
        "b.pt is missing" if problem == "missing" else "b.pt has 3 bytes, the report listed 4"
    ) in outcome.reason
    assert keys(storage) == before  # no manifest, nothing deleted


def test_files_nobody_listed_are_deleted_before_the_manifest(storage: Storage) -> None:
    upload(storage, 1, {"model.pt": 4, "stale-from-dead-attempt.pt": 9, "old/x.bin": 1})
    commit(Committer(storage, NS, JOB, 0), 1, {"model.pt": 4})
    assert keys(storage) == [
        f"{PREFIX}/checkpoint_000001/{MANIFEST_NAME}",
        f"{PREFIX}/checkpoint_000001/attempt-0/model.pt",
    ]


def test_unlisted_files_wait_while_a_rank_part_is_unknown(storage: Storage) -> None:
    """After a coordinator restart, an unlisted file may be a rank's shard not re-sent yet."""
    upload(storage, 1, {"shard-0.pt": 4, "shard-1.pt": 4})
    before = keys(storage)
    outcome = Committer(storage, NS, JOB, 0).commit(
        candidate(1, {"shard-0.pt": 4}, every_rank_known=False), now=0.0
    )
    assert isinstance(outcome, NotCommitted) and "shard-1.pt" in outcome.reason
    assert keys(storage) == before


def test_commit_is_idempotent_across_restarts(storage: Storage) -> None:
    committer = Committer(storage, NS, JOB, 0)
    first = commit(committer, 1, {"m": 1})
    again = committer.commit(candidate(1, {"m": 1}), now=5.0)
    assert isinstance(again, CommittedCheckpoint) and again.manifest == first.manifest


class RecordingStorage:
    """Wraps the real storage's delete and put to record their order (a spy, not a mock)."""

    def __init__(self, storage: Storage) -> None:
        self.calls: list[tuple[str, list[str]]] = []
        original_delete, original_put = storage.delete, storage.put_bytes

        def delete(keys: Sequence[str]) -> None:
            self.calls.append(("delete", sorted(keys)))
            original_delete(keys)

        def put_bytes(key: str, data: bytes) -> None:
            self.calls.append(("put", [key]))
            original_put(key, data)

        storage.delete = delete  # type: ignore[method-assign]  # the failing storage under test
        storage.put_bytes = put_bytes  # type: ignore[method-assign]  # as above


def test_retention_deletes_the_manifest_first_then_the_files(storage: Storage) -> None:
    committer = Committer(storage, NS, JOB, 0)
    checkpoint = commit(committer, 1, {"a.pt": 2, "b.pt": 3})
    spy = RecordingStorage(storage)
    committer.delete(checkpoint)
    manifest = f"{PREFIX}/checkpoint_000001/{MANIFEST_NAME}"
    assert spy.calls[0] == ("delete", [manifest])
    assert spy.calls[1] == (
        "delete",
        [f"{PREFIX}/checkpoint_000001/attempt-0/a.pt", f"{PREFIX}/checkpoint_000001/attempt-0/b.pt"],
    )
    assert keys(storage) == []


def test_manifest_is_written_after_stale_files_are_deleted(storage: Storage) -> None:
    upload(storage, 1, {"model.pt": 4, "stale.pt": 1})
    spy = RecordingStorage(storage)
    Committer(storage, NS, JOB, 0).commit(candidate(1, {"model.pt": 4}), now=0.0)
    assert [name for name, _ in spy.calls] == ["delete", "put"]
    assert spy.calls[1][1] == [f"{PREFIX}/checkpoint_000001/{MANIFEST_NAME}"]


def checkpoints_with_losses(storage: Storage, losses: list[float]) -> list[CommittedCheckpoint]:
    committer = Committer(storage, NS, JOB, 0)
    return [commit(committer, i + 1, {"m": 1}, loss=loss) for i, loss in enumerate(losses)]


@pytest.mark.parametrize(
    ("order", "kept"),
    [
        # losses by iteration 1..6: the latest (6) is among the best 3 by min: exactly 3 kept
        ("min", [2, 4, 6]),
        # by max: 1, 3, 5 are the best; 6 is the latest, kept as well
        ("max", [1, 3, 5, 6]),
    ],
)
def test_retention_by_score(storage: Storage, order: str, kept: list[int]) -> None:
    checkpoints = checkpoints_with_losses(storage, [0.9, 0.2, 0.8, 0.3, 0.7, 0.1])
    policy = RetentionPolicy(num_to_keep=3, score_attribute="loss", score_order=order)  # type: ignore[arg-type]  # the CLI's str
    retained = policy.retained(checkpoints)
    assert [c.iteration for c in retained] == kept
    committer = Committer(storage, NS, JOB, 0)
    for checkpoint in checkpoints:
        if checkpoint not in retained:
            committer.delete(checkpoint)
    assert [c.iteration for c in recover(committer).checkpoints] == kept
    best = policy.best(checkpoints)
    assert best is not None and best.iteration == (6 if order == "min" else 1)


def test_retention_by_recency_keeps_exactly_num_to_keep(storage: Storage) -> None:
    checkpoints = checkpoints_with_losses(storage, [0.5] * 5)
    assert [c.iteration for c in RetentionPolicy(num_to_keep=2).retained(checkpoints)] == [4, 5]
    assert len(RetentionPolicy().retained(checkpoints)) == 5  # unset keeps all
    assert RetentionPolicy().best(checkpoints) is None  # no score attribute, no best


def test_checkpoints_without_the_score_rank_last(storage: Storage) -> None:
    checkpoints = checkpoints_with_losses(storage, [0.5, 0.1, 0.3])
    policy = RetentionPolicy(num_to_keep=1, score_attribute="accuracy", score_order=ScoreOrder.MAX)
    assert [c.iteration for c in policy.retained(checkpoints)] == [3]  # no scores: newest wins
    assert policy.best(checkpoints) is None


def test_recovery_finds_only_committed_checkpoints(storage_uri: str) -> None:
    storage = open_storage(storage_uri)
    committer = Committer(storage, NS, JOB, 0)
    commit(committer, 1, {"m": 1})
    commit(committer, 2, {"m": 2})
    upload(storage, 3, {"m": 3})  # uploaded, never committed
    storage.put_bytes(f"{PREFIX}/metrics/attempt-0/part-000000.jsonl", b'{"iteration": 1}\n')
    storage.put_bytes(
        f"{PREFIX}/metrics/attempt-0/part-000001.jsonl", b'{"iteration": 2, "metrics": {"a": 1}}\n'
    )
    storage.put_bytes(
        f"{PREFIX}/metrics/attempt-1/part-000007.jsonl", b'{"iteration": 9}\n'
    )  # another attempt
    state = recover(committer)
    assert [c.dir_name for c in state.checkpoints] == ["checkpoint_000001", "checkpoint_000002"]
    assert state.next_history_part == 2
    assert state.iteration == 2 and state.metrics == {"a": 1}


def test_a_later_attempt_rewriting_a_committed_iteration_gets_a_new_manifest(storage: Storage) -> None:
    """Attempt 1 resumed from an older checkpoint (the status lagged) and wrote iteration 2 again."""
    commit(Committer(storage, NS, JOB, attempt=0), 2, {"model.pt": 4})
    upload(storage, 2, {"model.pt": 6}, attempt=1)
    again = Committer(storage, NS, JOB, attempt=1).commit(candidate(2, {"model.pt": 6}), now=0.0)
    assert isinstance(again, CommittedCheckpoint)
    assert again.manifest.attempt == 1 and again.manifest.size_bytes == 6
    refused = Committer(storage, NS, JOB, attempt=1).commit(
        CommitCandidate(3, "checkpoint_000002", {"model.pt": 6}, {}, True), now=0.0
    )
    assert isinstance(refused, NotCommitted) and not refused.retry


def test_an_earlier_attempts_writes_never_touch_a_later_commit(storage: Storage) -> None:
    """Fencing: iteration 2 committed by attempt 1; a rank and the coordinator of attempt 0 that
    are still alive write iteration 2 again. The committed files and manifest do not change."""
    committed = commit(Committer(storage, NS, JOB, attempt=1), 2, {"model.pt": 6})
    before = {key: storage.get_bytes(key) for key in keys(storage)}
    storage.put_bytes(f"{PREFIX}/checkpoint_000002/attempt-0/model.pt", b"zombie")  # the zombie rank
    zombie = Committer(storage, NS, JOB, attempt=0).commit(candidate(2, {"model.pt": 6}), now=0.0)
    assert isinstance(zombie, NotCommitted) and not zombie.retry
    assert "attempt 1 committed" in zombie.reason
    after = {key: storage.get_bytes(key) for key in keys(storage) if "/attempt-0/" not in key}
    assert after == before
    assert recover(Committer(storage, NS, JOB, 2)).checkpoints[-1].manifest == committed.manifest


def test_the_manifest_records_each_files_checksum_and_data_directory(storage: Storage) -> None:
    upload(storage, 1, {"model.pt": 3}, attempt=4)
    digest = "ab" * 32
    outcome = Committer(storage, NS, JOB, attempt=4).commit(
        CommitCandidate(1, "checkpoint_000001", {"model.pt": 3}, {}, True, {"model.pt": digest}), now=0.0
    )
    assert isinstance(outcome, CommittedCheckpoint)
    assert outcome.manifest.data_dir == "attempt-4"
    assert [(f.path, f.sha256) for f in outcome.manifest.files] == [("model.pt", digest)]
    assert outcome.data_key == f"{PREFIX}/checkpoint_000001/attempt-4"
