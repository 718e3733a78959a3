"""Ports for servers started on this machine (SeaweedFS, the operator's probes, test servers).

A port is chosen by the starter and bound later by the server it starts, often seconds later
(``weed mini`` binds its S3 port after its master, volume and filer are up). In between the port
must stay free. A port the kernel hands out for ``bind(("", 0))`` is from its *ephemeral* range,
the same range it picks the local port of every outgoing connection from: on a busy machine a
client connection (SeaweedFS's own components talk to each other) takes the port before the
server binds it, and the server dies with "address already in use". That happened in our CI
(twice in two days, both times ``weed``'s S3 port, 56141 and 56703).

So ``free_port`` picks from below the ephemeral range (``/proc/sys/net/ipv4/ip_local_port_range``),
where the kernel never autobinds, and checks the port is free now. It leaves out the ports the
operator derives jobs' rendezvous ports from on a local cluster (``PER_JOB_MASTER_PORTS``): a job
binds its port when its rank 0 starts, each attempt again, and a server of ours found there made
every attempt of a test's job fail with EADDRINUSE. Only another starter choosing
the same random port at the same moment can still take it, which is why starters that can tell a
lost race (``SeaweedFS.start``) also try again on new ports.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

from trainjob_operator.api.constants import PER_JOB_MASTER_PORTS

_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
# Linux's default ephemeral range starts at 32768; ports from here up to it are ours to pick.
_LOWEST = 10000
# Tries before falling back to a kernel-chosen (ephemeral) port.
_TRIES = 64


def ephemeral_range() -> tuple[int, int]:
    """The kernel's range for outgoing connections' local ports (Linux's default if unknown)."""
    try:
        low, high = (int(part) for part in _EPHEMERAL_RANGE.read_text().split())
    except (OSError, ValueError):
        return 32768, 60999
    return low, high


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing uses right now, outside the kernel's ephemeral range and the jobs'
    rendezvous ports when it can be."""
    low, _ = ephemeral_range()
    if low - _LOWEST >= 1024 + len(PER_JOB_MASTER_PORTS):  # room enough that two picks seldom meet
        for _ in range(_TRIES):
            port = random.randrange(_LOWEST, low)  # spreads picks; not a secret
            if port not in PER_JOB_MASTER_PORTS and is_free(port, host):
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could bind ``port`` now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As a server binds it (Go and Python servers set SO_REUSEADDR): a port some connection
        # of a stopped server still holds in TIME_WAIT counts as free, as it would for them.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True
