"""The `trainjob` command: one entry point, one module per subcommand under `commands/`."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

# Each module defines `register(subparsers) -> None`, which adds its parser and sets
# `func=<callable(args) -> int>` as the parser's default.
_COMMAND_MODULES = (
    "submit",
    "list",
    "status",
    "logs",
    "metrics",
    "checkpoints",
    "dashboard",
    "demo",
    "local",
    "operator",
    "coordinator",
    "crd",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trainjob",
        description="Run distributed PyTorch training jobs on Kubernetes, with live progress and "
        "atomically committed checkpoints.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in _COMMAND_MODULES:
        module = importlib.import_module(f"trainjob_operator.commands.{name}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from trainjob_operator.client import CommandError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except CommandError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`): say nothing more, and keep Python's exit flush quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
