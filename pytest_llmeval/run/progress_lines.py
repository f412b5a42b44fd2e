"""Where progress text goes: the pytest terminal, also from inside an item's setup.

Model work happens while an item sets up, with pytest capturing output, so a line written
then would land in the item's captured output; it is written with capture disabled for the
moment, as pytest's own live logging does. An xdist worker has no terminal of its own: its
model-loading lines go to its stderr, which xdist leaves connected to the session's
terminal, with the worker's name in front (the controller prints the progress lines, it
sees every record arrive).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from pytest_llmeval.report.progress import Progress


@contextlib.contextmanager
def _uncaptured(config: pytest.Config) -> Iterator[None]:
    capman = config.pluginmanager.get_plugin("capturemanager")
    if capman is None:
        yield
        return
    with capman.global_and_fixture_disabled():
        yield


def terminal_line(config: pytest.Config, line: str) -> None:
    """Write `line` to the session's terminal; nothing without one (`-p no:terminal`)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    with _uncaptured(config):
        reporter.ensure_newline()
        writer = config.get_terminal_writer()
        if writer.width_of_current_line:
            # The reporter's own check misses result letters written after an earlier
            # progress line (it tracks file names, not columns).
            writer.line()
        reporter.write_line(line)


def is_terminal(config: pytest.Config) -> bool:
    """Whether the session's terminal output goes to a terminal (not a file or a CI log)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    return bool(getattr(reporter, "isatty", False))


class WorkerLines:
    """An xdist worker's engine events as `[gw0] llmeval: loading model X ...` on stderr."""

    def __init__(self, config: pytest.Config, worker: str, interval_s: float) -> None:
        self.config = config
        self.worker = worker
        self.progress = Progress(interval_s=interval_s, total=lambda: 0)
        # `-p no:terminal` on the command line reaches the workers too: stay silent then.
        self.silent = interval_s <= 0 or config.pluginmanager.is_blocked("terminal")

    def event(self, kind: str, model: str, facts: dict[str, Any]) -> None:
        """Print the line this event calls for (model loading, a model's first batch)."""
        line = self.progress.event(kind, model, facts)
        if line is None or self.silent:
            return
        with _uncaptured(self.config):
            sys.stderr.write(f"[{self.worker}] {line}\n")
            sys.stderr.flush()
