"""`pytest-llmeval` (also `python -m pytest_llmeval`): work with saved runs, no model needed.

Each subcommand lives in a module of its own in this folder, with `add_parser(subparsers)`
(its arguments) and `run(args) -> int` (its exit status); `COMMANDS` lists them in help order.
Saved runs are read through `runs.py` only. Nothing here imports torch or pytest: a saved
run is compared, plotted or regated on any machine.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from pytest_llmeval.cli.runs import RunError

COMMANDS = ("list", "regate", "ensemble")
"""The subcommands, each the module `pytest_llmeval.cli.<name>` (`list` is `list_runs`)."""
_MODULES = {"list": "list_runs"}


def parser() -> argparse.ArgumentParser:
    """The command line: one subparser per module of COMMANDS."""
    top = argparse.ArgumentParser(
        prog="pytest-llmeval",
        description="Compare, regate, audit and plot saved pytest-llmeval runs "
        "(run directories or report.json paths).",
    )
    subparsers = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"pytest_llmeval.cli.{_MODULES.get(name, name)}")
        module.add_parser(subparsers)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; a saved run that cannot be read is one line on stderr, exit 2."""
    args = parser().parse_args(argv)
    try:
        status: int = args.run(args)
    except RunError as exc:
        print(f"pytest-llmeval {args.command}: {exc}", file=sys.stderr)
        return 2
    return status
