"""Every `trainjob` command against a real local stack: output and exit codes, errors included.

The read-only commands share one digits job (3 epochs) that `submit --follow` ran to success.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from tests.cli.cli_support import NAMESPACE, REPO_ROOT, Cli, FinishedJob, digits_manifest
from trainjob_operator.local.stack import read_stack_info
from worker_sdk.torch import load_state

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_error(result: subprocess.CompletedProcess[str], message: str) -> None:
    """Exit 1 with one `error: ...` line and no traceback."""
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert message in result.stderr, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")


def test_submit_follow_shows_progress_and_exits_0_on_success(finished_job: FinishedJob) -> None:
    result = finished_job.submit
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "trainjob.trainjob.dev/digits created"
    progress = [line for line in lines if line.startswith("digits: Running")]
    # The iteration as the status had it at each change: it moves forward while the job runs.
    # Not every iteration is seen: the coordinator publishes at most one patch a second, so two
    # epochs within one second show as one step (0 -> 2 seen once).
    seen = [int(m.group(1)) for line in progress if (m := re.search(r"iteration (\d)/3", line))]
    assert seen == sorted(seen) and any(n > 0 for n in seen), result.stdout
    assert any("iteration 3/3" in line for line in lines), result.stdout
    assert lines[-1].startswith("TrainJob digits Succeeded")


def test_submit_follow_exits_1_when_the_job_fails(cli: Cli) -> None:
    manifest = {
        "apiVersion": "trainjob.dev/v1alpha1",
        "kind": "TrainJob",
        "metadata": {"name": "doomed"},
        "spec": {
            "workers": 1,
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "trainer",
                            "image": "local",
                            "command": ["python", "-c", "raise SystemExit(3)"],
                        }
                    ]
                }
            },
            "storage": {"uri": "s3://trainjob/cli-doomed", "credentialsSecret": "trainjob-s3"},
            "failurePolicy": {"maxRestarts": 0},
        },
    }
    path = cli.workdir / "doomed.yaml"
    path.write_text(yaml.safe_dump(manifest))
    result = cli("submit", str(path), "--follow", timeout=180)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "TrainJob doomed Failed" in result.stdout


def test_submit_again_replaces_the_spec(cli: Cli, finished_job: FinishedJob) -> None:
    path = cli.workdir / "digits.yaml"
    manifest = yaml.safe_load(path.read_text())
    manifest["spec"]["ttlSecondsAfterFinished"] = 7200
    changed = cli.workdir / "digits-changed.yaml"
    changed.write_text(yaml.safe_dump(manifest))
    result = cli("submit", str(changed))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "trainjob.trainjob.dev/digits configured"


def test_list_shows_one_row_per_job(cli: Cli, finished_job: FinishedJob) -> None:
    result = cli("list")
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["NAME", "PHASE", "WORKERS", "ITERATION", "RESTARTS", "METRICS", "AGE"]
    row = next(row.split() for row in rows if row.startswith("digits "))
    assert row[1:5] == ["Succeeded", "0/2", "3/3", "0"]
    assert any(cell.startswith("val_loss=") for cell in row)


def test_list_of_an_empty_namespace(cli: Cli) -> None:
    result = cli("list", namespace="nothing-here")
    assert result.returncode == 0
    assert result.stdout.strip() == 'no TrainJobs in namespace "nothing-here"'


def test_status_shows_progress_checkpoints_conditions_and_events(cli: Cli, finished_job: FinishedJob) -> None:
    result = cli("status", "digits")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"digits (namespace {NAMESPACE})" in out
    field = {
        line.split(None, 1)[0]: line.split(None, 1)[1].strip()
        for line in out.splitlines()
        if len(line.split(None, 1)) == 2 and not line.startswith(" ")
    }
    assert field["Phase"] == "Succeeded"
    assert field["Attempt"] == "0"
    assert field["Iteration"] == "3/3"
    assert field["Progress"] == "100%, ETA 0s"  # the digits example tells its total (its epochs)
    assert "val_loss=" in field["Metrics"]
    assert "checkpoint_000003 (iteration 3" in out
    assert "Best checkpoint" in out
    assert "Conditions" in out and "AllWorkersSucceeded" in out
    assert "Events" in out and "job created" in out


def test_logs_of_rank_0_and_a_missing_attempt(cli: Cli, finished_job: FinishedJob) -> None:
    result = cli("logs", "digits")
    assert result.returncode == 0, result.stderr
    assert "epoch 2: loss" in result.stdout
    assert_error(
        cli("logs", "digits", "--attempt", "4"), 'TrainJob "digits" has no pod for rank 0 of attempt 4'
    )


def test_metrics_table_and_json_read_the_history_from_storage(cli: Cli, finished_job: FinishedJob) -> None:
    table = cli("metrics", "digits")
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split()[:2] == ["ITERATION", "ATTEMPT"] and "VAL_LOSS" in header
    assert [row.split()[0] for row in rows] == ["1", "2", "3"]

    lines = cli("metrics", "digits", "--json").stdout.splitlines()
    points = [json.loads(line) for line in lines]
    assert [p["iteration"] for p in points] == [1, 2, 3]
    assert {p["attempt"] for p in points} == {0}
    assert points[-1]["metrics"]["epoch"] == 2


def test_metrics_plot_writes_a_png(cli: Cli, finished_job: FinishedJob) -> None:
    plot = cli.workdir / "plots" / "digits.png"
    result = cli("metrics", "digits", "--plot", str(plot))
    assert result.returncode == 0, result.stderr
    assert f"wrote {plot}" in result.stdout
    data = plot.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 1000


def test_checkpoints_lists_the_committed_ones_with_latest_and_best(
    cli: Cli, finished_job: FinishedJob
) -> None:
    result = cli("checkpoints", "digits")
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert "SCORE (val_loss)" in header and "URI" in header
    assert [row.split()[0] for row in rows] == ["1", "2", "3"]
    assert rows[-1].rstrip().endswith("checkpoint_000003")
    assert "latest" in rows[-1]
    assert sum("best" in row for row in rows) == 1


def test_checkpoints_download_gives_files_that_load_with_torch(
    cli: Cli, finished_job: FinishedJob, tmp_path: Path
) -> None:
    target = tmp_path / "latest"
    result = cli("checkpoints", "download", "digits", str(target))
    assert result.returncode == 0, result.stderr
    assert "checkpoint_000003 (iteration 3" in result.stdout
    assert sorted(p.name for p in target.iterdir()) == ["state.pt"]
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    assert load_state(str(target), model=model)["epoch"] == 2

    first = tmp_path / "first"
    assert cli("checkpoints", "download", "digits", "--iteration", "1", str(first)).returncode == 0
    assert load_state(str(first), model=model)["epoch"] == 0
    assert_error(
        cli("checkpoints", "download", "digits", "--iteration", "99", str(tmp_path / "none")),
        'TrainJob "digits" has no committed checkpoint at iteration 99 (committed: 1, 2, 3)',
    )
    assert_error(cli("checkpoints", "download", "digits", str(target)), "is not an empty directory")


@pytest.mark.parametrize(
    "command",
    [["status"], ["logs"], ["metrics"], ["checkpoints"], ["checkpoints", "download", "{job}", "/tmp/unused"]],
)
def test_an_unknown_job_is_a_one_line_error(cli: Cli, command: list[str]) -> None:
    args = [word.format(job="nope") for word in command]
    if "{job}" not in " ".join(command):
        args.append("nope")
    assert_error(cli(*args), f'error: TrainJob "nope" not found in namespace "{NAMESPACE}"')


def test_bad_files_are_refused_before_anything_is_created(cli: Cli) -> None:
    assert_error(cli("submit", str(cli.workdir / "missing.yaml")), "cannot read")
    broken = cli.workdir / "broken.yaml"
    broken.write_text("spec: [unclosed\n")
    assert_error(cli("submit", str(broken)), "is not valid YAML")
    pod = cli.workdir / "pod.yaml"
    pod.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}))
    assert_error(cli("submit", str(pod)), "is v1/Pod, not a trainjob.dev/v1alpha1 TrainJob")
    invalid = digits_manifest("invalid")
    invalid["spec"]["workers"] = 0
    path = cli.workdir / "invalid.yaml"
    path.write_text(yaml.safe_dump(invalid))
    result = cli("submit", str(path))
    assert_error(result, "cannot create TrainJob 'invalid'")
    assert "workers" in result.stderr


def test_storage_commands_say_which_credentials_are_missing(cli: Cli) -> None:
    secretless = digits_manifest("secretless")
    secretless["spec"]["suspend"] = True  # never runs: only its storage settings matter
    del secretless["spec"]["storage"]["credentialsSecret"]
    wrong_secret = digits_manifest("wrong-secret")
    wrong_secret["spec"]["suspend"] = True
    wrong_secret["spec"]["storage"]["credentialsSecret"] = "absent"
    path = cli.workdir / "suspended.yaml"
    path.write_text(yaml.safe_dump_all([secretless, wrong_secret]))
    assert cli("submit", str(path)).returncode == 0

    assert_error(
        cli("metrics", "secretless"),
        "no S3 credentials for TrainJob 'secretless': set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
        "or name a Secret in spec.storage.credentialsSecret",
    )
    assert_error(cli("checkpoints", "wrong-secret"), f'Secret "absent" not found in namespace "{NAMESPACE}"')


def test_an_unreachable_api_is_a_one_line_error(cli: Cli, tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "gone", "cluster": {"server": "http://127.0.0.1:9"}}],
                "contexts": [{"name": "gone", "context": {"cluster": "gone", "user": "u"}}],
                "current-context": "gone",
                "users": [{"name": "u", "user": {}}],
            }
        )
    )
    assert_error(
        cli("list", kubeconfig=str(kubeconfig)), "cannot reach the Kubernetes API at http://127.0.0.1:9"
    )
    assert_error(
        cli("status", "x", kubeconfig=str(tmp_path / "absent")),
        f"kubeconfig {tmp_path / 'absent'} does not exist",
    )


def test_help_explains_every_command(cli: Cli) -> None:
    result = cli("--help")
    assert result.returncode == 0
    for command in ("submit", "list", "status", "logs", "metrics", "checkpoints", "demo"):
        assert f"    {command}" in result.stdout
        usage = cli(command, "--help")
        assert usage.returncode == 0, usage.stderr
        assert usage.stdout.startswith("usage: trainjob")


def test_a_running_local_up_in_the_default_directory_is_used_and_named(cli: Cli, tmp_path: Path) -> None:
    # What `trainjob local up` writes in .local/trainjob; this test process stands in for its owner.
    info = {"ownerPid": os.getpid(), "kubeconfig": str(cli.stack.kubeconfig), "s3Endpoint": "", "bucket": ""}
    (tmp_path / ".local" / "trainjob").mkdir(parents=True)
    (tmp_path / ".local" / "trainjob" / "stack.json").write_text(json.dumps(info))
    result = subprocess.run(
        [sys.executable, "-m", "trainjob_operator", "list", "-n", "nothing-here"],
        cwd=tmp_path,
        env=cli.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert f"using the local cluster of `trainjob local up` ({cli.stack.kubeconfig})" in result.stderr
    assert 'no TrainJobs in namespace "nothing-here"' in result.stdout


def test_the_namespace_defaults_to_the_kubeconfig_context_s(cli: Cli, tmp_path: Path) -> None:
    config = yaml.safe_load(Path(cli.stack.kubeconfig).read_text())
    for context in config["contexts"]:
        context["context"]["namespace"] = NAMESPACE
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [sys.executable, "-m", "trainjob_operator", "status", "nope", "--kubeconfig", str(kubeconfig)],
        cwd=tmp_path,
        env=cli.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert_error(result, f'TrainJob "nope" not found in namespace "{NAMESPACE}"')


# ---- demo --------------------------------------------------------------------------------------
# `trainjob demo` (what `make demo` runs), end to end as a subprocess: it reports the plot and the
# best checkpoint, and leaves no process behind.


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def named_pids(line: str) -> dict[str, int]:
    """`started: local up 12, apiserver 13, trainer digits-0-0 14` -> {name: pid}."""
    pairs = (item.rsplit(" ", 1) for item in line.split(": ", 1)[1].split(", "))
    return {name: int(pid) for name, pid in pairs}


@pytest.mark.slow
def test_demo_runs_digits_to_success_and_stops_everything_it_started(tmp_path: Path) -> None:
    # A working directory of its own, so the plot lands there and not in the checkout.
    for name in ("deploy", "examples"):
        (tmp_path / name).symlink_to(REPO_ROOT / name)
    state = tmp_path / "state"
    command = [sys.executable, "-m", "trainjob_operator", "demo", "--epochs", "3", "--dir", str(state)]
    env = {
        key: value for key, value in os.environ.items() if not key.startswith("AWS_") and key != "KUBECONFIG"
    }
    try:
        result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=420)
    finally:
        subprocess.run(
            [sys.executable, "-m", "trainjob_operator", "local", "down", "--dir", str(state)],
            capture_output=True,
            timeout=120,
        )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "$ kubectl apply -f" in out and "trainjob.trainjob.dev/digits created" in out
    assert "TrainJob digits Succeeded" in out
    best = re.search(
        r"^best checkpoint: (s3://\S+/default/digits/checkpoint_\d{6}) \(iteration (\d+)", out, re.M
    )
    assert best is not None, out
    assert f"trainjob checkpoints download digits --iteration {best.group(2)}" in out
    assert "metric history plot: demo-output/digits-metrics.png (3 iterations)" in out
    plot = tmp_path / "demo-output" / "digits-metrics.png"
    assert plot.read_bytes().startswith(PNG_SIGNATURE) and plot.stat().st_size > 1000

    started_line = next(line for line in out.splitlines() if line.startswith("started: "))
    stopped_line = next(line for line in out.splitlines() if line.startswith("stopped processes: "))
    started, stopped = named_pids(started_line), named_pids(stopped_line)
    assert set(started) == {"local up", "apiserver", "agent", "seaweedfs", "operator", "dashboard"}, (
        started_line
    )
    assert re.search(r"^dashboard: http://127\.0\.0\.1:\d+/", out, re.M), out
    assert set(started.items()) <= set(stopped.items())
    assert {"trainer digits-0-0", "trainer digits-0-1"} <= set(stopped), stopped_line
    assert "still running" not in out
    assert not [f"{name} {pid}" for name, pid in stopped.items() if alive(pid)]
    assert read_stack_info(state) is None
