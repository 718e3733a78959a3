"""Scenario 6: N TrainJobs x 4 workers (a trainer that reports 10 times and exits) submitted at once
to the local cluster: time until every pod runs, until every job Succeeded, API requests and writes
per job (counted at the API server), and the operator's RSS. Each job gets a namespace of its own
so requests are attributed to jobs by namespace.

    python -m bench.operator_scale [--jobs 100] [--workers 4]
    python -m bench.operator_scale --simulated [--jobs 1000] [--workers 8] [--duration 5]

Every pod is a real Python process (jobs x workers processes plus a coordinator per job): on 2
cores and 24 GiB the default 100 x 4 takes about five minutes, nearly all of it the node agent
starting 500 processes; the writes per job do not depend on N when the operator keeps up.

`--simulated` (goal 2: 1000 x 8) binds every pod to simulated nodes (`--simulated-nodes`, served
by the API server: pods go Running and exit 0 after `--duration` s with no process; the real node
is cordoned), so it measures the operator itself: time until every pod exists and until every
job Succeeded, requests and writes per job, operator CPU seconds per job, peak RSS; and, in the
same run against the same API server, the time a plain client needs to POST the same pods
(keep-alive connections, `--plain-concurrency` at once, the gang's scheduling gate on as on the
operator's pods), once before the scenario and once after it; the faster counts. The jobs are
submitted at once by the same client, as many connections. No coordinator runs on a simulated node,
so nothing reports: jobs succeed by their pods' exit codes.

To look into a run: BENCH_KEEP_LOGS=<dir> keeps the API server's, node agent's and operator's logs
and every event there; BENCH_PROFILE=<dir> (--simulated) samples each process with py-spy, which
``make`` does not install.
"""

from __future__ import annotations

import argparse
import copy
import http.client
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from prometheus_client.parser import text_string_to_metric_families

from bench.common import REPO_ROOT, emit, log, scenario_parser, workdir
from bench.stack import BenchStack, breakdown, count_requests, trainjob
from trainjob_operator.api import constants

STATUS_PATCHES = ("PATCH trainjobs/status", "PUT trainjobs/status", "PATCH pods/status", "PUT pods/status")
# Not the operator's: the user's submission, and the node agent (kubelet) minting the coordinator's token.
NOT_OPERATOR = ("POST trainjobs", "POST serviceaccounts/token")
# One per pod: the gang's scheduling gate comes off once every pod of the attempt exists. Kubernetes
# has no batch write for it, so it is counted apart from the per-job budget (which it would scale).
GATE_REMOVALS = ("PATCH pods",)


def rss_mib(pid: int) -> float:
    pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1024 / 1024


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = scenario_parser(__doc__)
    parser.add_argument("--jobs", type=int, default=None, help="default: 100 (1000 with --simulated)")
    parser.add_argument("--workers", type=int, default=None, help="default: 4 (8 with --simulated)")
    parser.add_argument("--reports", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--simulated", action="store_true", help="pods on simulated nodes (no processes)")
    parser.add_argument("--duration", type=float, default=5.0, help="--simulated: seconds a pod runs")
    parser.add_argument(
        "--plain-concurrency",
        type=int,
        default=8,
        help="--simulated: connections of the submission and of the plain client",
    )
    args = parser.parse_args(argv)
    if args.simulated:
        return simulated(args)
    args.jobs = 100 if args.jobs is None else args.jobs
    args.workers = 4 if args.workers is None else args.workers
    names = [f"scale-{i}" for i in range(args.jobs)]
    namespaces = {f"bench-scale-{i}" for i in range(args.jobs)}
    # One node holds every pod at once, as the scenario says ("submitted at once"): a node takes
    # 110 pods, as the kubelet's --max-pods defaults to, and beyond that the gangs would wait
    # for each other, Unschedulable, each saying so in a warning event.
    pods_total = args.jobs * args.workers
    options = {**BenchStack.default_cluster_options(), "node_capacity": {"pods": str(pods_total)}}
    with (
        workdir("operator") as tmp,
        BenchStack(tmp / "stack", root=REPO_ROOT, namespaces=(), cluster_options=options) as stack,
    ):
        for namespace in sorted(namespaces):
            stack.prepare_namespace(namespace)
        assert stack.operator is not None
        operator_pid = stack.operator.pid
        peak_rss = [rss_mib(operator_pid)]
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                try:
                    peak_rss.append(rss_mib(operator_pid))
                except OSError:
                    return
                time.sleep(0.5)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        offset = stack.log_offset()
        log(f"operator_scale: submitting {args.jobs} jobs x {args.workers} workers")
        submitted = time.monotonic()
        for i, name in enumerate(names):
            manifest = trainjob(
                name,
                ["python", "-m", "bench.workers.trainer"],
                workers=args.workers,
                extra_spec={"config": {"reports": args.reports, "interval": 0.05}},
            )
            stack.submit(f"bench-scale-{i}", manifest)
        submit_s = time.monotonic() - submitted
        all_running_s: float | None = None
        phases: dict[str, str] = {}
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            pods = [p for ns in sorted(namespaces) for p in stack.pods(ns)]
            running = [p for p in pods if (p.get("status") or {}).get("phase") in ("Running", "Succeeded")]
            if all_running_s is None and len(running) >= pods_total:
                all_running_s = time.monotonic() - submitted
            for i, name in enumerate(names):
                phases[name] = str((stack.job(f"bench-scale-{i}", name).get("status") or {}).get("phase"))
            if all(phase in ("Succeeded", "Failed") for phase in phases.values()):
                break
            time.sleep(0.25)
        all_done_s = time.monotonic() - submitted
        stop.set()
        sampler.join()
        time.sleep(2)  # the last status patches and pod updates reach the log
        requests = count_requests(stack.apiserver_log, offset)
        operator_rss = rss_mib(operator_pid)
        _keep_logs(stack)
    per_job = [breakdown(requests, {f"bench-scale-{i}"}) for i in range(args.jobs)]
    writes_besides_status = [
        sum(
            n
            for verb, n in job["writes"].items()
            if verb not in STATUS_PATCHES + NOT_OPERATOR + GATE_REMOVALS
        )
        for job in per_job
    ]
    gate_removals = [sum(n for verb, n in job["writes"].items() if verb in GATE_REMOVALS) for job in per_job]
    status_patches = [
        sum(n for verb, n in job["writes"].items() if verb in STATUS_PATCHES) for job in per_job
    ]
    cluster_wide = [r for r in requests if r[1] not in namespaces]
    succeeded = sum(1 for p in phases.values() if p == "Succeeded")
    median_writes = statistics.median(writes_besides_status) if writes_besides_status else None
    return emit(
        "operator_scale",
        {"jobs": args.jobs, "workers": args.workers, "reports_per_worker": args.reports},
        {
            "submit_s": round(submit_s, 2),
            "all_pods_running_s": None if all_running_s is None else round(all_running_s, 2),
            "all_jobs_done_s": round(all_done_s, 2),
            "succeeded": succeeded,
            "phases": sorted(set(phases.values())),
            "writes_per_job_besides_status_median": median_writes,
            "status_patches_per_job_median": statistics.median(status_patches) if status_patches else None,
            "gate_removals_per_job_median": statistics.median(gate_removals) if gate_removals else None,
            "requests_per_job_median": statistics.median(j["total"] for j in per_job) if per_job else None,
            "example_job_breakdown": per_job[0] if per_job else None,
            # Where the writes of all jobs went, per job on average: what the median is made of.
            "writes_per_job_by_verb_mean": {
                verb: round(sum(job["writes"].get(verb, 0) for job in per_job) / len(per_job), 2)
                for verb in sorted({verb for job in per_job for verb in job["writes"]})
            }
            if per_job
            else None,
            "cluster_scoped_requests": len(cluster_wide),
            "operator_rss_mib": round(operator_rss, 1),
            "operator_peak_rss_mib": round(max(peak_rss), 1),
        },
        {"limit": "<= 12 writes per job lifecycle besides status patches and gate removals (one per pod)"},
        None,
        {
            "target": "<= 12 writes per job besides status patches and gate removals (one per pod)",
            "met": None if median_writes is None else median_writes <= 12 and succeeded == args.jobs,
        },
    )


def _per_job(requests: list[tuple[str, str, str, str]], jobs: int, prefix: str) -> dict[str, Any]:
    per_job = [breakdown(requests, {f"{prefix}{i}"}) for i in range(jobs)]

    def total(job: dict[str, Any], verbs: tuple[str, ...], inside: bool) -> int:
        return sum(n for verb, n in job["writes"].items() if (verb in verbs) == inside)

    besides = [total(j, STATUS_PATCHES + NOT_OPERATOR + GATE_REMOVALS, False) for j in per_job]
    # Besides status and besides the one creation per pod: what a job costs whatever its size.
    per_job_fixed = [b - j["writes"].get("POST pods", 0) for b, j in zip(besides, per_job, strict=True)]
    return {
        "writes_per_job_besides_status_median": statistics.median(besides) if besides else None,
        "writes_per_job_besides_status_max": max(besides) if besides else None,
        "writes_per_job_besides_status_and_pod_creations_median": statistics.median(per_job_fixed)
        if per_job_fixed
        else None,
        "status_patches_per_job_median": statistics.median(total(j, STATUS_PATCHES, True) for j in per_job),
        "gate_removals_per_job_median": statistics.median(total(j, GATE_REMOVALS, True) for j in per_job),
        "requests_per_job_median": statistics.median(j["total"] for j in per_job),
        "reads_per_job_median": statistics.median(j["reads"] for j in per_job),
        "writes_per_job_by_verb_mean": {
            verb: round(sum(job["writes"].get(verb, 0) for job in per_job) / len(per_job), 2)
            for verb in sorted({verb for job in per_job for verb in job["writes"]})
        },
    }


def _post_all(url: str, token: str, posts: list[tuple[str, dict[str, Any]]], concurrency: int) -> float:
    """Seconds for a plain client to make `posts` ((path, body) each), `concurrency` at once
    over keep-alive connections: how the scenario submits its jobs, and the peer its pods."""
    where = urlparse(url)
    chunks = [posts[i::concurrency] for i in range(concurrency)]

    def post_all(chunk: list[tuple[str, dict[str, Any]]]) -> None:
        conn = http.client.HTTPConnection(where.hostname or "127.0.0.1", where.port, timeout=120)
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        for path, body in chunk:
            conn.request("POST", path, json.dumps(body), headers)
            response = conn.getresponse()
            answer = response.read()
            if response.status != 201:
                raise RuntimeError(f"POST {path}: {response.status} {answer[:300]!r}")
        conn.close()

    started = time.monotonic()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(post_all, chunks))
    return time.monotonic() - started


class _Watched:
    """Phases of the pods and jobs of the scenario's namespaces, kept by two watch threads."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.lock = threading.Lock()
        self.pods: dict[tuple[str, str], str] = {}
        self.jobs: dict[tuple[str, str], str] = {}


def _watch(
    url: str, token: str, path: str, prefix: str, sink: dict[tuple[str, str], str], lock: threading.Lock
) -> None:
    """Follow a cluster-wide watch (the initial ADDED events included) into `sink`: key -> phase."""
    where = urlparse(url)
    conn = http.client.HTTPConnection(where.hostname or "127.0.0.1", where.port, timeout=3600)
    conn.request("GET", f"{path}?watch=1&timeoutSeconds=3600", headers={"Authorization": f"Bearer {token}"})
    response = conn.getresponse()
    while True:
        line = response.readline()
        if not line:
            return
        event = json.loads(line)
        obj = event.get("object") or {}
        meta = obj.get("metadata") or {}
        if not str(meta.get("namespace", "")).startswith(prefix):
            continue
        key = (meta["namespace"], meta["name"])
        with lock:
            if event.get("type") == "DELETED":
                sink.pop(key, None)
            else:
                sink[key] = str((obj.get("status") or {}).get("phase"))


def _as_submitted(pod: dict[str, Any], i: int) -> dict[str, Any]:
    """The operator's pod as a client would POST it: its spec and annotations, a new name, no
    owner, status or node, no operator labels (no job owns it). The gang's scheduling gate stays,
    as on the operator's pods when it creates them, so the peer's time is its POSTs alone: without
    it the scheduler and the simulated kubelets worked on the peer's pods meanwhile, on the same
    API server, and the peer took longer (see bench/RESULTS.md, goal 2, "Round six")."""
    spec = copy.deepcopy(pod["spec"])
    spec.pop("nodeName", None)
    spec["schedulingGates"] = [{"name": constants.GANG_SCHEDULING_GATE}]
    meta = pod["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"plain-{i}",
            "labels": {"bench": "plain"},
            "annotations": dict(meta.get("annotations") or {}),
        },
        "spec": spec,
    }


@dataclass
class _Peer:
    """One round of the plain client: its POSTs' time and the API server's CPU for them."""

    seconds: float
    apiserver_cpu_s: float
    quiet_after_s: float


def _plain_client(
    stack: BenchStack,
    pids: dict[str, int],
    template: list[dict[str, Any]],
    namespace: str,
    count: int,
    concurrency: int,
) -> _Peer:
    """The peer: `count` pods made from the operator's `template` pods POSTed into `namespace`,
    once the API server and the operator are quiet."""
    assert stack.cluster is not None
    pods = [_as_submitted(template[i % len(template)], i) for i in range(count)]
    quiet_s = _wait_until_quiet(pids)
    log(f"plain client: POSTing {len(pods)} pods into {namespace} (quiet after {quiet_s:.1f}s)")
    cpu_before = cpu_seconds(pids["apiserver"])
    seconds = _post_all(
        stack.cluster.url,
        stack.cluster.token,
        [(f"/api/v1/namespaces/{namespace}/pods", pod) for pod in pods],
        concurrency,
    )
    log(f"plain client: {seconds:.1f}s")
    return _Peer(seconds, cpu_seconds(pids["apiserver"]) - cpu_before, quiet_s)


def _wait_until_quiet(pids: dict[str, int], limit_s: float = 120.0) -> float:
    """Seconds until each process used under a tenth of a core over a second (at most
    `limit_s`). The peer then POSTs to an API server done with what came before (the warm-up
    job; after the scenario, the operator's last passes and watch backlog)."""
    started = time.monotonic()
    while time.monotonic() - started < limit_s:
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        time.sleep(1.0)
        if all(cpu_seconds(pid) - before[name] < 0.1 for name, pid in pids.items()):
            break
    return time.monotonic() - started


def _gc_collections(metrics_port: int) -> dict[str, float]:
    """The operator's garbage collections so far, by generation, from its own metrics endpoint
    (prometheus_client exports `python_gc_collections_total`)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        sample.labels["generation"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "python_gc_collections_total"
    }


def _warm_up(stack: BenchStack, timeout: float) -> None:
    """Wait until the operator acts on a job (its start, imports and watches done): the scenario
    measures an operator that is running when the jobs arrive, not its start. The warm-up job's
    namespace is not one of the scenario's, so none of its requests are counted per job."""
    stack.prepare_namespace("bench-warmup")
    stack.submit("bench-warmup", trainjob("warmup", ["python", "-c", "pass"], workers=1))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (stack.job("bench-warmup", "warmup").get("status") or {}).get("phase") == "Succeeded":
            return
        time.sleep(0.2)
    raise RuntimeError("the operator did not run the warm-up job")


def _keep_logs(stack: BenchStack) -> None:
    """With BENCH_KEEP_LOGS=<dir>: the logs (API server, node agent, operator) and every event (one
    line each: namespace, object, source, reason, message), to look into after the run."""
    keep = os.environ.get("BENCH_KEEP_LOGS")
    if not keep:
        return
    Path(keep).mkdir(parents=True, exist_ok=True)
    for log_file in (*stack.apiserver_log.parent.glob("*.log"), stack.operator_log):
        shutil.copy(log_file, Path(keep) / log_file.name)
    events = stack.api("GET", "/api/v1/events")["items"]
    (Path(keep) / "events.txt").write_text(
        "".join(
            f"{e['metadata']['namespace']} {e['involvedObject']['name']} "
            f"{(e.get('source') or {}).get('component')} {e['reason']}: {e['message']}\n"
            for e in events
        )
    )


def _start_profilers(pids: dict[str, int]) -> list[subprocess.Popen[bytes]]:
    """With BENCH_PROFILE=<dir>: py-spy samples each process (collapsed stacks, `<name>.txt`)
    from submission until every job is done; nothing without it. py-spy is not among what
    ``make`` installs (it is only for this): ``.venv/bin/pip install py-spy``."""
    where = os.environ.get("BENCH_PROFILE")
    if not where:
        return []
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        raise SystemExit(
            f"BENCH_PROFILE needs py-spy, which is not installed: {sys.executable} -m pip install py-spy"
        )
    Path(where).mkdir(parents=True, exist_ok=True)
    return [
        subprocess.Popen(
            [
                spy,
                "record",
                "--pid",
                str(pid),
                "--rate",
                "50",
                "--format",
                "raw",
                "--threads",
                "--nonblocking",
                "-o",
                str(Path(where) / f"{name}.txt"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, pid in pids.items()
    ]


def _stop_profilers(profilers: list[subprocess.Popen[bytes]]) -> None:
    for process in profilers:
        process.send_signal(signal.SIGINT)
    for process in profilers:
        process.wait(timeout=60)


def simulated(args: argparse.Namespace) -> dict[str, Any]:
    jobs = 1000 if args.jobs is None else args.jobs
    workers = 8 if args.workers is None else args.workers
    pods_total = jobs * workers
    nodes = math.ceil(pods_total / 100) + 1  # 110 pods each: room to spare
    prefix = "bench-sim-"
    names = [f"sim-{i}" for i in range(jobs)]
    options = {
        **BenchStack.default_cluster_options(),
        "simulated_nodes": nodes,
        "simulated_pod_duration": args.duration,
    }
    with (
        workdir("operator-sim") as tmp,
        BenchStack(tmp / "stack", root=REPO_ROOT, namespaces=(), cluster_options=options) as stack,
    ):
        assert stack.cluster is not None and stack.operator is not None
        # Only simulated nodes take pods: the real node (its agent would start processes) is cordoned.
        for real in stack.cluster.node_names:
            stack.api(
                "PATCH",
                f"/api/v1/nodes/{real}",
                {"spec": {"unschedulable": True}},
                "application/merge-patch+json",
            )
        log(f"operator_scale --simulated: {nodes} simulated nodes; preparing {jobs} namespaces")
        for i in range(jobs):
            stack.prepare_namespace(f"{prefix}{i}")
        stack.prepare_namespace("bench-plain")
        stack.prepare_namespace("bench-plain-before")
        _warm_up(stack, args.timeout)
        operator_pid = stack.operator.pid
        apiserver_pid = stack.cluster.pids["apiserver"]
        pids = {"apiserver": apiserver_pid, "operator": operator_pid}
        peak_rss = [rss_mib(operator_pid)]
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                try:
                    peak_rss.append(rss_mib(operator_pid))
                except OSError:
                    return
                time.sleep(0.5)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        # Watches, not lists: a list of 8000 pods a second would cost the API server more than
        # the operator does.
        watched = _Watched(prefix)
        for path, sink in (("/api/v1/pods", watched.pods), (stack.jobs_path(), watched.jobs)):
            threading.Thread(
                target=_watch,
                args=(stack.cluster.url, stack.cluster.token, path, prefix, sink, watched.lock),
                daemon=True,
            ).start()
        # The peer twice: before the scenario, on an API server holding only the warm-up job
        # (the operator's pod for it as the template), and after it, on the store the scenario
        # left; the goal's ratio takes the faster.
        warm_pods = stack.api("GET", "/api/v1/namespaces/bench-warmup/pods")["items"]
        peer_before = _plain_client(
            stack, pids, warm_pods, "bench-plain-before", pods_total, args.plain_concurrency
        )
        offset = stack.log_offset()
        cpu_before = cpu_seconds(operator_pid)
        gc_before = _gc_collections(stack.metrics_port)
        apiserver_cpu_before = cpu_seconds(apiserver_pid)
        profilers = _start_profilers({"apiserver": apiserver_pid, "operator": operator_pid})
        log(f"operator_scale --simulated: submitting {jobs} jobs x {workers} workers")
        # At once: the same client as the peer's, as many connections (one POST at a time
        # without keep-alive took 70 s for 1000 jobs against the busy API server, and set the
        # time to the last pod: the operator created it 1.3 s after the last job arrived).
        submissions = [
            (
                stack.jobs_path(f"{prefix}{i}"),
                trainjob(name, ["python", "-c", "pass"], workers=workers),
            )
            for i, name in enumerate(names)
        ]
        submitted = time.monotonic()
        submit_s = _post_all(stack.cluster.url, stack.cluster.token, submissions, args.plain_concurrency)
        all_pods_s: float | None = None
        # CPU seconds spent until every pod existed: {"apiserver": s, "operator": s}.
        until_all_pods: dict[str, float] | None = None
        all_running_s: float | None = None
        phases: dict[str, int] = {}
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            with watched.lock:
                pods_now = list(watched.pods.values())
                phases = {}
                for phase in watched.jobs.values():
                    phases[phase] = phases.get(phase, 0) + 1
            if all_pods_s is None and len(pods_now) >= pods_total:
                all_pods_s = time.monotonic() - submitted
                until_all_pods = {
                    "apiserver": cpu_seconds(apiserver_pid) - apiserver_cpu_before,
                    "operator": cpu_seconds(operator_pid) - cpu_before,
                }
                log(f"every pod exists after {all_pods_s:.1f}s")
            if all_running_s is None and sum(p in ("Running", "Succeeded") for p in pods_now) >= pods_total:
                all_running_s = time.monotonic() - submitted
            if phases.get("Succeeded", 0) + phases.get("Failed", 0) >= jobs:
                break
            time.sleep(0.1)
        all_done_s = time.monotonic() - submitted
        log(f"jobs {phases} after {all_done_s:.1f}s")
        operator_cpu = cpu_seconds(operator_pid) - cpu_before
        gc_after = _gc_collections(stack.metrics_port)
        apiserver_cpu = cpu_seconds(apiserver_pid) - apiserver_cpu_before
        _stop_profilers(profilers)
        stop.set()
        sampler.join()
        time.sleep(2)  # the last status patches reach the log
        requests = count_requests(stack.apiserver_log, offset)
        # The operator keeps finished jobs' pods? Take the pods of the jobs as they stand (or as
        # the first job's template, should it have deleted them) for the plain client.
        pods = [
            p
            for p in stack.api("GET", "/api/v1/pods")["items"]
            if p["metadata"]["namespace"].startswith(prefix)
        ]
        peer_after = _plain_client(
            stack, pids, pods or warm_pods, "bench-plain", pods_total, args.plain_concurrency
        )
        peer = min(peer_before, peer_after, key=lambda round_: round_.seconds)
        plain_s, plain_apiserver_cpu = peer.seconds, peer.apiserver_cpu_s
        operator_rss = rss_mib(operator_pid)
        _keep_logs(stack)
    counts = _per_job(requests, jobs, prefix)
    cluster_wide = [r for r in requests if not r[1].startswith(prefix)]
    succeeded = phases.get("Succeeded", 0)
    ratio = None if all_pods_s is None else round(all_pods_s / plain_s, 2)
    median_writes = counts["writes_per_job_besides_status_median"]
    return emit(
        "operator_scale_simulated",
        {"jobs": jobs, "workers": workers, "simulated_nodes": nodes, "pod_duration_s": args.duration},
        {
            "submit_s": round(submit_s, 2),
            "all_pods_exist_s": None if all_pods_s is None else round(all_pods_s, 2),
            "all_pods_running_s": None if all_running_s is None else round(all_running_s, 2),
            "all_jobs_done_s": round(all_done_s, 2),
            "succeeded": succeeded,
            "phases": phases,
            **counts,
            "cluster_scoped_requests": len(cluster_wide),
            "operator_cpu_s": round(operator_cpu, 2),
            "apiserver_cpu_s": round(apiserver_cpu, 2),
            # What the API server and the operator spent until every pod existed: set beside the
            # API server's CPU for the plain client's POSTs, what the operator's way costs it.
            "apiserver_cpu_s_until_all_pods_exist": until_all_pods and round(until_all_pods["apiserver"], 2),
            "operator_cpu_s_until_all_pods_exist": until_all_pods and round(until_all_pods["operator"], 2),
            "load_average_1m_at_end": round(os.getloadavg()[0], 2),
            "operator_cpu_s_per_job": round(operator_cpu / jobs, 4),
            # Young, middle and full collections during the scenario (`tune_garbage_collector`).
            "operator_gc_collections": [
                int(gc_after.get(g, 0) - gc_before.get(g, 0)) for g in ("0", "1", "2")
            ],
            "operator_rss_mib": round(operator_rss, 1),
            "operator_peak_rss_mib": round(max(peak_rss), 1),
        },
        {
            "plain_client_post_s": round(plain_s, 2),
            "concurrency": args.plain_concurrency,
            "pods": pods_total,
            "apiserver_cpu_s_during_plain_post": round(plain_apiserver_cpu, 2),
            # Each round: before the scenario and after it (the figures above are the faster's).
            "rounds": {
                name: {
                    "plain_client_post_s": round(round_.seconds, 2),
                    "apiserver_cpu_s": round(round_.apiserver_cpu_s, 2),
                    "quiet_after_s": round(round_.quiet_after_s, 1),
                }
                for name, round_ in (("before", peer_before), ("after", peer_after))
            },
        },
        {
            "operator_all_pods_s_over_plain_post_s": ratio,
            "apiserver_cpu_until_all_pods_over_plain_post": None
            if until_all_pods is None or not plain_apiserver_cpu
            else round(until_all_pods["apiserver"] / plain_apiserver_cpu, 2),
        },
        {
            "target": "<= 12 writes per job besides status patches and gate removals; "
            "every pod existing <= 1.5x a plain client's POST of the same pods",
            "met": ratio is not None
            and ratio <= 1.5
            and median_writes is not None
            and median_writes <= 12
            and succeeded == jobs,
        },
    )


if __name__ == "__main__":
    main()
