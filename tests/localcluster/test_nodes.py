"""Several nodes, the scheduler, and lost nodes, with kubectl and the kubernetes client as the
clients: what a real cluster shows (reasons, messages, taints, conditions) is asserted exactly."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config, watch

from localcluster import LocalCluster
from tests.localcluster.node_fixtures import PY, REPO_ROOT, Kube, container_pid, pid_alive
from tests.support.kube_objects import meta_of, name_of, present

JSON = dict[str, Any]
SLEEP = ["python", "-c", "import time; time.sleep(600)"]
NODES = [
    {
        "name": "gpu-a",
        "capacity": {"cpu": "4", "memory": "8Gi", "nvidia.com/gpu": "1"},
        "labels": {"zone": "a"},
    },
    {
        "name": "infra-b",
        "capacity": {"cpu": "4", "memory": "8Gi"},
        "labels": {"zone": "b"},
        "taints": [{"key": "dedicated", "value": "infra", "effect": "NoSchedule"}],
    },
    {"name": "small-c", "capacity": {"cpu": "1", "memory": "1Gi"}, "labels": {"zone": "c"}},
]


def wait_for(what: str, check: Callable[[], Any], timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout}s (last: {last!r})")


def _first_condition_seen(k8s: Any, ns: str, pod: str, since: str, ctype: str) -> Any:
    """The first condition of type ``ctype`` that pod ``pod`` had after resourceVersion ``since``,
    as a watch delivers it (None when the pod is gone or 30 s pass without one)."""
    stream = watch.Watch()
    try:
        for event in stream.stream(
            k8s.list_namespaced_pod,
            ns,
            field_selector=f"metadata.name={pod}",
            resource_version=since,
            timeout_seconds=30,
        ):
            for c in event["object"].status.conditions or []:
                if c.type == ctype:
                    return {"status": c.status, "reason": c.reason, "message": c.message}
            if event["type"] == "DELETED":
                return None
        return None
    finally:
        stream.stop()


def cond(obj: Any, ctype: str) -> Any:
    return next((c for c in (obj.status.conditions or []) if c.type == ctype), None)


@pytest.fixture(scope="module")
def three_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    from localcluster.cluster import load_nodes_file

    d = tmp_path_factory.mktemp("nodes")
    (d / "nodes.yaml").write_text(yaml.safe_dump({"nodes": NODES}))
    c = LocalCluster(
        d / "cluster", root=REPO_ROOT, node_specs=load_nodes_file(d / "nodes.yaml"), startup_timeout=90
    )
    c.start()
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture
def k8s(three_nodes: LocalCluster) -> Iterator[client.CoreV1Api]:
    api = config.new_client_from_config(config_file=str(three_nodes.kubeconfig))
    try:
        yield client.CoreV1Api(api)
    finally:
        api.close()


def sleeper(name: str, *, requests: JSON | None = None, **spec: Any) -> JSON:
    container: JSON = {"name": "main", "image": "busybox", "command": SLEEP}
    if requests:
        container["resources"] = {"requests": requests, "limits": requests}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [container], "terminationGracePeriodSeconds": 1, **spec},
    }


def zone(op: str, *values: str) -> JSON:
    term = {"matchExpressions": [{"key": "zone", "operator": op, "values": list(values)}]}
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}}}


INFRA = {"key": "dedicated", "operator": "Equal", "value": "infra", "effect": "NoSchedule"}
TAINT_B = "node(s) had untolerated taint {dedicated: infra}"
AFFINITY = "node(s) didn't match Pod's node affinity/selector"
NOT_HELPFUL = "Preemption is not helpful for scheduling"
NO_VICTIMS = "No preemption victims found for incoming pod"

# name, spec, the node it lands on or the exact FailedScheduling message
TABLE: list[tuple[str, JSON, str]] = [
    ("gpu", sleeper("gpu", requests={"nvidia.com/gpu": "1"}), "gpu-a"),
    (
        "gpu-more",
        sleeper("gpu-more", requests={"nvidia.com/gpu": "1"}),
        f"0/3 nodes are available: 1 {TAINT_B}, 2 Insufficient nvidia.com/gpu. "
        f"preemption: 0/3 nodes are available: 1 {NOT_HELPFUL}, 2 {NO_VICTIMS}..",
    ),
    (
        "selector-b",
        sleeper("selector-b", nodeSelector={"zone": "b"}),
        f"0/3 nodes are available: 1 {TAINT_B}, 2 {AFFINITY}. "
        f"preemption: 0/3 nodes are available: 3 {NOT_HELPFUL}..",
    ),
    ("tolerating-b", sleeper("tolerating-b", nodeSelector={"zone": "b"}, tolerations=[INFRA]), "infra-b"),
    (
        "affinity-c",
        sleeper("affinity-c", affinity=zone("NotIn", "a", "b"), requests={"cpu": "500m"}),
        "small-c",
    ),
    (
        "too-big",
        sleeper("too-big", affinity=zone("In", "c"), requests={"cpu": "1"}),
        f"0/3 nodes are available: 1 Insufficient cpu, 1 {AFFINITY}, 1 {TAINT_B}. "
        f"preemption: 0/3 nodes are available: 1 {NO_VICTIMS}, 2 {NOT_HELPFUL}..",
    ),
]


def test_scheduling_table(three_nodes: LocalCluster, k8s: client.CoreV1Api) -> None:
    ns = "sched-" + uuid.uuid4().hex[:6]
    k8s.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    kube = Kube(three_nodes, ns)
    nodes = k8s.list_node().items
    assert sorted(name_of(n) for n in nodes) == ["gpu-a", "infra-b", "small-c"]
    gpu_a = k8s.read_node("gpu-a")
    assert gpu_a.status is not None and gpu_a.metadata is not None and gpu_a.metadata.labels is not None
    assert gpu_a.status.capacity is not None and gpu_a.status.allocatable is not None
    assert gpu_a.status.capacity["nvidia.com/gpu"] == "1" and gpu_a.status.allocatable["cpu"] == "4"
    assert gpu_a.metadata.labels["zone"] == "a"
    assert [(t.key, t.value, t.effect) for t in present(present(k8s.read_node("infra-b").spec).taints)] == [
        ("dedicated", "infra", "NoSchedule")
    ]
    for name, body, expected in TABLE:
        k8s.create_namespaced_pod(ns, body)  # type: ignore[arg-type]  # a dict body goes as it is
        if not expected.startswith("0/"):
            pod = wait_for(
                f"{name} bound",
                # mypy cannot infer a lambda with a default (n=name binds this iteration's name).
                lambda n=name: present((p := k8s.read_namespaced_pod(n, ns)).spec).node_name and p,  # type: ignore[misc]
            )
            assert pod.spec.node_name == expected, name
            scheduled = wait_for(
                f"{name} PodScheduled",
                # mypy cannot infer a lambda with a default (n=name binds this iteration's name).
                lambda n=name: cond(k8s.read_namespaced_pod(n, ns), "PodScheduled"),  # type: ignore[misc]
            )
            assert scheduled.status == "True"
            continue
        c = wait_for(
            f"{name} unschedulable",
            # mypy cannot infer a lambda with a default (n=name binds this iteration's name).
            lambda n=name: cond(k8s.read_namespaced_pod(n, ns), "PodScheduled"),  # type: ignore[misc]
        )
        assert (c.status, c.reason, c.message) == ("False", "Unschedulable", expected), name
        assert present(k8s.read_namespaced_pod(name, ns).spec).node_name is None
    events = k8s.list_namespaced_event(ns).items
    assert {
        (e.reason, e.message, present(e.source).component) for e in events if e.involved_object.name == "gpu"
    } == {("Scheduled", f"Successfully assigned {ns}/gpu to gpu-a", "default-scheduler")}
    failed = [e for e in events if e.involved_object.name == "too-big"]
    assert failed and all(e.type == "Warning" and e.reason == "FailedScheduling" for e in failed)
    # kubectl describe shows it as on a real cluster
    described = kube.kubectl("describe", "pod", "gpu-more").stdout
    assert "FailedScheduling" in described and "2 Insufficient nvidia.com/gpu." in described
    assert "node.kubernetes.io/unreachable:NoExecute op=Exists for 300s" in described

    # scheduling gates: not tried until the last gate goes
    gated = sleeper("gated", schedulingGates=[{"name": "example.dev/wait"}])
    k8s.create_namespaced_pod(ns, gated)  # type: ignore[arg-type]  # a dict body goes as it is
    c = wait_for("gated condition", lambda: cond(k8s.read_namespaced_pod("gated", ns), "PodScheduled"))
    assert (c.status, c.reason, c.message) == (
        "False",
        "SchedulingGated",
        "Scheduling is blocked due to non-empty scheduling gates",
    )
    assert kube.kubectl("get", "pod", "gated").stdout.split()[7] == "SchedulingGated"
    k8s.patch_namespaced_pod("gated", ns, {"spec": {"schedulingGates": None}})
    assert wait_for("gated bound", lambda: present(k8s.read_namespaced_pod("gated", ns).spec).node_name)

    # cordon: the node is skipped until uncordoned, and the waiting pod is retried then
    assert "node/small-c cordoned" in kube.kubectl("cordon", "small-c").stdout
    try:
        k8s.create_namespaced_pod(ns, sleeper("cordoned", affinity=zone("In", "c")))  # type: ignore[arg-type]  # a dict body goes as it is
        c = wait_for(
            "cordoned unschedulable", lambda: cond(k8s.read_namespaced_pod("cordoned", ns), "PodScheduled")
        )
        assert c.message == (
            f"0/3 nodes are available: 1 {AFFINITY}, 1 {TAINT_B}, 1 node(s) were unschedulable. "
            f"preemption: 0/3 nodes are available: 3 {NOT_HELPFUL}.."
        )
    finally:
        assert "node/small-c uncordoned" in kube.kubectl("uncordon", "small-c").stdout
    assert (
        wait_for(
            "cordoned bound after uncordon",
            lambda: present(k8s.read_namespaced_pod("cordoned", ns).spec).node_name,
        )
        == "small-c"
    )

    # priority: an unknown class is refused; a higher one preempts the gpu pod of gpu-a
    with pytest.raises(client.ApiException) as err:
        k8s.create_namespaced_pod(ns, sleeper("nope", priorityClassName="nope"))  # type: ignore[arg-type]  # a dict body goes as it is
    assert err.value.status == 403 and err.value.body is not None
    assert (
        json.loads(err.value.body)["message"]
        == 'pods "nope" is forbidden: no PriorityClass with name nope was found'
    )
    sched = client.SchedulingV1Api(k8s.api_client)
    pc = f"high-{ns}"
    sched.create_priority_class(client.V1PriorityClass(metadata=client.V1ObjectMeta(name=pc), value=1000))
    try:
        victim = k8s.read_namespaced_pod("gpu", ns)
        victim_pid = container_pid(kube.wait_ready("gpu"), "main")
        k8s.create_namespaced_pod(
            ns,
            sleeper("urgent", requests={"nvidia.com/gpu": "1"}, priorityClassName=pc),  # type: ignore[arg-type]  # a dict
        )
        assert present(k8s.read_namespaced_pod("urgent", ns).spec).priority == 1000
        # Watched from before the preemption, not polled: the victim (a sleeper that ends on
        # SIGTERM) can be gone between two polls, and with it the condition on it.
        disrupted = _first_condition_seen(
            k8s, ns, "gpu", present(meta_of(victim).resource_version), "DisruptionTarget"
        )
        assert disrupted is not None, "the victim never had a DisruptionTarget condition"
        assert (disrupted["status"], disrupted["reason"], disrupted["message"]) == (
            "True",
            "PreemptionByScheduler",
            "default-scheduler: preempting to accommodate a higher priority pod",
        )
        preempted = [e for e in k8s.list_namespaced_event(ns).items if e.reason == "Preempted"]
        assert [e.message for e in preempted] == [
            f"Preempted by pod {meta_of(k8s.read_namespaced_pod('urgent', ns)).uid} on node gpu-a"
        ]
        assert (
            wait_for("urgent bound", lambda: present(k8s.read_namespaced_pod("urgent", ns).spec).node_name)
            == "gpu-a"
        )
        kube.wait_gone("gpu", timeout=30)
        assert not pid_alive(victim_pid)
        assert meta_of(victim).uid  # it was there, and is gone
        # the lower-priority gpu-more still waits
        assert present(k8s.read_namespaced_pod("gpu-more", ns).spec).node_name is None
    finally:
        sched.delete_priority_class(pc)
        k8s.delete_namespace(ns)


def localcluster_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PY, "-m", "localcluster", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO_ROOT,
    )


def test_lost_nodes_partition_crash_force_delete_and_out_of_service(tmp_path: Path) -> None:
    grace, toleration = 2.0, 3
    c = LocalCluster(
        tmp_path / "cluster",
        root=REPO_ROOT,
        nodes=2,
        node_monitor_grace_seconds=grace,
        default_toleration_seconds=toleration,
        startup_timeout=90,
    )
    c.start()
    api = config.new_client_from_config(config_file=str(c.kubeconfig))
    try:
        k8s = client.CoreV1Api(api)
        kube = Kube(c, "default")
        assert c.node_names == ["localnode-1", "localnode-2"]
        leases = client.CoordinationV1Api(api)
        wait_for(
            "a Lease per node",
            lambda: (
                {name_of(x) for x in leases.list_namespaced_lease("kube-node-lease").items}
                >= set(c.node_names)
            ),
        )
        on = {"p1": "localnode-1", "p2": "localnode-2", "p3": "localnode-2", "p4": "localnode-2"}
        for name, node in on.items():
            k8s.create_namespaced_pod(
                "default",
                sleeper(name, nodeSelector={"kubernetes.io/hostname": node}),  # type: ignore[arg-type]  # a dict
            )
        pids = {name: container_pid(kube.wait_ready(name), "main") for name in on}
        assert [
            (t.key, t.toleration_seconds)
            for t in present(present(k8s.read_namespaced_pod("p1", "default").spec).tolerations)
        ] == [
            ("node.kubernetes.io/not-ready", toleration),
            ("node.kubernetes.io/unreachable", toleration),
        ]

        # a partition: heartbeats stop, the processes go on
        r = localcluster_cli("node", "stop", "localnode-1", "--keep-processes", "--dir", str(c.directory))
        assert r.returncode == 0 and "node localnode-1 stopped (processes keep running)" in r.stdout, r.stderr
        ready = wait_for(
            "localnode-1 Unknown",
            lambda: (x := cond(k8s.read_node("localnode-1"), "Ready")).status == "Unknown" and x,
        )
        assert (ready.reason, ready.message) == ("NodeStatusUnknown", "Kubelet stopped posting node status.")
        taints = {(t.key, t.effect): t for t in present(present(k8s.read_node("localnode-1").spec).taints)}
        assert set(taints) == {
            ("node.kubernetes.io/unreachable", "NoSchedule"),
            ("node.kubernetes.io/unreachable", "NoExecute"),
        }
        assert taints["node.kubernetes.io/unreachable", "NoExecute"].time_added is not None
        assert "NotReady" in Kube(c, "default").kubectl("get", "node", "localnode-1").stdout
        assert wait_for(
            "p1 not Ready", lambda: cond(k8s.read_namespaced_pod("p1", "default"), "Ready").status == "False"
        )
        # after its tolerationSeconds the taint manager deletes it, gracefully
        p1 = wait_for(
            "p1 deleted",
            lambda: meta_of(p := k8s.read_namespaced_pod("p1", "default")).deletion_timestamp and p,
            timeout=toleration + 10,
        )
        target = cond(p1, "DisruptionTarget")
        assert (target.status, target.reason, target.message) == (
            "True",
            "DeletionByTaintManager",
            "Taint manager: deleting due to NoExecute taint",
        )
        time.sleep(2)  # nobody on the node to finish the deletion: it stays Terminating, its process runs
        assert meta_of(k8s.read_namespaced_pod("p1", "default")).deletion_timestamp and pid_alive(pids["p1"])
        assert "Terminating" in kube.kubectl("get", "pod", "p1").stdout
        # the node returns: it kills what was deleted while it was away, and is Ready again
        r = localcluster_cli("node", "start", "localnode-1", "--dir", str(c.directory))
        assert r.returncode == 0 and "node localnode-1 started" in r.stdout, r.stderr
        kube.wait_gone("p1", timeout=30)
        wait_for("p1's process killed", lambda: not pid_alive(pids["p1"]), timeout=15)
        wait_for(
            "localnode-1 Ready, untainted",
            lambda: (
                (n := k8s.read_node("localnode-1"))
                and cond(n, "Ready").status == "True"
                and not present(n.spec).taints
            ),
        )

        # a crash: the processes die at once; the pods stay Terminating after the eviction
        r = localcluster_cli("node", "stop", "localnode-2", "--dir", str(c.directory))
        assert r.returncode == 0 and "its pods' processes were killed" in r.stdout, r.stderr
        # deleted gracefully before the node is seen lost (as a controller does when the other
        # ranks fail at once): no kubelet confirms it, so it stays Terminating through the node
        # controller's status writes, until the node returns or someone force-deletes it
        k8s.delete_namespaced_pod("p4", "default", grace_period_seconds=1)
        wait_for(
            "p2, p3, p4 processes dead",
            lambda: not any(pid_alive(pids[n]) for n in ("p2", "p3", "p4")),
            timeout=15,
        )
        wait_for(
            "p4 not Ready (localnode-2 Unknown)",
            lambda: cond(k8s.read_namespaced_pod("p4", "default"), "Ready").status == "False",
            timeout=grace + 15,
        )
        time.sleep(2)  # well past its 1 s grace period
        p4 = k8s.read_namespaced_pod("p4", "default")
        assert p4.metadata is not None
        assert p4.metadata.deletion_timestamp and p4.metadata.deletion_grace_period_seconds == 1
        assert "Terminating" in kube.kubectl("get", "pod", "p4").stdout
        for name in ("p2", "p3"):
            wait_for(
                f"{name} deleted",
                # mypy cannot infer a lambda with a default (n=name binds this iteration's name).
                lambda n=name: meta_of(k8s.read_namespaced_pod(n, "default")).deletion_timestamp,  # type: ignore[misc]
                timeout=grace + toleration + 15,
            )
        # someone force-deletes one
        out = kube.kubectl("delete", "pod", "p2", "--force", "--grace-period=0")
        assert out.returncode == 0 and 'pod "p2" force deleted' in out.stdout, out.stderr
        kube.wait_gone("p2", timeout=10)
        # the out-of-service taint makes the pod garbage collector force-delete the rest
        assert meta_of(k8s.read_namespaced_pod("p3", "default")).deletion_timestamp
        assert meta_of(k8s.read_namespaced_pod("p4", "default")).deletion_timestamp
        out = kube.kubectl(
            "taint", "node", "localnode-2", "node.kubernetes.io/out-of-service=nodeshutdown:NoExecute"
        )
        assert out.returncode == 0, out.stderr
        kube.wait_gone("p3", timeout=15)
        kube.wait_gone("p4", timeout=15)
        r = localcluster_cli("node", "start", "localnode-2", "--dir", str(c.directory))
        assert r.returncode == 0
        assert (
            kube.kubectl("taint", "node", "localnode-2", "node.kubernetes.io/out-of-service-").returncode == 0
        )
        wait_for("localnode-2 Ready", lambda: cond(k8s.read_node("localnode-2"), "Ready").status == "True")
        # bad input: a node that does not exist
        r = localcluster_cli("node", "stop", "nope", "--dir", str(c.directory))
        assert r.returncode == 1 and 'no node "nope" runs here (nodes: localnode-1, localnode-2)' in r.stderr
    finally:
        api.close()
        c.stop()


def test_binding_subresource_for_another_scheduler(three_nodes: LocalCluster, k8s: client.CoreV1Api) -> None:
    k8s.create_namespaced_pod("default", sleeper("custom", schedulerName="my-scheduler"))  # type: ignore[arg-type]  # a dict body goes as it is
    time.sleep(0.5)  # the default scheduler leaves it alone
    pod = k8s.read_namespaced_pod("custom", "default")
    assert present(pod.spec).node_name is None and cond(pod, "PodScheduled") is None
    binding = client.V1Binding(
        metadata=client.V1ObjectMeta(name="custom"),
        target=client.V1ObjectReference(kind="Node", name="small-c"),
    )
    resp = k8s.create_namespaced_pod_binding("custom", "default", binding, _preload_content=False)
    # With _preload_content=False the client returns the raw HTTP response, not the V1Binding it is typed as.
    assert resp.status == 201  # type: ignore[attr-defined]
    pod = k8s.read_namespaced_pod("custom", "default")
    assert present(pod.spec).node_name == "small-c" and cond(pod, "PodScheduled").status == "True"
    with pytest.raises(client.ApiException) as err:
        k8s.create_namespaced_pod_binding("custom", "default", binding, _preload_content=False)
    assert err.value.status == 409 and err.value.body is not None
    assert json.loads(err.value.body)["message"] == (
        'Operation cannot be fulfilled on pods/binding "custom": '
        'pod custom is already assigned to node "small-c"'
    )
    k8s.delete_namespaced_pod("custom", "default", grace_period_seconds=0)


def test_bad_node_flags_are_refused_with_the_reason(tmp_path: Path) -> None:
    bad_file = tmp_path / "nodes.yaml"
    bad_file.write_text("nodes:\n  - capacity: {cpu: '2'}\n")
    cases = [
        (["--node-capacity", "cpu=lots"], "node capacity 'cpu=lots': 'lots' is not a quantity"),
        (
            ["--node-capacity", "gpu"],
            "node capacity 'gpu': expected RESOURCE=QUANTITY (e.g. cpu=4,memory=8Gi)",
        ),
        (["--nodes", "0"], "--nodes must be at least 1 (got 0)"),
        (["--nodes-file", str(bad_file)], f"nodes file {bad_file}, node 1: needs a name"),
        (["--node-monitor-grace-seconds", "0"], "--node-monitor-grace-seconds must be positive"),
    ]
    for flags, message in cases:
        r = localcluster_cli("up", "--dir", str(tmp_path / "lc"), *flags)
        assert r.returncode == 2 and f"localcluster up: {message}" in r.stderr, (flags, r.stderr)
        assert not (tmp_path / "lc").exists()  # nothing was started
    r = subprocess.run(
        [str(Path(PY).parent / "trainjob"), "local", "up", "--dir", str(tmp_path / "tj"), "--nodes", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (
        r.returncode == 2 and "trainjob local up: --nodes must be at least 1 (got 0)" in r.stdout + r.stderr
    )
    r = localcluster_cli("node", "stop", "localnode", "--dir", str(tmp_path / "none"))
    assert r.returncode == 1 and f"no node agent runs from {tmp_path / 'none'}" in r.stderr


def test_pods_on_different_nodes_resolve_each_other(three_nodes: LocalCluster, k8s: client.CoreV1Api) -> None:
    """Cluster DNS spans the cluster: a pod's hosts file names the pods of the other nodes."""
    ns = "dns-" + uuid.uuid4().hex[:6]
    k8s.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    kube = Kube(three_nodes, ns)
    try:
        k8s.create_namespaced_service(
            ns,
            {  # type: ignore[arg-type]  # a dict body goes as it is
                "metadata": {"name": "ranks"},
                "spec": {"clusterIP": "None", "selector": {"app": "r"}, "publishNotReadyAddresses": True},
            },
        )
        for name, node_zone in (("r0", "a"), ("r1", "c")):
            body = sleeper(name, nodeSelector={"zone": node_zone}, hostname=name, subdomain="ranks")
            body["metadata"]["labels"] = {"app": "r"}
            k8s.create_namespaced_pod(ns, body)  # type: ignore[arg-type]  # a dict body goes as it is
        r0, r1 = kube.wait_ready("r0"), kube.wait_ready("r1")
        assert (r0["spec"]["nodeName"], r1["spec"]["nodeName"]) == ("gpu-a", "small-c")
        hosts = three_nodes.node_state_dir / "pods" / r0["metadata"]["uid"] / "etc-hosts"
        wanted = f"{r1['status']['podIP']}\tr1.ranks.{ns}.svc.cluster.local"
        wait_for("r1 in r0's hosts file", lambda: wanted in hosts.read_text())
    finally:
        k8s.delete_namespace(ns)
