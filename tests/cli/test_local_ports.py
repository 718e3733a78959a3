"""Ports for the servers the local tools start, and SeaweedFS losing one to another process.

Real sockets and a real ``weed mini``: a port is made "taken" by listening on it.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from trainjob_operator.api.constants import PER_JOB_MASTER_PORTS
from trainjob_operator.local.ports import ephemeral_range, free_port, is_free
from trainjob_operator.local.seaweedfs import PortTaken, SeaweedFS


def _listen() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", free_port()))
    sock.listen()
    return sock


@pytest.fixture
def held() -> Iterator[int]:
    """A port another process's server listens on."""
    sock = _listen()
    try:
        yield int(sock.getsockname()[1])
    finally:
        sock.close()


def test_free_ports_are_below_the_range_outgoing_connections_take_theirs_from() -> None:
    low, high = ephemeral_range()
    assert 1024 <= low < high
    picks = {free_port() for _ in range(50)}
    assert all(10000 <= port < low for port in picks), sorted(picks)
    assert len(picks) > 40  # spread, so two starters at the same moment seldom pick the same one
    assert all(is_free(port) for port in picks)


def test_free_ports_are_never_a_jobs_rendezvous_port() -> None:
    """On a local cluster a job's rank 0 binds a port derived from the job in PER_JOB_MASTER_PORTS,
    again at each attempt; a server of ours there failed every attempt of a test's job with
    EADDRINUSE (port 21782, a CI run of 2026-12-02)."""
    picks = [free_port() for _ in range(400)]
    assert not [port for port in picks if port in PER_JOB_MASTER_PORTS]
    # Both sides of the jobs' range are used (Linux's ephemeral range starts at 32768).
    if ephemeral_range()[0] > PER_JOB_MASTER_PORTS.stop + 1024:
        assert min(picks) < PER_JOB_MASTER_PORTS.start and max(picks) >= PER_JOB_MASTER_PORTS.stop


def test_a_port_a_server_listens_on_is_not_free(held: int) -> None:
    assert not is_free(held)


def test_seaweedfs_that_loses_its_s3_port_to_another_process_starts_again_on_a_new_one(
    tmp_path: Path, held: int
) -> None:
    handed_out: list[int] = []

    def first_the_held_port() -> int:
        port = free_port() if handed_out else held
        handed_out.append(port)
        return port

    server = SeaweedFS(tmp_path / "weed", choose_port=first_the_held_port).start()
    try:
        assert server.s3_port != held
        # The first `weed` said why it stopped; the second got all new ports.
        log = (tmp_path / "weed" / "weed.log").read_text()
        assert f"port {held} for S3 (specified by flag s3.port) is not available" in log
        assert handed_out.count(held) == 1 and len(handed_out) == 2 * 12
        s3 = boto3.client(
            "s3",
            region_name="us-east-1",
            endpoint_url=server.endpoint,
            aws_access_key_id=server.access_key,
            aws_secret_access_key=server.secret_key,
        )
        s3.put_object(Bucket=server.bucket, Key="k", Body=b"v")
        assert s3.get_object(Bucket=server.bucket, Key="k")["Body"].read() == b"v"
    finally:
        server.stop()
    assert server.process is not None and server.process.poll() is not None


def test_a_restart_whose_s3_port_was_taken_meanwhile_says_so_and_starts_nothing(tmp_path: Path) -> None:
    server = SeaweedFS(tmp_path / "weed").start()
    server.stop()
    first = server.process
    squatter = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do
        squatter.bind(("127.0.0.1", server.s3_port))
        squatter.listen()
        with pytest.raises(PortTaken, match=f"the S3 port {server.s3_port} is in use by another process"):
            server.start()
        assert server.process is first  # no new `weed` was started
    finally:
        squatter.close()
        server.stop()
