"""Standalone mode: ``python train.py`` on a laptop commits its checkpoints, and a rerun resumes."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from worker_sdk.protocol import CheckpointManifest, manifest_key
from worker_sdk.storage import open_storage

SCRIPT = textwrap.dedent(
    """
    import json, sys, tempfile, pathlib
    import worker_sdk as train

    checkpoint = train.get_checkpoint()
    resumed = None
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            resumed = {
                "uri": checkpoint.uri,
                "metadata": checkpoint.get_metadata(),
                "state": json.loads((pathlib.Path(directory) / "state.json").read_text()),
            }
    step = resumed["state"]["step"] if resumed else 0
    context = train.get_context()
    print(json.dumps({"resumed": resumed, "job": context.get_job_name(),
                      "storage": context.get_storage_uri()}))
    for _ in range(3):
        step += 1
        with tempfile.TemporaryDirectory() as directory:
            (pathlib.Path(directory) / "state.json").write_text(json.dumps({"step": step}))
            train.report({"step": step}, checkpoint=train.Checkpoint.from_directory(directory),
                         upload=sys.argv[1])
    """
)


def run_script(tmp_path: Path, upload: str, env: dict[str, str]) -> dict[str, Any]:
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TRAINJOB_")}
    result = subprocess.run(
        [sys.executable, str(script), upload],
        cwd=tmp_path,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    printed: dict[str, Any] = json.loads(result.stdout.splitlines()[0])
    return printed


def test_a_rerun_resumes_from_the_first_runs_checkpoint(tmp_path: Path, storage_uri: str) -> None:
    first = run_script(tmp_path, "sync", {"TRAINJOB_STORAGE_URI": storage_uri})
    assert first["resumed"] is None
    assert first["job"] == "train"  # the script's name

    second = run_script(tmp_path, "async", {"TRAINJOB_STORAGE_URI": storage_uri})
    assert second["resumed"]["uri"] == f"{storage_uri}/default/train/checkpoint_000003"
    assert second["resumed"]["state"] == {"step": 3}
    metadata = second["resumed"]["metadata"]
    assert (metadata["iteration"], metadata["attempt"], metadata["metrics"]) == (3, 0, {"step": 3})
    sha256 = hashlib.sha256(b'{"step": 3}').hexdigest()  # computed while uploading
    assert metadata["files"] == [{"path": "state.json", "size": len('{"step": 3}'), "sha256": sha256}]
    assert metadata["dataDir"] == "attempt-0"

    # The rerun's iterations continue after the checkpoint's: directory names never collide.
    storage = open_storage(storage_uri)
    assert storage.list_dirs("default/train") == [f"checkpoint_{i:06d}" for i in range(1, 7)]
    for iteration in range(1, 7):
        data = storage.get_bytes(manifest_key("default", "train", f"checkpoint_{iteration:06d}"))
        assert data is not None
        manifest = CheckpointManifest.from_json(json.loads(data))
        assert (manifest.iteration, manifest.metrics) == (iteration, {"step": iteration})


def test_without_storage_settings_checkpoints_go_under_the_working_directory(tmp_path: Path) -> None:
    first = run_script(tmp_path, "sync", {"TRAINJOB_NAME": "laptop"})
    assert first["storage"] == (tmp_path / "trainjob-results").as_uri()
    assert (tmp_path / "trainjob-results/default/laptop/checkpoint_000003/.trainjob-checkpoint.json").exists()
    second = run_script(tmp_path, "sync", {"TRAINJOB_NAME": "laptop"})
    assert second["resumed"]["state"] == {"step": 3}
