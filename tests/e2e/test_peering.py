"""Two operator replicas with kopf peering, as the Helm chart runs them (each with a random
priority, named by its pod): only the highest-priority replica acts, the other waits without
handling anything, and when the active one stops (SIGTERM, as in a rolling update) the other takes
over at once.

A replica that starts below a running one stays paused from its start and logs nothing about it
(kopf only logs a pause of a replica that was acting), so the test reads who acts from the
priorities in the peering object and from each replica's reconcile counter, not from logs."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.support.kube import KUBECTL, Cluster
from tests.support.manifests import python, trainjob
from tests.support.processes import REPO_ROOT, wait_for
from trainjob_operator.local.ports import free_port
from trainjob_operator.local.stack import LocalStack

PEERING = "trainjob-operator"


@dataclass
class Replica:
    identity: str
    process: subprocess.Popen[bytes]
    metrics_port: int
    log: Path

    def reconciles(self) -> float:
        """The sum of this replica's reconcile counter over all outcomes."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as answer:
            text = answer.read().decode()
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("trainjob_operator_reconciles_total{")
        )


def peers(kubeconfig: str) -> dict[str, dict[str, object]]:
    """The live replicas announced in the peering object, by identity."""
    out = subprocess.run(
        [KUBECTL, "--kubeconfig", kubeconfig, "get", "clusterkopfpeering", PEERING, "-o", "yaml"],
        capture_output=True,
        text=True,
    ).stdout
    status = (yaml.safe_load(out) or {}).get("status") or {}
    return {identity: dict(peer) for identity, peer in status.items() if isinstance(peer, dict)}


def start_replica(stack: LocalStack, identity: str, log: Path) -> Replica:
    assert stack.seaweedfs is not None
    port = free_port()
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "trainjob_operator",
                "operator",
                "--kubeconfig",
                str(stack.kubeconfig),
                "--peering",
                PEERING,
                "--metrics-port",
                str(port),
                "--default-storage-endpoint",
                stack.seaweedfs.endpoint,
                "--per-job-master-port",
                "--api-plain-http",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
            start_new_session=True,
            # As the chart sets it: kopf names the replica in the peering object by its pod.
            env={**os.environ, "POD_ID": identity},
        )
    return Replica(identity, process, port, log)


@pytest.fixture
def peered_stack(tmp_path: Path) -> Iterator[tuple[LocalStack, list[Replica]]]:
    """A stack without its standalone operator, and two peered replicas, stopped by pid."""
    replicas: list[Replica] = []
    with LocalStack(
        tmp_path / "stack", root=REPO_ROOT, namespaces=("default",), with_operator=False
    ) as stack:
        kubeconfig = str(stack.kubeconfig)
        subprocess.run(
            [
                KUBECTL,
                "--kubeconfig",
                kubeconfig,
                "apply",
                "-f",
                str(REPO_ROOT / "deploy/crds/kopf.dev_peerings.yaml"),
            ],
            check=True,
            capture_output=True,
        )
        peering = {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": PEERING}}
        wait_for(
            lambda: (
                subprocess.run(
                    [KUBECTL, "--kubeconfig", kubeconfig, "apply", "-f", "-"],
                    input=yaml.safe_dump(peering).encode(),
                    capture_output=True,
                ).returncode
                == 0
            ),
            30,
            "the peering object",
        )
        try:
            for index in range(2):
                replicas.append(start_replica(stack, f"replica-{index}", tmp_path / f"replica-{index}.log"))
            yield stack, replicas
        finally:
            for replica in replicas:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(replica.process.pid, signal.SIGKILL)
                replica.process.wait()


def logs(replicas: list[Replica]) -> str:
    return "\n".join(f"--- {r.identity}\n" + r.log.read_text(errors="replace")[-2000:] for r in replicas)


@pytest.mark.slow
def test_only_the_highest_priority_replica_acts_and_the_other_takes_over_on_sigterm(
    peered_stack: tuple[LocalStack, list[Replica]],
) -> None:
    stack, replicas = peered_stack
    kubeconfig = str(stack.kubeconfig)
    cluster = Cluster(stack, "default")
    wait_for(
        lambda: set(peers(kubeconfig)) == {r.identity for r in replicas},
        60,
        "both replicas in the peering object",
        lambda: logs(replicas),
    )
    priorities = {identity: int(str(peer["priority"])) for identity, peer in peers(kubeconfig).items()}
    assert len(set(priorities.values())) == 2, priorities  # equal priorities would pause both
    active, standby = sorted(replicas, key=lambda r: priorities[r.identity], reverse=True)

    cluster.apply(trainjob("peered", python("import time; time.sleep(1)")))
    status = cluster.wait_for_phase("peered", "Succeeded", timeout=120)

    assert status["restarts"] == 0
    created = [e for e in cluster.events("peered") if e["reason"] == "Created"]
    assert len(created) == 1, created
    assert active.reconciles() > 0, logs(replicas)
    assert standby.reconciles() == 0, logs(replicas)

    # A rolling update stops the active replica with SIGTERM: kopf removes it from the peering
    # object on the way out, and the standby resumes without waiting for its lifetime to expire.
    active.process.send_signal(signal.SIGTERM)
    assert active.process.wait(timeout=60) == 0, logs(replicas)
    wait_for(lambda: set(peers(kubeconfig)) == {standby.identity}, 30, "the stopped replica to leave")
    cluster.apply(trainjob("handover", python("import time; time.sleep(1)")))
    status = cluster.wait_for_phase("handover", "Succeeded", timeout=120)

    assert status["restarts"] == 0
    assert standby.reconciles() > 0, logs(replicas)
    assert "Resuming operations" in standby.log.read_text(errors="replace")
