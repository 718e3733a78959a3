"""``Checkpoint``: a directory of files, local (to report) or committed in storage (to resume from).

A committed checkpoint is read through its manifest only: ``as_directory``/``to_directory``
download exactly the files the manifest lists, so files a dead attempt left in the same
directory never leak into a resumed run.

A third kind is *staged*: a directory the SDK itself is still writing in the background from
state copied into memory (``worker_sdk.torch.StateStager``), which ``report`` takes over once
written (:class:`StagedDirectory`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import stat
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from worker_sdk._layout import verify_download
from worker_sdk.errors import CheckpointCorruptError
from worker_sdk.protocol import MANIFEST_NAME, CheckpointFile, CheckpointManifest, ProtocolError
from worker_sdk.storage import Storage, check_relative_key, join_key, open_storage

log = logging.getLogger("worker_sdk")


class Checkpoint:
    """A checkpoint directory. Make one with :meth:`from_directory`; ``get_checkpoint()`` returns
    committed ones."""

    def __init__(
        self,
        *,
        path: Path | None,
        uri: str,
        manifest: CheckpointManifest | None,
        verified: Path | None = None,
        staged: StagedDirectory | None = None,
    ) -> None:
        self._path = path
        self._uri = uri
        self._manifest = manifest
        # A stored checkpoint already downloaded and verified (get_checkpoint does that).
        self._verified = verified
        # A directory the SDK is writing in the background (worker_sdk.torch.StateStager).
        self._staged = staged

    @classmethod
    def from_directory(cls, path: str | os.PathLike[str]) -> Checkpoint:
        """A local directory to pass to ``report(checkpoint=...)``; it must exist."""
        directory = require_directory(Path(path))
        return cls(path=directory, uri=directory.as_uri(), manifest=None)

    @property
    def uri(self) -> str:
        """Where the checkpoint lives: ``s3://…``/``file://…`` in storage, or the local directory's URI."""
        return self._uri

    @property
    def path(self) -> Path | None:
        """The local directory of a checkpoint made with :meth:`from_directory`; None for a stored
        or a staged one."""
        return self._path

    @property
    def staged(self) -> StagedDirectory | None:
        """The directory being written in the background, for a checkpoint made by
        ``worker_sdk.torch.StateStager``; None for the others."""
        return self._staged

    @property
    def manifest(self) -> CheckpointManifest | None:
        """A committed checkpoint's manifest; None for a local one."""
        return self._manifest

    def get_metadata(self) -> dict[str, Any]:
        """A committed checkpoint's manifest (iteration, attempt, metrics, files, committedAt);
        {} for a local one."""
        return self._manifest.to_json() if self._manifest else {}

    @contextmanager
    def as_directory(self) -> Iterator[str]:
        """The checkpoint as a local directory: a local one as is, a stored one downloaded to a
        temporary directory that is removed on exit."""
        if self._path is not None:
            yield str(self._path)
            return
        with tempfile.TemporaryDirectory(prefix="trainjob-checkpoint-") as temporary:
            self.to_directory(temporary)
            yield temporary

    def to_directory(self, path: str | os.PathLike[str] | None = None) -> str:
        """Copy (or download) the checkpoint's files into ``path`` (a new temporary directory if
        None) and return that path."""
        target = Path(path) if path is not None else Path(tempfile.mkdtemp(prefix="trainjob-checkpoint-"))
        target.mkdir(parents=True, exist_ok=True)
        if self._path is not None:
            shutil.copytree(self._path, target, dirs_exist_ok=True)
        elif self._staged is not None:
            shutil.copytree(self._staged.written_unreported(), target, dirs_exist_ok=True)
        elif self._verified is not None:
            shutil.copytree(self._verified, target, dirs_exist_ok=True)
        else:
            assert self._manifest is not None
            download_verified(open_storage(self._uri), "", self._uri, self._manifest, target)
        return str(target)

    def __repr__(self) -> str:
        return f"Checkpoint(uri={self._uri!r})"


class StagedDirectory:
    """A checkpoint directory the SDK writes in the background, from state already copied into
    memory, so that the training loop does not wait for the serialisation.

    It is the SDK's: ``report`` claims it (once; a second report of it is refused, as the first
    one's upload removes it) and removes it once stored; one never reported is removed when it is
    discarded (the stager stages the next state into the same buffers, or the checkpoint object is
    garbage collected).
    """

    def __init__(self, directory: Path, written: Future[Path], what: str) -> None:
        self.directory = directory
        self._written = written
        self._what = what
        self._lock = threading.Lock()
        self._state = "staged"  # then "reported" or "discarded", never back

    def claim(self) -> Future[Path]:
        """Take the directory over for a report: the future of its writing (the directory)."""
        with self._lock:
            self._check_usable()
            self._state = "reported"
        return self._written

    def written_unreported(self) -> Path:
        """The directory once written, for a copy of it: only before it is reported (its upload
        removes it)."""
        with self._lock:
            self._check_usable()
        return self._written.result()

    def wait_written(self) -> None:
        """Until the writing has ended (done or failed: whoever reports it hears how)."""
        # A failure is raised to whoever reported it; a discarded directory is gone anyway.
        with contextlib.suppress(Exception):
            self._written.result()

    def discard(self) -> None:
        """Give up a directory never reported: removed once its writing ends."""
        with self._lock:
            if self._state != "staged":
                return
            self._state = "discarded"
        self._written.add_done_callback(lambda _: shutil.rmtree(self.directory, ignore_errors=True))

    def _check_usable(self) -> None:
        if self._state == "reported":
            raise ValueError(
                f"{self._what} was already reported: a staged checkpoint is reported once (its upload "
                "removes it); stage the state again for another report"
            )
        if self._state == "discarded":
            raise ValueError(
                f"{self._what} was replaced by a later stage() before it was reported: the stager's "
                "buffers hold the newer state. Report each staged checkpoint before staging the next"
            )


def require_directory(path: Path) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"checkpoint directory {path} does not exist")
    if not path.is_dir():
        raise NotADirectoryError(f"checkpoint path {path} is not a directory")
    return path.resolve()


@dataclass(frozen=True)
class LocalFile:
    """A file of a checkpoint being reported: where it is, and its key under the checkpoint directory."""

    source: Path
    relative: str
    size: int

    def to_protocol(self) -> CheckpointFile:
        return CheckpointFile(self.relative, self.size)


def list_checkpoint_files(directory: Path) -> list[LocalFile]:
    """Every regular file under ``directory``, refusing what cannot be uploaded faithfully."""
    root = require_directory(directory)
    found: list[LocalFile] = []
    for current, dir_names, file_names in os.walk(root):
        here = Path(current)
        for name in dir_names:
            if (here / name).is_symlink():
                raise ValueError(
                    f"checkpoint directory {root} contains {(here / name).relative_to(root)}, a symlink to "
                    "a directory: checkpoints hold regular files only"
                )
        for name in sorted(file_names):
            path = here / name
            relative = path.relative_to(root).as_posix()
            if path.is_symlink():
                target = path.resolve()
                if not target.is_relative_to(root):
                    raise ValueError(
                        f"checkpoint file {relative} is a symlink to {target}, outside the checkpoint "
                        f"directory {root}: copy the file into the directory instead"
                    )
            info = path.stat()  # follows an in-directory symlink: its content is uploaded
            if not stat.S_ISREG(info.st_mode):
                raise ValueError(f"checkpoint file {relative} is not a regular file")
            if relative == MANIFEST_NAME:
                raise ValueError(f"{MANIFEST_NAME} is reserved for the manifest the commit writes")
            try:
                check_relative_key(relative)
            except ValueError as exc:
                raise ValueError(f"checkpoint file name {relative!r} cannot be stored: {exc}") from None
            found.append(LocalFile(path, relative, info.st_size))
    return found


def snapshot_checkpoint(files: list[LocalFile], staging_root: str | None) -> tuple[Path, list[LocalFile]]:
    """Copy the files to a fresh staging directory (a copy, not hard links: ``torch.save`` rewrites
    files in place, and the caller may delete its directory as soon as ``report`` returns)."""
    staging = Path(tempfile.mkdtemp(prefix="trainjob-staging-", dir=staging_root))
    try:
        copied = []
        for file in files:
            target = staging / file.relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(file.source, target)
            copied.append(LocalFile(target, file.relative, target.stat().st_size))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return staging, copied


def take_checkpoint(
    directory: Path, files: list[LocalFile], staging_root: str | None
) -> tuple[Path, list[LocalFile]]:
    """Take the reported directory over for a background upload whose caller gave it up
    (``delete_local_checkpoint_after_upload``): a rename beside it, O(1) whatever its size, leaving
    an empty directory in its place (what ``tempfile.TemporaryDirectory`` expects to remove).
    Where a rename cannot go (a symlink, another file system, no write access to the parent) the
    files are copied and the originals removed. Returns the staging directory and its files."""
    if not directory.is_symlink():
        try:
            staging = Path(tempfile.mkdtemp(prefix=".trainjob-staging-", dir=directory.parent))
        except OSError:
            staging = None
        if staging is not None:
            taken = staging / "checkpoint"
            try:
                directory.rename(taken)
            except OSError:
                shutil.rmtree(staging, ignore_errors=True)
            else:
                directory.mkdir(exist_ok=True)
                return staging, [LocalFile(taken / f.relative, f.relative, f.size) for f in files]
    staging, copied = snapshot_checkpoint(files, staging_root)
    empty_directory(directory)
    return staging, copied


def empty_directory(directory: Path) -> None:
    """Remove what ``directory`` holds and keep the directory itself."""
    for child in directory.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def read_manifest(storage: Storage, key: str) -> CheckpointManifest | None:
    """The manifest at ``key``, or None when there is none (not committed) or it is unreadable."""
    data = storage.get_bytes(key)
    if data is None:
        return None
    try:
        return CheckpointManifest.from_json(json.loads(data))
    except (ValueError, ProtocolError) as exc:
        log.warning("ignoring %s: not a valid checkpoint manifest: %s", storage.uri_for(key), exc)
        return None


def committed_checkpoint(uri: str, *, retry_budget_seconds: float) -> Checkpoint | None:
    """The checkpoint at ``uri`` if it is committed (its manifest exists), else None."""
    storage = open_storage(uri, retry_budget_seconds=retry_budget_seconds)
    manifest = read_manifest(storage, MANIFEST_NAME)
    if manifest is None:
        return None
    return Checkpoint(path=None, uri=storage.uri, manifest=manifest)


def download_verified(
    storage: Storage, dir_key: str, uri: str, manifest: CheckpointManifest, target: Path
) -> None:
    """Download exactly the files the manifest lists from its data directory into ``target``
    and verify them against it; raise :class:`CheckpointCorruptError` (removing what was
    downloaded) on any difference: a committed checkpoint never changes, so one that did is not
    loaded."""
    data_key = join_key(dir_key, manifest.data_dir)
    targets = [(join_key(data_key, f.path), target / f.path) for f in manifest.files]
    storage.download_files(targets)
    problems = verify_download(target, manifest)
    if problems:
        for _, path in targets:
            path.unlink(missing_ok=True)
        raise CheckpointCorruptError(
            f"committed checkpoint {uri} does not match its manifest: {'; '.join(problems[:5])}. "
            "A committed checkpoint never changes, so it is refused rather than loaded"
        )
