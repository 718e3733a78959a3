"""The storage layer on real SeaweedFS and on a directory: same tests, both backends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from trainjob_operator.local.seaweedfs import SeaweedFS
from worker_sdk.storage import S3Storage, Storage, StorageError, StorageUnavailableError, open_storage


def test_put_get_list_delete_round_trip(storage: Storage) -> None:
    storage.put_bytes("ns/job/checkpoint_000001/a.bin", b"a" * 10)
    storage.put_bytes("ns/job/checkpoint_000001/sub/b.bin", b"b" * 3)
    storage.put_bytes("ns/job/checkpoint_000002/c.bin", b"")

    assert storage.get_bytes("ns/job/checkpoint_000001/a.bin") == b"a" * 10
    assert storage.get_bytes("ns/job/missing") is None
    assert [(o.key, o.size) for o in storage.list_objects("ns/job/checkpoint_000001")] == [
        ("ns/job/checkpoint_000001/a.bin", 10),
        ("ns/job/checkpoint_000001/sub/b.bin", 3),
    ]
    assert storage.list_dirs("ns/job") == ["checkpoint_000001", "checkpoint_000002"]

    storage.delete_prefix("ns/job/checkpoint_000001")
    assert storage.list_objects("ns/job/checkpoint_000001") == []
    assert storage.list_dirs("ns/job") == ["checkpoint_000002"]


def test_upload_and_download_files_in_parallel(storage: Storage, tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    payloads = {f"shard-{i}.pt": bytes([i]) * (1000 + i) for i in range(12)}
    for name, data in payloads.items():
        (source / name).write_bytes(data)
    big = source / "big.bin"
    big.write_bytes(b"\x01\x02" * (9 * 1024 * 1024))  # 18 MiB: multipart on S3

    storage.upload_files([(source / name, f"d/{name}") for name in [*payloads, "big.bin"]])
    target = tmp_path / "dst"
    storage.download_files([(f"d/{name}", target / name) for name in [*payloads, "big.bin"]])

    for name, data in payloads.items():
        assert (target / name).read_bytes() == data
    assert (target / "big.bin").read_bytes() == big.read_bytes()


@pytest.mark.parametrize("key", ["../escape", "/abs", "a/../../b", "a\\b", ""])
def test_keys_that_escape_the_root_are_refused(storage: Storage, key: str) -> None:
    with pytest.raises(ValueError, match="invalid storage key"):
        storage.put_bytes(key, b"x")


def test_uri_and_key_are_inverse(storage: Storage) -> None:
    uri = storage.uri_for("ns/job/checkpoint_000003")
    assert uri.startswith(storage.uri + "/")
    assert storage.key_for(uri) == "ns/job/checkpoint_000003"
    with pytest.raises(StorageError, match="not under storage root"):
        storage.key_for("s3://elsewhere/x")


def test_unsupported_scheme_is_refused() -> None:
    with pytest.raises(StorageError, match="unsupported storage URI 'gs://b/p'"):
        open_storage("gs://b/p")


def test_unreachable_s3_ends_in_storage_unavailable_within_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    from trainjob_operator.local.ports import free_port

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    storage = open_storage(
        "s3://bucket/p", endpoint_url=f"http://127.0.0.1:{free_port()}", retry_budget_seconds=1.5
    )
    with pytest.raises(
        StorageUnavailableError, match=r"cannot write s3://bucket/p/k: storage unavailable for 2s"
    ):
        storage.put_bytes("k", b"x")


def test_wrong_credentials_fail_at_once_with_the_reason(
    seaweedfs: SeaweedFS, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "nobody")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    storage = open_storage(f"s3://{seaweedfs.bucket}/p", endpoint_url=seaweedfs.endpoint)
    with pytest.raises(StorageError, match="InvalidAccessKeyId") as raised:
        storage.put_bytes("k", b"x")
    assert not isinstance(raised.value, StorageUnavailableError)


def test_small_files_go_as_one_put_each_and_large_ones_in_parts(
    seaweedfs: SeaweedFS, s3_env: dict[str, str], tmp_path: Path
) -> None:
    # 5 MiB is the smallest part S3 allows: a 6 MiB file is multipart, a 2 MiB one is not.
    storage = S3Storage(f"s3://{seaweedfs.bucket}/parts", multipart_threshold=5 * 1024 * 1024)
    sizes = {"tiny.json": 100, "medium.bin": 2 * 1024 * 1024, "large.bin": 6 * 1024 * 1024}
    for name, size in sizes.items():
        (tmp_path / name).write_bytes(bytes(range(256)) * (size // 256) + b"x" * (size % 256))
    calls: list[tuple[str, str]] = []

    def record_call(params: dict[str, Any], model: Any, **_: Any) -> None:
        calls.append((model.name, params["Key"].rsplit("/", 1)[-1]))

    for client in {storage.client, storage._data_client}:  # the data requests have a client of their own
        client.meta.events.register("before-parameter-build.s3", record_call)
    storage.upload_files([(tmp_path / name, f"d/{name}") for name in sizes])

    assert sorted(c for c in calls if c[1] != "large.bin") == [
        ("PutObject", "medium.bin"),
        ("PutObject", "tiny.json"),
    ]
    assert {op for op, key in calls if key == "large.bin"} == {
        "CreateMultipartUpload",
        "UploadPart",
        "CompleteMultipartUpload",
    }
    for name in sizes:
        assert storage.get_bytes(f"d/{name}") == (tmp_path / name).read_bytes()


def test_a_missing_file_fails_the_upload_and_says_which(storage: Storage, tmp_path: Path) -> None:
    (tmp_path / "present.bin").write_bytes(b"p")
    with pytest.raises(StorageError, match=r"cannot upload .*absent\.bin"):
        storage.upload_files([(tmp_path / "present.bin", "d/present.bin"), (tmp_path / "absent.bin", "d/a")])


def test_a_large_file_in_more_parts_than_buffers_is_stored_whole_with_the_sha256_of_its_bytes(
    seaweedfs: SeaweedFS, s3_env: dict[str, str], tmp_path: Path
) -> None:
    import hashlib
    import os

    # 5 MiB parts, 2 in flight (3 buffers, reused): 5 parts, the last one shorter.
    storage = S3Storage(
        f"s3://{seaweedfs.bucket}/reuse", multipart_threshold=5 * 1024 * 1024, max_concurrency=2
    )
    data = os.urandom(23 * 1024 * 1024 + 12345)
    (tmp_path / "shard.bin").write_bytes(data)
    parts: list[int] = []

    def record_part(params: dict[str, Any], **_: Any) -> None:
        parts.append(len(params["Body"]))

    storage._data_client.meta.events.register("before-parameter-build.s3.UploadPart", record_part)
    digest = storage.upload_files([(tmp_path / "shard.bin", "d/shard.bin")])

    assert digest == {"d/shard.bin": hashlib.sha256(data).hexdigest()}
    assert sorted(parts) == [12345 + 3 * 1024 * 1024, *[5 * 1024 * 1024] * 4]
    assert storage.get_bytes("d/shard.bin") == data


def failing_at_part_two(seaweedfs: SeaweedFS, prefix: str, tmp_path: Path) -> S3Storage:
    """A storage under `prefix` whose multipart upload fails at part 2 (injected before the
    request is built), and a 16 MiB `shard.bin` in `tmp_path` to upload (in 5 MiB parts)."""
    storage = S3Storage(f"s3://{seaweedfs.bucket}/{prefix}", multipart_threshold=5 * 1024 * 1024)
    (tmp_path / "shard.bin").write_bytes(b"\x07" * (16 * 1024 * 1024))

    def fail_part_two(params: dict[str, Any], **_: Any) -> None:
        if params["PartNumber"] == 2:
            raise StorageError("part 2 refused (injected)")

    storage._data_client.meta.events.register("before-parameter-build.s3.UploadPart", fail_part_two)
    return storage


def test_a_failed_part_aborts_the_upload_and_leaves_no_object(
    seaweedfs: SeaweedFS, s3_env: dict[str, str], tmp_path: Path
) -> None:
    storage = failing_at_part_two(seaweedfs, "abort", tmp_path)
    with pytest.raises(StorageError, match=r"part 2 refused \(injected\)"):
        storage.upload_file(tmp_path / "shard.bin", "d/shard.bin")

    assert storage.list_objects("d") == []
    pending = storage.client.list_multipart_uploads(Bucket=seaweedfs.bucket, Prefix="abort/")
    assert pending.get("Uploads", []) == []


def test_data_bodies_go_unsigned_with_a_crc32_the_store_checks_and_the_rest_signed(
    seaweedfs: SeaweedFS, s3_env: dict[str, str], tmp_path: Path
) -> None:
    import base64
    import hashlib
    import os
    import zlib

    from botocore.exceptions import ClientError

    storage = S3Storage(f"s3://{seaweedfs.bucket}/signing", multipart_threshold=5 * 1024 * 1024)
    small, large = os.urandom(1000), os.urandom(6 * 1024 * 1024)
    (tmp_path / "small.bin").write_bytes(small)
    (tmp_path / "large.bin").write_bytes(large)
    sent: list[tuple[str, str, bool]] = []  # operation, the body's hash as signed, CRC32 header sent

    def record(request: Any, event_name: str, **_: Any) -> None:
        headers = {
            name.lower(): value.decode() if isinstance(value, bytes) else value
            for name, value in request.headers.items()
        }
        sent.append(
            (
                event_name.rsplit(".", 1)[-1],
                headers["x-amz-content-sha256"],
                "x-amz-checksum-crc32" in headers,
            )
        )

    for client in {storage.client, storage._data_client}:
        client.meta.events.register("before-send.s3", record)
    digests = storage.upload_files(
        [(tmp_path / "small.bin", "d/small.bin"), (tmp_path / "large.bin", "d/large.bin")]
    )
    storage.put_bytes("d/manifest.json", b"{}")

    assert digests == {
        "d/small.bin": hashlib.sha256(small).hexdigest(),
        "d/large.bin": hashlib.sha256(large).hexdigest(),
    }
    assert storage.get_bytes("d/small.bin") == small and storage.get_bytes("d/large.bin") == large
    manifest_hash = hashlib.sha256(b"{}").hexdigest()
    data = [(op, signed, crc) for op, signed, crc in sent if op in ("PutObject", "UploadPart")]
    assert sorted(data) == sorted(
        [
            ("PutObject", "UNSIGNED-PAYLOAD", True),  # the small file: not hashed once more to sign,
            ("UploadPart", "UNSIGNED-PAYLOAD", True),  # each carrying a CRC32 the store verifies
            ("UploadPart", "UNSIGNED-PAYLOAD", True),
            ("PutObject", manifest_hash, True),  # the manifest: signed
        ]
    ), sent
    starts_and_ends = [signed for op, signed, _ in sent if op.endswith("MultipartUpload")]
    assert len(starts_and_ends) == 2 and "UNSIGNED-PAYLOAD" not in starts_and_ends

    # What stands in for the signature in transit: a body that does not match its CRC32 is refused.
    body = b"checkpoint bytes"
    wrong = base64.b64encode((zlib.crc32(body) ^ 1).to_bytes(4, "big")).decode()
    with pytest.raises(ClientError, match="BadDigest"):
        storage._data_client.put_object(
            Bucket=seaweedfs.bucket, Key="signing/x", Body=body, ChecksumCRC32=wrong
        )


def test_a_failed_upload_frees_its_part_buffers_before_anything_else_runs(
    seaweedfs: SeaweedFS, s3_env: dict[str, str], tmp_path: Path
) -> None:
    """The part buffers are the upload's memory bound: a failed attempt's must be gone when the
    retry allocates its own, not left to the cyclic garbage collector (the failure's traceback
    holds the frame that holds them)."""
    import gc
    import types

    storage = failing_at_part_two(seaweedfs, "freed", tmp_path)
    gc.collect()
    gc.disable()
    try:
        try:
            storage.upload_file(tmp_path / "shard.bin", "d/shard.bin")
        except StorageError:
            pass
        else:
            pytest.fail("the injected failure was not raised")
        holding = [
            frame
            for frame in gc.get_objects()
            # type(), not isinstance(): that reads __class__, which some objects (torch's
            # deprecated aliases) answer with a warning.
            if type(frame) is types.FrameType and frame.f_code is S3Storage._send_parts.__code__
        ]
    finally:
        gc.enable()
    assert holding == []
