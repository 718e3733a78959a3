"""Pods through the real API server and node agent: restart policies, exit codes, init containers,
native sidecars, graceful deletion, env and volumes."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tests.localcluster.node_fixtures import (
    Kube,
    cluster,
    container_pid,
    cstatus,
    is_ready,
    kube,
    out_volume,
    phase,
    pid_alive,
    pod,
    py,
)

__all__ = ["cluster", "kube"]  # fixtures, used by name


def test_never_reports_exit_code_and_reason(kube: Kube) -> None:
    kube.create(
        pod("fail", [{"name": "main", "command": py("import sys; sys.exit(3)")}], restartPolicy="Never")
    )
    p = kube.wait_phase("fail", "Failed")
    s = cstatus(p, "main")
    term = s["state"]["terminated"]
    assert (term["exitCode"], term["reason"], s["restartCount"]) == (3, "Error", 0)
    assert term["startedAt"] and term["finishedAt"]
    st = p["status"]
    assert st["podIP"].startswith("127.") and st["podIP"] != "127.0.0.1"
    assert st["podIPs"] == [{"ip": st["podIP"]}] and st["hostIP"] == "127.0.0.1" and st["startTime"]
    conds = {c["type"]: c for c in st["conditions"]}
    assert conds["PodScheduled"]["status"] == "True" and conds["Initialized"]["status"] == "True"
    assert conds["Ready"]["status"] == "False" and conds["Ready"]["reason"] == "PodCompleted"
    assert all(c["lastTransitionTime"] for c in conds.values())


def test_killed_by_signal_is_128_plus_n(kube: Kube) -> None:
    code = "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
    kube.create(pod("sig", [{"name": "main", "command": py(code)}], restartPolicy="Never"))
    term = cstatus(kube.wait_phase("sig", "Failed"), "main")["state"]["terminated"]
    assert term["exitCode"] == 137 and term["signal"] == 9


def test_on_failure_restarts_until_success(kube: Kube, tmp_path: Path) -> None:
    code = (
        "import os, sys; p = '/out/count'; n = int(open(p).read()) if os.path.exists(p) else 0;"
        "open(p, 'w').write(str(n + 1)); print('attempt', n); sys.exit(0 if n >= 1 else 7)"
    )
    container = {"name": "main", "command": py(code), "volumeMounts": [{"name": "out", "mountPath": "/out"}]}
    kube.create(pod("retry", [container], restartPolicy="OnFailure", volumes=[out_volume(tmp_path)]))
    p = kube.wait_phase("retry", "Succeeded")
    s = cstatus(p, "main")
    assert s["restartCount"] == 1
    assert s["lastState"]["terminated"]["exitCode"] == 7
    assert s["state"]["terminated"]["reason"] == "Completed"
    assert (tmp_path / "count").read_text() == "2"
    # `kubectl logs --previous` shows the failed instance.
    prev = kube.kubectl("logs", "retry", "--previous")
    assert prev.returncode == 0 and "attempt 0" in prev.stdout, prev.stderr


def test_always_restarts_a_container_that_exits_zero(kube: Kube) -> None:
    kube.create(pod("loop", [{"name": "main", "command": py("print('once')")}], restartPolicy="Always"))
    p = kube.wait_pod("loop", lambda p: cstatus(p, "main")["restartCount"] >= 2, what="2 restarts")
    assert phase(p) == "Running"
    s = cstatus(p, "main")
    assert s["lastState"]["terminated"]["exitCode"] == 0


def test_start_error_for_a_missing_command(kube: Kube) -> None:
    kube.create(pod("nocmd", [{"name": "main", "command": ["no-such-binary-xyz"]}], restartPolicy="Never"))
    term = cstatus(kube.wait_phase("nocmd", "Failed"), "main")["state"]["terminated"]
    assert term["reason"] == "StartError" and term["exitCode"] == 128 and "not found" in term["message"]


def test_init_containers_in_order_and_native_sidecar(kube: Kube, tmp_path: Path) -> None:
    def append(word: str) -> str:
        return f"open('/out/order', 'a').write('{word}\\n')"

    sidecar_code = (
        "import signal, sys, time;"
        f"{append('sidecar-start')}; open('/out/side-up', 'w').close();"
        f"signal.signal(signal.SIGTERM, lambda *a: ({append('sidecar-stop')}, sys.exit(0)));"
        "time.sleep(600)"
    )
    mount = [{"name": "out", "mountPath": "/out"}]
    spec = pod(
        "ordered",
        [
            {
                "name": "main",
                "command": py(f"import time; time.sleep(0.5); {append('main')}"),
                "volumeMounts": mount,
            }
        ],
        restartPolicy="Never",
        volumes=[out_volume(tmp_path)],
        initContainers=[
            {"name": "init1", "command": py(append("init1")), "volumeMounts": mount},
            {
                "name": "side",
                "command": py(sidecar_code),
                "restartPolicy": "Always",
                "volumeMounts": mount,
                # The next init container waits for this (its "started").
                "startupProbe": {"exec": {"command": ["test", "-e", "/out/side-up"]}, "periodSeconds": 1},
            },
            {"name": "init2", "command": py(append("init2")), "volumeMounts": mount},
        ],
    )
    kube.create(spec)
    p = kube.wait_phase("ordered", "Succeeded")
    assert (tmp_path / "order").read_text().split() == [
        "init1",
        "sidecar-start",
        "init2",
        "main",
        "sidecar-stop",
    ]
    assert cstatus(p, "init1", init=True)["state"]["terminated"]["exitCode"] == 0
    side = cstatus(p, "side", init=True)
    assert side["state"]["terminated"]["exitCode"] == 0 and side["restartCount"] == 0


def test_sidecar_does_not_decide_the_phase_and_init_failure_fails_never_pods(kube: Kube) -> None:
    spec = pod(
        "badinit",
        [{"name": "main", "command": py("pass")}],
        restartPolicy="Never",
        initContainers=[{"name": "init", "command": py("raise SystemExit(2)")}],
    )
    kube.create(spec)
    p = kube.wait_phase("badinit", "Failed")
    assert cstatus(p, "init", init=True)["state"]["terminated"]["exitCode"] == 2
    assert "waiting" in cstatus(p, "main")["state"]
    # A sidecar killed by SIGTERM (exit 143) after the main container succeeded: still Succeeded.
    spec = pod(
        "sidecar-ok",
        [{"name": "main", "command": py("pass")}],
        restartPolicy="Never",
        initContainers=[
            {"name": "side", "command": py("import time; time.sleep(600)"), "restartPolicy": "Always"}
        ],
    )
    kube.create(spec)
    p = kube.wait_phase("sidecar-ok", "Succeeded")
    assert cstatus(p, "side", init=True)["state"]["terminated"]["exitCode"] == 143


def test_graceful_deletion_sigterm_then_grace_then_kill(kube: Kube, tmp_path: Path) -> None:
    # Each process says when its SIGTERM disposition is in place: on a loaded machine Python may
    # still be starting when the container already counts as running.
    handler = (
        "import signal, sys, time;"
        "signal.signal(signal.SIGTERM, lambda *a: (open('/out/term', 'w').write('TERM'), sys.exit(0)));"
        "open('/out/polite-armed', 'w').close(); time.sleep(600)"
    )
    stubborn = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
        "open('/out/stubborn-armed', 'w').close(); time.sleep(600)"
    )
    mount = [{"name": "out", "mountPath": "/out"}]
    kube.create(
        pod(
            "polite",
            [{"name": "main", "command": py(handler), "volumeMounts": mount}],
            volumes=[out_volume(tmp_path)],
        )
    )
    kube.create(
        pod(
            "stubborn",
            [{"name": "main", "command": py(stubborn), "volumeMounts": mount}],
            volumes=[out_volume(tmp_path)],
            terminationGracePeriodSeconds=30,
        )
    )
    polite_pid = container_pid(kube.wait_ready("polite"), "main")
    stubborn_pid = container_pid(kube.wait_ready("stubborn"), "main")
    for armed in ("polite-armed", "stubborn-armed"):
        deadline = time.monotonic() + 60
        while not (tmp_path / armed).exists():
            assert time.monotonic() < deadline, f"{armed} never written"
            time.sleep(0.1)

    t0 = time.monotonic()
    kube.delete_pod("polite", grace=10)
    kube.wait_gone("polite", timeout=30)
    assert time.monotonic() - t0 < 8, "a process that exits on SIGTERM ends the deletion early"
    assert (tmp_path / "term").read_text() == "TERM"
    assert not pid_alive(polite_pid)

    t0 = time.monotonic()
    kube.delete_pod("stubborn", grace=2)
    p = kube.wait_pod("stubborn", lambda p: bool(p["metadata"].get("deletionTimestamp")) or False, timeout=10)
    kube.wait_gone("stubborn", timeout=30)
    elapsed = time.monotonic() - t0
    assert 1.5 <= elapsed < 10, elapsed
    assert not pid_alive(stubborn_pid)
    assert p["metadata"]["deletionGracePeriodSeconds"] == 2


def test_env_valuefrom_envfrom_and_volumes_at_mount_paths(kube: Kube, tmp_path: Path) -> None:
    kube.create(
        {"kind": "Secret", "metadata": {"name": "creds"}, "stringData": {"user": "alice", "pass": "pw"}}
    )
    kube.create(
        {"kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"mode": "fast", "app.conf": "x=1"}}
    )
    code = """
import json, os
names = ['CFG_mode', 'user', 'PASS', 'MODE', 'POD', 'NS', 'IP', 'NODE', 'GREETING', 'MISSING_OPT',
         'KUBERNETES_SERVICE_HOST']
env = {k: os.environ.get(k) for k in names}
files = {
    'labels': open('/etc/podinfo/labels').read(),
    'secret': open('/etc/creds/user').read(),
    'conf': open('/config/app.conf').read(),
    'scratch': os.path.isdir('/scratch'),
    'cwd': os.getcwd(),
}
open('/scratch/x', 'w').write('ok')
result = {'env': env, 'files': files, 'path0': os.environ['PATH'].split(':')[0]}
json.dump(result, open('/out/result.json', 'w'))
"""
    container = {
        "name": "main",
        "command": py(code),
        "envFrom": [
            {"configMapRef": {"name": "settings"}, "prefix": "CFG_"},
            {"secretRef": {"name": "creds"}},
        ],
        "env": [
            {"name": "PASS", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "pass"}}},
            {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "GREETING", "value": "hello $(user) in $(NS)"},
            {
                "name": "MISSING_OPT",
                "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k", "optional": True}},
            },
        ],
        "volumeMounts": [
            {"name": "out", "mountPath": "/out"},
            {"name": "podinfo", "mountPath": "/etc/podinfo"},
            {"name": "creds", "mountPath": "/etc/creds", "readOnly": True},
            {"name": "config", "mountPath": "/config"},
            {"name": "scratch", "mountPath": "/scratch"},
        ],
    }
    volumes = [
        out_volume(tmp_path),
        {
            "name": "podinfo",
            "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]},
        },
        {"name": "creds", "secret": {"secretName": "creds"}},
        {
            "name": "config",
            "configMap": {"name": "settings", "items": [{"key": "app.conf", "path": "app.conf"}]},
        },
        {"name": "scratch", "emptyDir": {}},
    ]
    kube.create(pod("envpod", [container], restartPolicy="Never", volumes=volumes, labels={"app": "envtest"}))
    p = kube.wait_phase("envpod", "Succeeded", "Failed")
    assert phase(p) == "Succeeded", kube.kubectl("logs", "envpod").stdout
    result = json.loads((tmp_path / "result.json").read_text())
    env, files = result["env"], result["files"]
    assert (
        env["CFG_mode"] == "fast" and env["user"] == "alice" and env["PASS"] == "pw" and env["MODE"] == "fast"
    )
    assert (env["POD"], env["NS"], env["NODE"]) == ("envpod", kube.ns, "localnode")
    assert env["IP"] == p["status"]["podIP"]
    assert env["GREETING"] == f"hello alice in {kube.ns}"
    assert env["MISSING_OPT"] is None
    assert env["KUBERNETES_SERVICE_HOST"] == "127.0.0.1"
    assert files["labels"] == 'app="envtest"\n'
    assert files["secret"] == "alice" and files["conf"] == "x=1" and files["scratch"] is True
    assert files["cwd"] == str(Path(__file__).resolve().parents[2]), "default workingDir: the agent's root"
    assert Path(result["path0"]).resolve() == Path(__import__("sys").executable).parent.resolve()


def test_missing_secret_waits_then_starts(kube: Kube) -> None:
    container = {
        "name": "main",
        "command": py("import os; print(os.environ['TOKEN'])"),
        "env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "late", "key": "token"}}}],
    }
    kube.create(pod("waits", [container], restartPolicy="Never"))
    p = kube.wait_pod(
        "waits",
        lambda p: (
            cstatus(p, "main")["state"].get("waiting", {}).get("reason") == "CreateContainerConfigError"
        ),
        what="CreateContainerConfigError",
    )
    assert phase(p) == "Pending"
    kube.create({"kind": "Secret", "metadata": {"name": "late"}, "stringData": {"token": "t0k"}})
    kube.wait_phase("waits", "Succeeded")
    assert kube.kubectl("logs", "waits").stdout.strip() == "t0k"


def test_readiness_probe_gates_ready(kube: Kube, tmp_path: Path) -> None:
    code = "import time, os; time.sleep(600)"
    container = {
        "name": "main",
        "command": py(code),
        "readinessProbe": {"exec": {"command": ["test", "-e", "/out/ready"]}, "periodSeconds": 1},
        "volumeMounts": [{"name": "out", "mountPath": "/out"}],
    }
    kube.create(pod("probed", [container], volumes=[out_volume(tmp_path)]))
    p = kube.wait_phase("probed", "Running")
    time.sleep(1.5)
    p = kube.pod("probed") or p
    assert not is_ready(p) and cstatus(p, "main")["ready"] is False
    (tmp_path / "ready").write_text("")
    kube.wait_ready("probed", timeout=20)
    kube.delete_pod("probed", grace=0)


def test_termination_message_from_file_and_from_logs(kube: Kube, tmp_path: Path) -> None:
    """As the kubelet: the terminationMessagePath file is the message; with FallbackToLogsOnError
    a failed container that wrote none gets the end of its log; a success never does."""
    noisy = "import sys; [print(f'line {i}') for i in range(200)]; print('the cause'); sys.exit(2)"
    containers: dict[str, dict[str, Any]] = {
        "file": {
            "command": py("open('/out/term', 'w').write('wrote this'); raise SystemExit(1)"),
            "terminationMessagePath": "/out/term",
            "volumeMounts": [{"name": "out", "mountPath": "/out"}],
        },
        "logs": {"command": py(noisy), "terminationMessagePolicy": "FallbackToLogsOnError"},
        "nofallback": {"command": py(noisy)},
        "ok": {"command": py("print('fine')"), "terminationMessagePolicy": "FallbackToLogsOnError"},
    }
    volumes = [out_volume(tmp_path)]
    for name, c in containers.items():
        kube.create(pod(f"term-{name}", [{"name": "main", **c}], restartPolicy="Never", volumes=volumes))
    messages = {}
    for name in containers:
        p = kube.wait_phase(f"term-{name}", "Succeeded", "Failed")
        messages[name] = cstatus(p, "main")["state"]["terminated"].get("message")
    assert messages["file"] == "wrote this"
    tail = messages["logs"]
    assert tail is not None and tail.endswith("line 199\nthe cause\n")
    assert len(tail.splitlines()) == 80 and tail.startswith("line 121\n"), "the last 80 lines"
    assert messages["nofallback"] is None and messages["ok"] is None
    described = kube.kubectl("describe", "pod", "term-logs").stdout
    assert "the cause" in described
