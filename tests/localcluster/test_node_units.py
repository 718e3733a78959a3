"""The node agent's pure parts: env resolution, volumes, hosts files, status, logs, IP leases."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

import pytest

from localcluster.node.envvars import (
    ConfigError,
    PodContext,
    Refs,
    base_environment,
    expand,
    referenced_objects,
    resolve_argv,
    resolve_env,
)
from localcluster.node.logs import (
    MAX_TERMINATION_MESSAGE_LENGTH,
    MAX_TERMINATION_MESSAGE_LOG_LENGTH,
    tail_offset,
    termination_message,
)
from localcluster.node.network import (
    IPAllocator,
    PodRecord,
    ServiceRecord,
    pod_record,
    render_hosts,
    write_in_place,
)
from localcluster.node.quantity import divide_ceil, parse_quantity
from localcluster.node.sandbox import Isolation, SandboxMode, detect_isolation, wrap_command
from localcluster.node.status import (
    ContainerRecord,
    container_status,
    exit_code_of,
    pod_conditions,
    terminated_state,
    update_conditions,
)
from localcluster.node.volumes import (
    SA_MOUNT_PATH,
    FileContent,
    Mount,
    VolumeError,
    container_mounts,
    token_requests,
    volume_files,
    with_automount,
    write_files,
)


def make_pod(**spec: object) -> dict[str, object]:
    return {
        "metadata": {
            "name": "p1",
            "namespace": "ns1",
            "uid": "u-1",
            "labels": {"app": "web", "tier": "a b"},
            "annotations": {"note": 'say "hi"'},
        },
        "spec": {"nodeName": "localnode", "serviceAccountName": "sa1", **spec},
    }


# ---- env ------------------------------------------------------------------------------------------


def test_expand_follows_kubernetes_rules() -> None:
    env = {"A": "1", "B": "two"}
    assert expand("$(A)-$(B)", env) == "1-two"
    assert expand("$(MISSING)", env) == "$(MISSING)"
    assert expand("$$(A)", env) == "$(A)"
    assert expand("$A $ $(A", env) == "$A $ $(A"
    assert expand("$$$(A)", env) == "$1"


def test_env_order_envfrom_then_env_and_expansion() -> None:
    container = {
        "name": "c",
        "envFrom": [
            {"configMapRef": {"name": "cm"}, "prefix": "CM_"},
            {"secretRef": {"name": "sec"}},
            {"secretRef": {"name": "nope", "optional": True}},
        ],
        "env": [
            {"name": "PASSWORD", "value": "overridden"},
            {"name": "URL", "value": "http://$(CM_host):$(PORT)/$(UNDEFINED)"},
            {"name": "PORT", "value": "80"},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "NOTE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['note']"}}},
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "HOST", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
            {"name": "KEY", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "token"}}},
            {"name": "CMV", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "host"}}},
            {
                "name": "OPT",
                "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "nokey", "optional": True}},
            },
            {
                "name": "MEM",
                "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}},
            },
            {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
        ],
        "resources": {"limits": {"memory": "512Mi", "cpu": "500m"}},
    }
    pod = make_pod(containers=[container])
    refs = Refs(
        secrets={("ns1", "sec"): {"PASSWORD": "s3cret", "token": "tok"}, ("ns1", "nope"): None},
        configmaps={("ns1", "cm"): {"host": "db"}},
    )
    ctx = PodContext(pod=pod, pod_ip="127.1.0.5", host_ip="127.0.0.1")
    env = resolve_env(container, ctx, refs, {"BASE": "b"})
    assert env["BASE"] == "b"
    assert env["CM_host"] == "db"
    assert env["PASSWORD"] == "overridden"
    # PORT is defined after URL, so it is not expanded there (as in Kubernetes).
    assert env["URL"] == "http://db:$(PORT)/$(UNDEFINED)"
    assert (env["POD"], env["NS"], env["UID"], env["APP"]) == ("p1", "ns1", "u-1", "web")
    assert env["NOTE"] == 'say "hi"'
    assert (env["NODE"], env["SA"], env["IP"], env["HOST"]) == ("localnode", "sa1", "127.1.0.5", "127.0.0.1")
    assert (env["KEY"], env["CMV"]) == ("tok", "db")
    assert "OPT" not in env
    assert (env["MEM"], env["CPU"]) == ("512", "1")


def test_env_missing_references_are_config_errors() -> None:
    pod = make_pod()
    ctx = PodContext(pod=pod)
    missing_secret = {
        "name": "c",
        "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
    }
    with pytest.raises(ConfigError, match='secret "s" not found'):
        resolve_env(missing_secret, ctx, Refs(secrets={("ns1", "s"): None}))
    missing_key = {
        "name": "c",
        "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "m", "key": "k"}}}],
    }
    with pytest.raises(ConfigError, match="couldn't find key k"):
        resolve_env(missing_key, ctx, Refs(configmaps={("ns1", "m"): {}}))
    with pytest.raises(ConfigError, match='configmap "m" not found'):
        resolve_env({"name": "c", "envFrom": [{"configMapRef": {"name": "m"}}]}, ctx, Refs())


def test_argv_expansion_and_missing_command() -> None:
    c = {"name": "c", "command": ["python", "-c"], "args": ["print('$(MSG)')", "$$(MSG)"]}
    assert resolve_argv(c, {"MSG": "hi"}) == ["python", "-c", "print('hi')", "$(MSG)"]
    with pytest.raises(ConfigError, match="images are ignored"):
        resolve_argv({"name": "c", "image": "busybox"}, {})


def test_base_environment_puts_project_python_first_and_keeps_secrets_out() -> None:
    env = base_environment(
        python_bin_dir="/venv/bin",
        hostname="h",
        agent_env={
            "PATH": "/usr/bin",
            "HOME": "/root",
            "KUBECONFIG": "/x",
            "AWS_SECRET_ACCESS_KEY": "k",
            "OMP": "4",
        },
        pass_env=["OMP"],
    )
    assert env["PATH"] == "/venv/bin:/usr/bin"
    assert env["HOME"] == "/root" and env["OMP"] == "4" and env["HOSTNAME"] == "h"
    assert "KUBECONFIG" not in env and "AWS_SECRET_ACCESS_KEY" not in env


def test_referenced_objects() -> None:
    pod = make_pod(
        containers=[{"name": "c", "envFrom": [{"secretRef": {"name": "s1"}}]}],
        initContainers=[
            {"name": "i", "env": [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "c1"}}}]}
        ],
        volumes=[
            {"name": "v", "secret": {"secretName": "s2"}},
            {
                "name": "w",
                "projected": {"sources": [{"configMap": {"name": "c2"}}, {"secret": {"name": "s3"}}]},
            },
        ],
    )
    assert referenced_objects(pod) == ({"s1", "s2", "s3"}, {"c1", "c2"})


def test_quantities() -> None:
    assert parse_quantity("500m") * 2 == 1
    assert parse_quantity("1Gi") == 2**30
    assert parse_quantity("1e3") == 1000
    assert divide_ceil("1Gi", "1Mi") == "1024"
    assert divide_ceil("250m", "1m") == "250"
    assert divide_ceil("250m", None) == "1"


# ---- volumes --------------------------------------------------------------------------------------


def test_secret_configmap_downward_and_projected_files() -> None:
    pod = make_pod()
    ctx = PodContext(pod=pod, pod_ip="127.1.0.9")
    refs = Refs(
        secrets={("ns1", "s"): {"user": "u", "pass": "p"}}, configmaps={("ns1", "cm"): {"a.conf": "x=1"}}
    )
    files = volume_files({"name": "v", "secret": {"secretName": "s", "defaultMode": 0o400}}, ctx, refs, {})
    assert files == {"user": FileContent(b"u", 0o400), "pass": FileContent(b"p", 0o400)}
    files = volume_files(
        {
            "name": "v",
            "secret": {"secretName": "s", "items": [{"key": "user", "path": "dir/who", "mode": 0o600}]},
        },
        ctx,
        refs,
        {},
    )
    assert files == {"dir/who": FileContent(b"u", 0o600)}
    files = volume_files({"name": "v", "configMap": {"name": "cm"}}, ctx, refs, {})
    assert files == {"a.conf": FileContent(b"x=1", 0o644)}
    dapi = {
        "name": "podinfo",
        "downwardAPI": {
            "items": [
                {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}},
                {"path": "ip", "fieldRef": {"fieldPath": "status.podIP"}},
            ]
        },
    }
    files = volume_files(dapi, ctx, refs, {})
    assert files is not None
    assert files["labels"].data == b'app="web"\ntier="a b"\n'
    assert files["annotations"].data == b'note="say \\"hi\\""\n'
    assert files["ip"].data == b"127.1.0.9"
    projected = {
        "name": "all",
        "projected": {
            "sources": [
                {"serviceAccountToken": {"path": "token", "audience": "coord", "expirationSeconds": 600}},
                {"secret": {"name": "s", "items": [{"key": "user", "path": "user"}]}},
                {"downwardAPI": {"items": [{"path": "ns", "fieldRef": {"fieldPath": "metadata.namespace"}}]}},
            ]
        },
    }
    assert token_requests({"spec": {"volumes": [projected]}}) == [("coord", 600)]
    files = volume_files(projected, ctx, refs, {("coord", 600): "jwt"})
    assert files is not None
    assert {k: v.data for k, v in files.items()} == {"token": b"jwt", "user": b"u", "ns": b"ns1"}
    with pytest.raises(VolumeError, match="token"):
        volume_files(projected, ctx, refs, {})
    with pytest.raises(VolumeError, match='secret "gone" not found'):
        volume_files({"name": "v", "secret": {"secretName": "gone"}}, ctx, refs, {})
    assert (
        volume_files({"name": "v", "secret": {"secretName": "gone", "optional": True}}, ctx, refs, {}) == {}
    )
    assert volume_files({"name": "v", "emptyDir": {}}, ctx, refs, {}) is None


def test_automount_adds_the_service_account_volume_once() -> None:
    pod = make_pod(containers=[{"name": "c"}])
    auto = with_automount(pod)
    mounts = auto["spec"]["containers"][0]["volumeMounts"]
    assert [m["mountPath"] for m in mounts] == [SA_MOUNT_PATH]
    assert with_automount(auto) == auto
    assert with_automount(make_pod(containers=[{"name": "c"}], automountServiceAccountToken=False))[
        "spec"
    ] == {
        "nodeName": "localnode",
        "serviceAccountName": "sa1",
        "containers": [{"name": "c"}],
        "automountServiceAccountToken": False,
    }


def test_write_files_replaces_content_and_removes_stale(tmp_path: Path) -> None:
    d = tmp_path / "vol"
    assert write_files(d, {"a": FileContent(b"1", 0o644), "sub/b": FileContent(b"2", 0o600)})
    assert (d / "sub/b").read_bytes() == b"2" and (d / "sub/b").stat().st_mode & 0o777 == 0o600
    assert not write_files(d, {"a": FileContent(b"1", 0o644), "sub/b": FileContent(b"2", 0o600)})
    assert write_files(d, {"a": FileContent(b"3", 0o644)})
    assert (d / "a").read_bytes() == b"3" and not (d / "sub").exists()
    with pytest.raises(VolumeError):
        write_files(d, {"../escape": FileContent(b"", 0o644)})


def test_container_mounts_subpath_and_order(tmp_path: Path) -> None:
    dirs = {"data": tmp_path / "data", "cfg": tmp_path / "cfg"}
    for p in dirs.values():
        p.mkdir()
    c = {
        "volumeMounts": [
            {"name": "cfg", "mountPath": "/data/cfg/sub", "readOnly": True},
            {"name": "data", "mountPath": "/data"},
            {"name": "data", "mountPath": "/logs", "subPathExpr": "$(POD)"},
        ]
    }
    mounts = container_mounts(c, dirs, {"POD": "p1"})
    assert [m.target for m in mounts] == ["/data", "/logs", "/data/cfg/sub"]
    assert mounts[1].source == str(tmp_path / "data/p1") and (tmp_path / "data/p1").is_dir()
    assert mounts[2].read_only
    with pytest.raises(ConfigError):
        container_mounts({"volumeMounts": [{"name": "x", "mountPath": "/x"}]}, dirs, {})


# ---- hosts files ----------------------------------------------------------------------------------


def test_hosts_file_names_pods_and_services() -> None:
    rank0 = PodRecord("ml", "job-0", "127.1.0.1", "job-0", "job", {"job": "j"}, ready=True)
    rank1 = PodRecord("ml", "job-1", "127.1.0.2", "job-1", "job", {"job": "j"}, ready=False)
    web = PodRecord("other", "web-x", "127.1.0.3", "web-x", "", {"app": "web"}, ready=True)
    services = [
        ServiceRecord("ml", "job", headless=True, selector={"job": "j"}),
        ServiceRecord("other", "web", headless=False, selector={"app": "web"}),
    ]
    hosts = render_hosts(rank1, [rank0, rank1, web], services)
    lines = hosts.splitlines()
    assert "127.1.0.2\tjob-1.job.ml.svc.cluster.local job-1" in lines
    assert "127.1.0.1\tjob-0.job.ml.svc.cluster.local job-0.job.ml.svc job-0.job.ml job-0.job" in lines
    # rank1 is not ready: not published (no publishNotReadyAddresses) except as its own name.
    assert not any(line.startswith("127.1.0.2\tjob-1.job.ml.svc.cluster.local job-1.job") for line in lines)
    assert "127.1.0.1\tjob.ml.svc.cluster.local job.ml.svc job.ml job" in lines
    # A ClusterIP service from another namespace: no bare short name.
    assert "127.1.0.3\tweb.other.svc.cluster.local web.other.svc web.other" in lines
    assert any("kubernetes.default.svc.cluster.local" in line for line in lines)
    services[0] = ServiceRecord("ml", "job", headless=True, selector={"job": "j"}, publish_not_ready=True)
    hosts = render_hosts(rank0, [rank0, rank1, web], services)
    assert "127.1.0.2\tjob-1.job.ml.svc.cluster.local job-1.job.ml.svc job-1.job.ml job-1.job" in hosts
    assert "127.1.0.2\tjob.ml.svc.cluster.local job.ml.svc job.ml job" in hosts


def test_hosts_need_the_headless_service_for_subdomain_names() -> None:
    p = PodRecord("ml", "a", "127.1.0.1", "a", "sub", ready=True)
    hosts = render_hosts(p, [p], [])
    assert "a.sub.ml.svc.cluster.local a.sub.ml.svc" not in hosts
    assert "127.1.0.1\ta.sub.ml.svc.cluster.local a" in hosts  # its own name only


def test_pod_record_from_object() -> None:
    pod = make_pod(hostname="h", subdomain="s", hostAliases=[{"ip": "10.0.0.1", "hostnames": ["db"]}])
    rec = pod_record(pod, "127.1.0.7", True)
    assert (rec.hostname, rec.subdomain, rec.namespace) == ("h", "s", "ns1")
    assert "10.0.0.1\tdb" in render_hosts(rec, [rec], [])


def test_write_in_place_keeps_the_inode(tmp_path: Path) -> None:
    f = tmp_path / "hosts"
    write_in_place(f, "a long first version\n")
    inode = f.stat().st_ino
    assert write_in_place(f, "short\n")
    assert f.read_text() == "short\n" and f.stat().st_ino == inode
    assert not write_in_place(f, "short\n")


def test_ip_allocator_is_unique_across_allocators(tmp_path: Path) -> None:
    a = IPAllocator(tmp_path, first="127.9.0.1", last="127.9.0.6")
    b = IPAllocator(tmp_path, first="127.9.0.1", last="127.9.0.6")
    ips_a = {a.allocate(f"a{i}") for i in range(3)}
    ips_b = {b.allocate(f"b{i}") for i in range(3)}
    assert len(ips_a | ips_b) == 6
    assert a.allocate("a0") in ips_a  # idempotent per owner
    with pytest.raises(RuntimeError):
        b.allocate("b-more")
    a.release("a1")
    assert b.allocate("b-more") in ips_a
    a.release_all()
    b.release_all()


# ---- status ---------------------------------------------------------------------------------------


def test_exit_codes_follow_the_kubelet() -> None:
    assert exit_code_of(0) == (0, None)
    assert exit_code_of(3) == (3, None)
    assert exit_code_of(-15) == (143, 15)
    assert exit_code_of(-9) == (137, 9)
    t = terminated_state(-15, "s", "f")
    assert t["exitCode"] == 143 and t["reason"] == "Error" and t["signal"] == 15
    assert terminated_state(0, "s", "f")["reason"] == "Completed"
    assert terminated_state(-9, "s", "f", oom=True)["reason"] == "OOMKilled"


def test_container_record_transitions() -> None:
    rec = ContainerRecord(name="c", image="img")
    assert container_status(rec)["state"] == {"waiting": {"reason": "ContainerCreating"}}
    rec.set_running("t1", "local://1", ready=True)
    assert container_status(rec)["ready"] and container_status(rec)["started"]
    rec.set_terminated(terminated_state(1, "t1", "t2"))
    st = container_status(rec)
    assert (
        st["state"]["terminated"]["exitCode"] == 1 and st["state"]["terminated"]["containerID"] == "local://1"
    )
    assert not st["ready"] and not st["started"]


def test_conditions_keep_transition_times() -> None:
    c1 = update_conditions([], {"Ready": (False, "ContainersNotReady")}, "t1")
    assert c1[0]["lastTransitionTime"] == "t1" and c1[0]["reason"] == "ContainersNotReady"
    c2 = update_conditions(c1, {"Ready": (False, "ContainersNotReady")}, "t2")
    assert c2[0]["lastTransitionTime"] == "t1"
    c3 = update_conditions(c2, {"Ready": (True, None)}, "t3")
    assert c3[0]["lastTransitionTime"] == "t3" and "reason" not in c3[0]
    done = pod_conditions(
        c3, phase="Succeeded", initialized=True, init_reason=None, containers_ready=True, now="t4"
    )
    ready = next(c for c in done if c["type"] == "Ready")
    assert ready["status"] == "False" and ready["reason"] == "PodCompleted"
    assert {c["type"] for c in done} >= {"PodScheduled", "Initialized", "ContainersReady", "Ready"}


# ---- logs -----------------------------------------------------------------------------------------


def test_tail_offset(tmp_path: Path) -> None:
    f = tmp_path / "log"
    f.write_bytes(b"one\ntwo\nthree\n")
    assert f.read_bytes()[tail_offset(f, 2) :] == b"two\nthree\n"
    assert f.read_bytes()[tail_offset(f, 10) :] == b"one\ntwo\nthree\n"
    assert tail_offset(f, 0) == f.stat().st_size
    f.write_bytes(b"one\ntwo")
    assert f.read_bytes()[tail_offset(f, 1) :] == b"two"


# ---- sandbox (real processes) ---------------------------------------------------------------------


def test_sandbox_mounts_volumes_and_hosts_at_their_paths(tmp_path: Path) -> None:
    mode = detect_isolation("auto")
    if mode.isolation is Isolation.NONE:
        pytest.skip("no mount namespaces on this machine")
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "labels").write_text('app="x"\n')
    hosts = tmp_path / "hosts"
    hosts.write_text("127.3.0.7\tpeer.sub.ns.svc.cluster.local\n")
    target = tmp_path / "mnt" / "podinfo"  # does not exist yet: created as a mount point
    code = (
        "import socket, os;"
        f"print(open({str(target / 'labels')!r}).read().strip());"
        "print(socket.gethostbyname('peer.sub.ns.svc.cluster.local'));"
        "print(socket.gethostname()); print(os.getcwd())"
    )
    argv, cwd = wrap_command(
        mode,
        [sys.executable, "-c", code],
        mounts=[Mount(str(vol), str(target), read_only=True)],
        hosts_file=hosts,
        hostname="mypod",
        workdir=str(tmp_path),
    )
    out = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=30, check=True).stdout.split()
    assert out[0] == 'app="x"'
    assert out[1] == "127.3.0.7"
    if mode.uts:
        assert out[2] == "mypod"
    assert out[3] == str(tmp_path)
    # Nothing leaked to the host: the mount point is empty here and /etc/hosts is the real one.
    assert list(target.iterdir()) == []
    assert "peer.sub.ns.svc.cluster.local" not in Path("/etc/hosts").read_text()


def test_sandbox_fallback_runs_directly(tmp_path: Path) -> None:
    argv, cwd = wrap_command(
        SandboxMode(Isolation.NONE), ["true"], mounts=[], hosts_file=None, hostname="x", workdir=str(tmp_path)
    )
    assert argv == ["true"] and cwd == str(tmp_path)


def test_secret_data_decoding() -> None:
    from localcluster.node.envvars import decode_configmap, decode_secret

    assert decode_secret({"data": {"k": base64.b64encode(b"v").decode()}, "stringData": {"s": "t"}}) == {
        "k": "v",
        "s": "t",
    }
    assert decode_configmap({"data": {"a": "1"}, "binaryData": {"b": base64.b64encode(b"2").decode()}}) == {
        "a": "1",
        "b": "2",
    }


def test_a_mount_over_tmp_goes_after_the_mounts_whose_sources_live_under_tmp() -> None:
    from localcluster.node.sandbox import _mount_script
    from localcluster.node.volumes import Mount

    mounts = [
        Mount("/tmp/state/pod/volumes/scratch", "/tmp"),
        Mount("/tmp/state/pod/volumes/token", "/var/run/token", read_only=True),
    ]
    script = _mount_script(mounts, None, None, "/")

    assert script.index("/var/run/token") < script.index("mount --bind /tmp/state/pod/volumes/scratch /tmp")


def test_a_mount_that_would_hide_the_project_is_withheld() -> None:
    from localcluster.node.sandbox import split_hiding_mounts
    from localcluster.node.volumes import Mount

    tmp = Mount("/state/pod/volumes/scratch", "/tmp")
    token = Mount("/state/pod/volumes/token", "/var/run/token")
    made, withheld = split_hiding_mounts([tmp, token], keep=["/tmp/checkout/.venv/bin", "/tmp/checkout"])
    assert made == [token] and withheld == [tmp]
    made, withheld = split_hiding_mounts([tmp, token], keep=["/work/checkout/.venv/bin", "/work/checkout"])
    assert made == [tmp, token] and withheld == []


def test_a_mount_that_would_hide_the_python_behind_a_symlink_is_withheld(tmp_path: Path) -> None:
    """The project's `.venv` is a symlink into another directory (as with a venv under /tmp): a
    mount at that directory would hide the Python the pods run with, though the path written
    does not lie under it; so would one at a directory a second symlink on the way passes."""
    from localcluster.node.sandbox import split_hiding_mounts
    from localcluster.node.volumes import Mount

    scratch, project, elsewhere = tmp_path / "scratch", tmp_path / "project", tmp_path / "elsewhere"
    (elsewhere / "bin").mkdir(parents=True)
    (scratch / "venv").mkdir(parents=True)
    (scratch / "venv" / "bin").symlink_to(elsewhere / "bin")
    project.mkdir()
    (project / ".venv").symlink_to(scratch / "venv")
    keep = [str(project / ".venv" / "bin"), str(project)]
    at_scratch = Mount("/state/volumes/empty", str(scratch))
    at_elsewhere = Mount("/state/volumes/other", str(elsewhere))
    beside = Mount("/state/volumes/data", str(tmp_path / "data"))
    made, withheld = split_hiding_mounts([at_scratch, at_elsewhere, beside], keep=keep)
    assert withheld == [at_scratch, at_elsewhere] and made == [beside]


def test_termination_message_bounds(tmp_path: Path) -> None:
    """The kubelet's limits: 4 KiB from the end of the file; from the log, the last 80 lines and
    at most their last 2 KiB; the log only when the file is missing or empty and fallback is on."""
    message, log = tmp_path / "message", tmp_path / "0.log"
    log.write_text("".join(f"{i:04d} {'x' * 10}\n" for i in range(100)))
    assert termination_message(message, log, fallback_to_logs=False) == ""
    from_log = termination_message(message, log, fallback_to_logs=True)
    assert from_log.splitlines()[0] == f"0020 {'x' * 10}" and from_log.endswith(f"0099 {'x' * 10}\n")
    log.write_text("y" * 5000 + "\nlast\n")
    from_log = termination_message(message, log, fallback_to_logs=True)
    assert len(from_log.encode()) == MAX_TERMINATION_MESSAGE_LOG_LENGTH and from_log.endswith("\nlast\n")
    message.write_text("a" * 5000 + "END")
    from_file = termination_message(message, log, fallback_to_logs=True)
    assert len(from_file) == MAX_TERMINATION_MESSAGE_LENGTH and from_file.endswith("END")
    message.write_text("")
    assert termination_message(message, log, fallback_to_logs=True).endswith("last\n")
