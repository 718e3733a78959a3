"""Subcommands of the `trainjob` CLI: each module defines `register(subparsers)`."""
