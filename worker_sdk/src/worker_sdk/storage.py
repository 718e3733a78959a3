"""Object storage for checkpoints and metric history: S3 (boto3) or a filesystem.

Both backends address objects by a *key* relative to the storage root URI
(``s3://bucket/prefix`` or ``file:///path``), with ``/`` as separator. The SDK uploads
checkpoint files through this module and the coordinator commits, lists and deletes them
through it, so both sides agree on the layout by construction.

Uploads return the SHA-256 of the bytes they sent, computed while sending (not by reading the
object back): the checkpoint manifest records it, and readers verify what they download.

Retries: botocore retries each request a few times; on top of that every operation here
retries with exponential backoff until ``retry_budget_seconds`` is spent, so a storage outage
of seconds to minutes is ridden out and a longer one ends in :class:`StorageUnavailableError`
that names the operation. (A retry library would add a dependency the SDK must not have.)
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import queue
import random
import shutil
import tempfile
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlparse

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

T = TypeVar("T")

DEFAULT_RETRY_BUDGET_SECONDS = 120.0
_MiB = 1024 * 1024
_MAX_PARTS = 10_000  # S3's limit on the parts of one upload


class StorageError(Exception):
    """A storage operation failed for a reason retrying does not fix (bad URI, no such bucket)."""


class StorageUnavailableError(StorageError):
    """Storage could not be reached within the retry budget."""


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int


def check_relative_key(key: str) -> str:
    """Return ``key`` normalised, or raise ValueError if it is absolute or escapes its root."""
    if not key or key.startswith("/") or "\\" in key or "\x00" in key:
        raise ValueError(f"invalid storage key {key!r}: must be a relative path")
    parts = PurePosixPath(key).parts
    if any(part in ("..", ".") for part in parts):
        raise ValueError(f"invalid storage key {key!r}: '.' and '..' are not allowed")
    return "/".join(parts)


def join_key(*parts: str) -> str:
    return "/".join(part.strip("/") for part in parts if part.strip("/"))


class Storage(ABC):
    """A storage root. Keys are relative to it; ``uri_for`` gives the absolute URI."""

    def __init__(self, uri: str, *, retry_budget_seconds: float = DEFAULT_RETRY_BUDGET_SECONDS) -> None:
        self.uri = uri.rstrip("/")
        self.retry_budget_seconds = retry_budget_seconds

    def uri_for(self, key: str) -> str:
        return f"{self.uri}/{key}" if key else self.uri

    def key_for(self, uri: str) -> str:
        """The key of an absolute URI under this root (inverse of ``uri_for``)."""
        uri = uri.rstrip("/")
        if uri == self.uri:
            return ""
        if not uri.startswith(self.uri + "/"):
            raise StorageError(f"{uri} is not under storage root {self.uri}")
        return uri[len(self.uri) + 1 :]

    # -- the operations every backend implements -----------------------------------------
    @abstractmethod
    def _upload_file(self, local_path: Path, key: str) -> str:
        """Store the file; return the hex SHA-256 of the bytes sent."""

    @abstractmethod
    def _put_bytes(self, key: str, data: bytes) -> None: ...

    @abstractmethod
    def _get_bytes(self, key: str) -> bytes | None: ...

    @abstractmethod
    def _list(self, prefix: str) -> list[StoredObject]: ...

    @abstractmethod
    def _delete(self, keys: Sequence[str]) -> None: ...

    @abstractmethod
    def _download_file(self, key: str, local_path: Path) -> None: ...

    # -- the public API: each call retried within the budget ---------------------------------
    def upload_file(self, local_path: Path, key: str) -> str:
        """Upload one file; the hex SHA-256 of what was sent (of the try that succeeded)."""
        key = check_relative_key(key)
        return self._retrying(
            f"upload {local_path} to {self.uri_for(key)}", self._upload_file, local_path, key
        )

    def upload_files(self, files: Iterable[tuple[Path, str]], *, max_workers: int = 8) -> dict[str, str]:
        """Upload (local path, key) pairs in parallel; the first failure is raised. Returns
        key -> hex SHA-256 of the bytes sent."""
        pairs = list(files)
        if not pairs:
            return {}
        with ThreadPoolExecutor(max_workers=min(max_workers, len(pairs))) as pool:
            futures = [(key, pool.submit(self.upload_file, path, key)) for path, key in pairs]
            return {key: future.result() for key, future in futures}

    def put_bytes(self, key: str, data: bytes) -> None:
        """Write a whole object; readers see the old or the new content, never a mix."""
        key = check_relative_key(key)
        self._retrying(f"write {self.uri_for(key)}", self._put_bytes, key, data)

    def get_bytes(self, key: str) -> bytes | None:
        """The object's content, or None when it does not exist."""
        key = check_relative_key(key)
        return self._retrying(f"read {self.uri_for(key)}", self._get_bytes, key)

    def list_objects(self, prefix: str = "") -> list[StoredObject]:
        """Every object under ``prefix`` (a directory-like prefix), recursively, sorted by key."""
        objects = self._retrying(f"list {self.uri_for(prefix)}", self._list, prefix)
        return sorted(objects, key=lambda obj: obj.key)

    def list_dirs(self, prefix: str = "") -> list[str]:
        """The names of the immediate "subdirectories" under ``prefix``."""
        base = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
        relative = [obj.key[len(base) :] for obj in self.list_objects(prefix)]
        return sorted({key.split("/", 1)[0] for key in relative if "/" in key})

    def delete(self, keys: Sequence[str]) -> None:
        keys = [check_relative_key(key) for key in keys]
        if keys:
            self._retrying(f"delete {len(keys)} objects under {self.uri}", self._delete, list(keys))

    def delete_prefix(self, prefix: str) -> None:
        self.delete([obj.key for obj in self.list_objects(prefix)])

    def download_file(self, key: str, local_path: Path) -> None:
        key = check_relative_key(key)
        local_path.parent.mkdir(parents=True, exist_ok=True)
        self._retrying(f"download {self.uri_for(key)}", self._download_file, key, local_path)

    def download_files(self, files: Iterable[tuple[str, Path]], *, max_workers: int = 8) -> None:
        pairs = list(files)
        if not pairs:
            return
        with ThreadPoolExecutor(max_workers=min(max_workers, len(pairs))) as pool:
            for future in [pool.submit(self.download_file, key, path) for key, path in pairs]:
                future.result()

    def _retrying(self, what: str, operation: Callable[..., T], *args: object) -> T:
        deadline = time.monotonic() + self.retry_budget_seconds
        delay = 0.2
        while True:
            try:
                return operation(*args)
            except (StorageError, ValueError):
                raise  # a bad key or URI: retrying cannot help
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as exc:
                raise StorageError(f"cannot {what}: {exc}") from exc
            except Exception as exc:
                if _is_permanent(exc):
                    raise StorageError(f"cannot {what}: {exc}") from exc
                if time.monotonic() + delay > deadline:
                    raise StorageUnavailableError(
                        f"cannot {what}: storage unavailable for {self.retry_budget_seconds:.0f}s: {exc}"
                    ) from exc
                time.sleep(delay * random.uniform(0.5, 1.0))  # jitter: ranks do not retry in lockstep
                delay = min(delay * 2, 10.0)


def _is_permanent(exc: Exception) -> bool:
    """Errors that no amount of retrying fixes: wrong bucket, wrong credentials, bad request."""
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        return code in {"NoSuchBucket", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied"} or (
            400 <= status < 500 and status not in (408, 429)
        )
    return False


class FileStorage(Storage):
    """A directory on a filesystem (local disk or a volume the pod mounts)."""

    def __init__(self, uri: str, *, retry_budget_seconds: float = DEFAULT_RETRY_BUDGET_SECONDS) -> None:
        super().__init__(uri, retry_budget_seconds=retry_budget_seconds)
        parsed = urlparse(self.uri)
        self.root = Path(parsed.path if parsed.scheme == "file" else self.uri)

    def _path(self, key: str) -> Path:
        return self.root / check_relative_key(key) if key else self.root

    def _upload_file(self, local_path: Path, key: str) -> str:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        # Copy to a temporary name and rename: a reader never sees a half-written file.
        digest = hashlib.sha256()
        with tempfile.NamedTemporaryFile(dir=target.parent, prefix=".tmp-", delete=False) as tmp:
            tmp_path = Path(tmp.name)
            try:
                with open(local_path, "rb") as source:
                    while chunk := source.read(_MiB):
                        digest.update(chunk)
                        tmp.write(chunk)
            except BaseException:
                tmp.close()
                tmp_path.unlink(missing_ok=True)
                raise
        try:
            tmp_path.replace(target)
        except BaseException:
            tmp_path.unlink(missing_ok=True)
            raise
        return digest.hexdigest()

    def _put_bytes(self, key: str, data: bytes) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target.parent, prefix=".tmp-", delete=False) as tmp:
            tmp.write(data)
            tmp.flush()
            os.fsync(tmp.fileno())
        Path(tmp.name).replace(target)

    def _get_bytes(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None

    def _list(self, prefix: str) -> list[StoredObject]:
        base = self._path(prefix.strip("/"))
        if not base.is_dir():
            return []
        found = []
        for path in base.rglob("*"):
            if path.is_file() and not path.name.startswith(".tmp-"):
                found.append(StoredObject(path.relative_to(self.root).as_posix(), path.stat().st_size))
        return found

    def _delete(self, keys: Sequence[str]) -> None:
        for key in keys:
            path = self._path(key)
            path.unlink(missing_ok=True)
            # Remove directories the deletion emptied, up to the root.
            parent = path.parent
            while parent != self.root and parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()
                parent = parent.parent

    def _download_file(self, key: str, local_path: Path) -> None:
        shutil.copyfile(self._path(key), local_path)


def _read_exactly(source: io.FileIO, buffer: bytearray, path: Path) -> None:
    """Fill ``buffer`` from ``source`` (a read may return less than asked)."""
    with memoryview(buffer) as view:
        filled = 0
        while filled < len(view):
            read = source.readinto(view[filled:])
            if not read:
                raise StorageError(f"{path} became shorter while it was uploaded")
            filled += read


def _size_or_zero(path: Path) -> int:
    """A file's size; 0 when it cannot be read (its upload then fails with the reason)."""
    try:
        return path.stat().st_size
    except OSError:
        return 0


class S3Storage(Storage):
    """An S3 bucket and prefix. A file below ``multipart_threshold`` is one PutObject, many of
    them at once (``small_file_workers``); a larger one is a multipart upload of parts of that
    size (more when the file would need over 10 000), ``max_concurrency`` of them in flight.

    Memory: a large file holds at most ``max_concurrency + 1`` parts in memory (7 x 16 MiB =
    112 MiB by default), whatever its size.

    Integrity of checkpoint data, and what it costs: each upload hashes what it sends with
    SHA-256 for the manifest, which every reader verifies. Over plain HTTP botocore would also
    sign the SHA-256 of every request body (SigV4 payload signing), a second pass over every byte
    (0.55 CPU s per GiB here, on the cores the store needs). The data requests (PutObject of a
    small file, UploadPart) are sent with ``UNSIGNED-PAYLOAD`` instead, as botocore itself does
    over HTTPS, carrying the CRC32 checksum header that S3 and SeaweedFS verify against the body
    (a mismatch is refused with ``BadDigest``); the signed manifest's SHA-256 then authenticates the
    data end to end. Every other request (the manifest, listings, deletions, the multipart
    upload's start and completion) stays fully signed. Only where checksums are on
    (``request_checksum_calculation`` ``when_supported``, botocore's default) and unless
    ``sign_data_payloads`` is set: without a checksum header the signature is the only check in
    transit.
    """

    def __init__(
        self,
        uri: str,
        *,
        endpoint_url: str | None = None,
        retry_budget_seconds: float = DEFAULT_RETRY_BUDGET_SECONDS,
        max_concurrency: int = 6,
        multipart_threshold: int = 16 * _MiB,
        small_file_workers: int = 16,
        sign_data_payloads: bool = False,
    ) -> None:
        super().__init__(uri, retry_budget_seconds=retry_budget_seconds)
        parsed = urlparse(self.uri)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise StorageError(f"invalid S3 URI {uri!r}: expected s3://bucket[/prefix]")
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        self.endpoint_url = endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or None
        self.max_concurrency = max_concurrency
        self.multipart_threshold = multipart_threshold
        self.small_file_workers = small_file_workers
        self.sign_data_payloads = sign_data_payloads
        self._client: S3Client | None = None
        self._data: S3Client | None = None
        self._transfer_config: object | None = None

    def _new_client(self, *, sign_payloads: bool = True) -> S3Client:
        import boto3
        from botocore.config import Config

        # A session of its own: boto3's default session caches the credentials it found first.
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
            config=Config(
                retries={"mode": "standard", "max_attempts": 3},
                # Small files and one large file's parts in flight together, each on a
                # connection of its own (a full pool would drop connections and log it).
                max_pool_connections=self.small_file_workers + self.max_concurrency,
                connect_timeout=5,
                read_timeout=60,
                # botocore's default, or unsigned bodies (the class's docstring).
                s3=None if sign_payloads else {"payload_signing_enabled": False},
            ),
        )

    @property
    def client(self) -> S3Client:
        # Created lazily: constructing a boto3 client costs tens of milliseconds.
        if self._client is None:
            from boto3.s3.transfer import TransferConfig

            self._client = self._new_client()
            self._transfer_config = TransferConfig(
                multipart_threshold=self.multipart_threshold,
                multipart_chunksize=self.multipart_threshold,
                max_concurrency=self.max_concurrency,
                use_threads=True,
            )
        return self._client

    @property
    def _data_client(self) -> S3Client:
        """The client for the requests that carry checkpoint data (the class's docstring says why
        their bodies go unsigned, and when they do not)."""
        if self._data is None:
            client = self.client
            if self.sign_data_payloads or not _checksums_on(client):
                self._data = client
            else:
                self._data = self._new_client(sign_payloads=False)
        return self._data

    def _object_key(self, key: str) -> str:
        return join_key(self.prefix, check_relative_key(key)) if key else self.prefix

    def upload_files(
        self, files: Iterable[tuple[Path, str]], *, max_workers: int | None = None
    ) -> dict[str, str]:
        """Upload (local path, key) pairs: small files in parallel while the large ones go one at
        a time, each in parallel parts; the first failure is raised. Returns key -> SHA-256."""
        digests: dict[str, str] = {}
        small: list[tuple[Path, str]] = []
        large: list[tuple[Path, str]] = []
        for path, key in files:
            (large if _size_or_zero(path) >= self.multipart_threshold else small).append((path, key))
        _ = self._data_client  # created once, before the threads that share it
        workers = min(max_workers or self.small_file_workers, len(small))
        if not workers:
            for path, key in large:
                digests[key] = self.upload_file(path, key)
            return digests
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = [(key, pool.submit(self.upload_file, path, key)) for path, key in small]
            try:
                for path, key in large:
                    digests[key] = self.upload_file(path, key)
                for key, future in futures:
                    digests[key] = future.result()
            except BaseException:
                # The checkpoint cannot be complete: do not start the files not begun yet.
                for _, future in futures:
                    future.cancel()
                raise
        return digests

    def _upload_file(self, local_path: Path, key: str) -> str:
        client = self._data_client
        if local_path.stat().st_size < self.multipart_threshold:
            # One request: a multipart upload's three kinds of request and its threads cost more
            # than the PUT of a small file itself. The body is hashed as it is (the bytes sent).
            data = local_path.read_bytes()
            client.put_object(Bucket=self.bucket, Key=self._object_key(key), Body=data)
            return hashlib.sha256(data).hexdigest()
        return self._upload_in_parts(local_path, key)

    def _upload_in_parts(self, local_path: Path, key: str) -> str:
        """A multipart upload of our own rather than boto3's transfer manager, for what it cost
        (measured in bench/RESULTS.md, "Issue 16 goal 3"): handed a stream (the only way to hash
        the bytes it sends), the manager reads every part into fresh memory and wraps it in file
        objects that botocore then reads 16 KiB at a time through Python, to sign, to checksum and
        to send. Here each part is read once into a reused buffer, hashed there (so the SHA-256 is
        of exactly the bytes sent) and handed to botocore as a bytearray, which it signs and
        checksums in C and sends with one ``sendall``. Requests, signing, checksums (CRC32 as the
        manager sends them) and retries of each request remain botocore's; a failure aborts the
        upload, and ``upload_file`` retries the whole file within the budget."""
        client = self.client
        object_key = self._object_key(key)
        checksum: dict[str, Any] = {"ChecksumAlgorithm": "CRC32"} if _checksums_on(client) else {}
        with open(local_path, "rb", buffering=0) as source:
            size = os.fstat(source.fileno()).st_size
            part_size = max(self.multipart_threshold, -(-size // _MAX_PARTS))
            upload_id = client.create_multipart_upload(Bucket=self.bucket, Key=object_key, **checksum)[
                "UploadId"
            ]
            try:
                digest, parts = self._send_parts(
                    source, local_path, size, part_size, object_key, upload_id, checksum
                )
                client.complete_multipart_upload(
                    Bucket=self.bucket, Key=object_key, UploadId=upload_id, MultipartUpload={"Parts": parts}
                )
            except BaseException:
                with contextlib.suppress(Exception):  # the failure that got here says more
                    client.abort_multipart_upload(Bucket=self.bucket, Key=object_key, UploadId=upload_id)
                raise
        return digest

    def _send_parts(
        self,
        source: io.FileIO,
        local_path: Path,
        size: int,
        part_size: int,
        object_key: str,
        upload_id: str,
        checksum: dict[str, Any],
    ) -> tuple[str, list[CompletedPartTypeDef]]:
        """Read, hash and send the parts in order, ``max_concurrency`` in flight; the SHA-256 of
        the whole file and the parts to complete the upload with."""
        client = self._data_client
        count = -(-size // part_size)
        digest = hashlib.sha256()
        free: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
        for _ in range(min(self.max_concurrency + 1, count)):  # the memory bound
            free.put(bytearray(part_size))
        failed = threading.Event()

        def send(number: int, body: bytearray) -> CompletedPartTypeDef:
            try:
                response = client.upload_part(
                    Bucket=self.bucket,
                    Key=object_key,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=body,  # type: ignore[arg-type]  # botocore takes a bytearray as it is
                    **checksum,
                )
            except BaseException:
                failed.set()
                raise
            finally:
                free.put(body)
            part: CompletedPartTypeDef = {"PartNumber": number, "ETag": response["ETag"]}
            if "ChecksumCRC32" in response:
                part["ChecksumCRC32"] = response["ChecksumCRC32"]
            return part

        with ThreadPoolExecutor(
            max_workers=min(self.max_concurrency, count), thread_name_prefix="trainjob-part"
        ) as pool:
            futures = []
            for number in range(1, count + 1):
                body = free.get()  # waits while max_concurrency + 1 parts are in memory
                if failed.is_set():
                    break  # the failed part's error is raised below
                length = min(part_size, size - (number - 1) * part_size)
                if len(body) != length:
                    del body[length:]  # the last part: shorter, and no part reuses its buffer
                _read_exactly(source, body, local_path)
                digest.update(body)  # releases the GIL: the parts in flight go on meanwhile
                futures.append(pool.submit(send, number, body))
            failure: BaseException | None = None
            for future in futures:
                failure = future.exception()  # waits; None when the part is stored
                if failure is not None:
                    break
            parts = [future.result() for future in futures] if failure is None else []
        if failure is not None:
            # Raised so that no frame it passes through holds it: this frame's traceback entry
            # would otherwise hold, through the failure (or a future holding it), the frame
            # itself, a cycle that kept the part buffers (the memory bound) alive until the
            # cyclic garbage collector ran, past a retry that allocates its own (bench/RESULTS.md,
            # "Issue 16 goal 3").
            futures.clear()
            try:
                raise failure
            finally:
                failure = future = None  # type: ignore[assignment]
        return digest.hexdigest(), parts

    def _put_bytes(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._object_key(key), Body=data)

    def _get_bytes(self, key: str) -> bytes | None:
        client = self.client
        try:
            response = client.get_object(Bucket=self.bucket, Key=self._object_key(key))
        except client.exceptions.NoSuchKey:
            return None
        return response["Body"].read()

    def _list(self, prefix: str) -> list[StoredObject]:
        object_prefix = self._object_key(prefix.strip("/"))
        object_prefix = f"{object_prefix}/" if object_prefix else ""
        strip = f"{self.prefix}/" if self.prefix else ""
        found = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=object_prefix):
            for item in page.get("Contents", []):
                found.append(StoredObject(item["Key"][len(strip) :], int(item["Size"])))
        return found

    def _delete(self, keys: Sequence[str]) -> None:
        for start in range(0, len(keys), 1000):  # DeleteObjects takes at most 1000 keys
            batch = [{"Key": self._object_key(key)} for key in keys[start : start + 1000]]
            self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})  # type: ignore[typeddict-item]

    def _download_file(self, key: str, local_path: Path) -> None:
        client = self.client
        client.download_file(
            self.bucket,
            self._object_key(key),
            str(local_path),
            Config=self._transfer_config,  # type: ignore[arg-type]
        )


def _checksums_on(client: S3Client) -> bool:
    """Whether botocore sends a CRC32 checksum header with every upload (its default since 1.36;
    the attribute is newer than botocore-stubs), as the transfer manager's requests carry."""
    return getattr(client.meta.config, "request_checksum_calculation", None) == "when_supported"


def open_storage(
    uri: str, *, endpoint_url: str | None = None, retry_budget_seconds: float = DEFAULT_RETRY_BUDGET_SECONDS
) -> Storage:
    """The backend for ``uri``: ``s3://bucket/prefix``, ``file:///path`` or a plain path."""
    scheme = urlparse(uri).scheme
    if scheme == "s3":
        return S3Storage(uri, endpoint_url=endpoint_url, retry_budget_seconds=retry_budget_seconds)
    if scheme in ("file", ""):
        if scheme == "" and not uri.startswith("/"):
            uri = str(Path(uri).resolve())
        return FileStorage(uri, retry_budget_seconds=retry_budget_seconds)
    raise StorageError(f"unsupported storage URI {uri!r}: use s3://bucket/prefix or file:///path")
