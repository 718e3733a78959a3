"""`examples.digits.train` with the hooks some tests need, kept out of the example (which shows
the public SDK only). Run it from the repository root with `HOOKED_DIGITS` as the arguments of
`python` (a process of a test, or a pod's command on the local cluster, whose working directory
is the repository).

Hooks (environment):
- `TRAINJOB_TEST_KILL_AFTER_UPLOAD=<iteration>`: rank `TRAINJOB_TEST_KILL_RANK` (default 0)
  stores its checkpoint files of that iteration exactly as `report()` does (the SDK's own
  upload), then SIGKILLs itself before the report is sent;
- `TRAINJOB_TEST_RESUMED_WEIGHTS=<path>`: rank 0 saves the weights it resumed with there.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import torch
from torch import nn

import worker_sdk as train
from examples.digits import train as digits
from worker_sdk.checkpoint import LocalFile
from worker_sdk.protocol import ReportedCheckpoint
from worker_sdk.session import Session

HOOKED_DIGITS = (
    "-c",
    "import runpy; runpy.run_path('tests/integration/digits_hooks.py', run_name='__main__')",
)


def _kill_after_upload() -> None:
    wanted = os.environ.get("TRAINJOB_TEST_KILL_AFTER_UPLOAD")
    if not wanted:
        return
    victim = int(os.environ.get("TRAINJOB_TEST_KILL_RANK", "0"))
    upload = Session._upload

    def upload_then_die(
        self: Session, files: list[LocalFile], number: int, custom_dir_name: str | None, mode: str
    ) -> ReportedCheckpoint:
        reported = upload(self, files, number, custom_dir_name, mode)
        iteration = self.resume_point().iteration + number
        rank = self.context.get_world_rank()
        if iteration == int(wanted) and rank == victim:
            print(f"test hook: rank {rank} stored iteration {iteration} and dies", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        return reported

    Session._upload = upload_then_die  # type: ignore[method-assign]  # the hook wraps the class's method on purpose


def _save_resumed_weights() -> None:
    path = os.environ.get("TRAINJOB_TEST_RESUMED_WEIGHTS")
    if not path:
        return
    load_checkpoint = digits.load_checkpoint

    def load_and_save(directory: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> int:
        epoch = load_checkpoint(directory, model, optimizer)
        if train.get_context().get_world_rank() == 0:
            torch.save(model.state_dict(), path)
        return epoch

    digits.load_checkpoint = load_and_save


if __name__ == "__main__":
    _kill_after_upload()
    _save_resumed_weights()
    digits.main()
