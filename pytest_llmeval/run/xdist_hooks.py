"""Hooks that exist only when pytest-xdist is active: GPU pinning and up-front scheduling.

Registered by the main plugin when xdist is installed, so that its hook names are known.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterator
from typing import Any

import execnet
import pytest

from pytest_llmeval.run.gpus import VARIABLE, GpuPinningWarning, assign_gpus, visible_gpus
from pytest_llmeval.run.scheduling import EvalScheduling

# How far ahead a worker looks into its queue for items to batch with the current one.
LOOKAHEAD = 1024


class XdistHooks:
    def __init__(self, pin_gpus: bool) -> None:
        self.pin_gpus = pin_gpus
        self.assigned: dict[str, str | None] = {}

    def pytest_xdist_setupnodes(self, config: pytest.Config, specs: list[execnet.XSpec]) -> None:
        """Give each worker spec its GPU before the workers start (nothing without GPUs)."""
        if not self.pin_gpus:
            return
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", GpuPinningWarning)
            gpus = assign_gpus(len(specs), visible_gpus())
        for warning in caught:
            # Shown on the terminal too: warnings raised while xdist starts its workers
            # come before pytest's warning capture is in place.
            reporter = config.pluginmanager.get_plugin("terminalreporter")
            if reporter is not None:
                reporter.write_line(f"llmeval: {warning.message}", yellow=True)
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )
        for position, (spec, gpu) in enumerate(zip(specs, gpus, strict=True)):
            if gpu is None or VARIABLE in spec.env:
                continue  # no GPUs, or the user pinned this spec by hand
            # The spec string is what xdist re-parses (and what a replacement worker reuses).
            pinned = execnet.XSpec(f"{spec}//env:{VARIABLE}={gpu}")
            pinned.id = spec.id  # xdist set the id on the object, not in the string
            specs[position] = pinned

    @pytest.hookimpl(tryfirst=True)
    def pytest_xdist_make_scheduler(self, config: pytest.Config, log: Any) -> Any:
        if config.getvalue("dist") == "load":  # the default for -n; an explicit --dist wins
            return EvalScheduling(config, log)
        return None


def worker_upcoming(config: pytest.Config, session: pytest.Session) -> Iterator[pytest.Item]:
    """Items queued for this xdist worker after the running one, read from its queue."""
    interactor = next(
        (p for p in config.pluginmanager.get_plugins() if type(p).__name__ == "WorkerInteractor"),
        None,
    )
    queue = getattr(interactor, "torun", None)
    if interactor is None or queue is None:
        return
    indices: list[int] = []
    following = getattr(interactor, "nextitem_index", None)
    if isinstance(following, int):
        indices.append(following)
    with queue.lock() as pending:
        indices.extend(i for i in itertools.islice(pending, LOOKAHEAD) if isinstance(i, int))
    for index in indices:
        yield session.items[index]
