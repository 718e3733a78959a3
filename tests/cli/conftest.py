"""CLI fixtures: the session's local stack (tests/conftest.py) with the CLI's namespace on it, and
one digits TrainJob run to success through `trainjob submit --follow`, which the read-only
command tests share."""

from __future__ import annotations

import pytest
import yaml

from tests.cli.cli_support import NAMESPACE, Cli, FinishedJob, digits_manifest
from trainjob_operator.local.stack import LocalStack


@pytest.fixture(scope="session")
def cli_stack(stack: LocalStack) -> LocalStack:
    """The shared stack, with the namespace (and its S3 credentials Secret) the CLI tests use."""
    stack.prepare_namespace(NAMESPACE)
    return stack


@pytest.fixture(scope="session")
def cli(cli_stack: LocalStack, tmp_path_factory: pytest.TempPathFactory) -> Cli:
    return Cli(cli_stack, tmp_path_factory.mktemp("cli-workdir"))


@pytest.fixture(scope="session")
def finished_job(cli: Cli) -> FinishedJob:
    """digits, 3 epochs, submitted and followed to the end with the CLI."""
    path = cli.workdir / "digits.yaml"
    path.write_text(yaml.safe_dump(digits_manifest("digits", epochs=3, step_sleep=0.05)))
    return FinishedJob("digits", cli("submit", str(path), "--follow", timeout=300))
