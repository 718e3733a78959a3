"""`trainjob crd`: print or write the TrainJob CustomResourceDefinition generated from the API types."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from trainjob_operator.api.crd import trainjob_crd_yaml


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "crd",
        help="print the TrainJob CRD (YAML)",
        description="Print the TrainJob CustomResourceDefinition generated from the API types, or write "
        "it to a file (`make crd` writes deploy/crds/trainjob.dev_trainjobs.yaml).",
    )
    parser.add_argument("--output", "-o", type=Path, help="write the YAML to this file instead of stdout")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    text = trainjob_crd_yaml()
    if args.output is None:
        print(text, end="")
    else:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)
    return 0
