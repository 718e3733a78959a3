"""CLI fixtures: one local stack per session, and one digits TrainJob run to success through
`trainjob submit --follow`, which the read-only command tests share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import yaml

from tests.cli.cli_support import NAMESPACE, REPO_ROOT, Cli, FinishedJob, digits_manifest
from trainjob_operator.local.stack import LocalStack


@pytest.fixture(scope="session")
def cli_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with LocalStack(tmp_path_factory.mktemp("cli-stack"), root=REPO_ROOT, namespaces=(NAMESPACE,)) as running:
        yield running


@pytest.fixture(scope="session")
def cli(cli_stack: LocalStack, tmp_path_factory: pytest.TempPathFactory) -> Cli:
    return Cli(cli_stack, tmp_path_factory.mktemp("cli-workdir"))


@pytest.fixture(scope="session")
def finished_job(cli: Cli) -> FinishedJob:
    """digits, 3 epochs, submitted and followed to the end with the CLI."""
    path = cli.workdir / "digits.yaml"
    path.write_text(yaml.safe_dump(digits_manifest("digits", epochs=3, step_sleep=0.05)))
    return FinishedJob("digits", cli("submit", str(path), "--follow", timeout=300))
