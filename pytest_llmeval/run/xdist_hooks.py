"""xdist hooks of an eval run: GPU pinning before workers start, up-front scheduling, and
blaming a crash on the item that caused it (`pytest_llmeval.run.crash_journal`).

Registered by the plugin only when pytest-xdist is installed and the session shows at
configure time that it is an eval run (an llmeval option or ini key): both decisions come
before any test is collected, and an unrelated suite run with `-n` keeps xdist's own
behaviour. An explicit `--dist` always wins over the up-front scheduler.
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import execnet
import pytest

from pytest_llmeval.run.crash_journal import (
    ALONE_KEY,
    JOURNAL_KEY,
    belongs_to,
    journal_path,
    read_batch,
)
from pytest_llmeval.run.gpus import (
    SHARED_VARIABLE,
    VARIABLE,
    GpuPinningWarning,
    assign_gpus,
    sharing,
    visible_gpus,
)
from pytest_llmeval.run.scheduling import EvalScheduling

CRASH_ERROR = "llmeval_crash"
"""Attribute of xdist's crash report: the item's error when the crash is its own."""
ALONE_CRASH = "worker crashed while generating this item (alone)"


class XdistHooks:
    """Pinning, scheduling and crash containment for one session; `scheduler` is the one it
    made, if any."""

    def __init__(self, pin_gpus: bool, models: Sequence[str] = ()) -> None:
        self.pin_gpus = pin_gpus
        self.models = list(models)  # the run's model names: a model's arms share a worker
        self.scheduler: EvalScheduling | None = None
        self.journal: Path | None = None  # made with the first worker
        self.alone: set[str] = set()

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
        shared = sharing(gpus)
        for position, (spec, gpu) in enumerate(zip(specs, gpus, strict=True)):
            if gpu is None or VARIABLE in spec.env:
                continue  # no GPUs, or the user pinned this spec by hand
            # The spec string is what xdist re-parses (and what a replacement worker reuses).
            # The sharing count lets the worker's meters split a GPU it shares.
            env = f"//env:{VARIABLE}={gpu}//env:{SHARED_VARIABLE}={shared[position]}"
            pinned = execnet.XSpec(f"{spec}{env}")
            pinned.id = spec.id  # xdist set the id on the object, not in the string
            specs[position] = pinned

    @pytest.hookimpl(tryfirst=True)
    def pytest_xdist_make_scheduler(self, config: pytest.Config, log: Any) -> Any:
        """Up-front shares when `-n` runs with xdist's default distribution, else xdist's own."""
        if not dist_left_to_default(config):
            return None
        self.scheduler = EvalScheduling(config, log, self.models)
        return self.scheduler

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        """Tell each worker (replacements too) where its crash journal goes and which
        requests it must generate one at a time (those of batches that crashed a worker)."""
        if self.journal is None:
            self.journal = Path(tempfile.mkdtemp(prefix="llmeval-journal-"))
        node.workerinput[JOURNAL_KEY] = str(self.journal)
        node.workerinput[ALONE_KEY] = sorted(self.alone)

    @pytest.hookimpl(optionalhook=True)
    def pytest_handlecrashitem(self, crashitem: str, report: Any, sched: Any) -> None:
        """A worker died while running `crashitem`: blame it only when it was being generated
        by itself; when a batch of several was, run the item again on the replacement, which
        generates that batch one item at a time (see `pytest_llmeval.run.crash_journal`)."""
        worker = str(report.node.workerinput["workerid"])
        batch = None if self.journal is None else read_batch(self.journal, worker)
        if self.journal is None or batch is None:
            return  # it died outside generation: xdist's verdict on the running item stands
        journal_path(self.journal, worker).unlink(missing_ok=True)
        if all(belongs_to(key, crashitem) for key in batch):
            setattr(report, CRASH_ERROR, ALONE_CRASH)
            return
        fresh = set(batch) - self.alone
        scheduler = self.scheduler
        if not fresh or scheduler is None or sched is not scheduler or not scheduler.up_front:
            # Nothing new to try alone, or no up-front scheduler (it hands the leftovers to
            # the replacement) to send the item back to: the item is blamed, as xdist does.
            return
        self.alone |= fresh
        scheduler.mark_test_pending(crashitem)
        report.outcome = "rerun"
        report.longrepr = (
            f"worker {worker} crashed while generating a batch of {len(batch)} with this "
            "item: its replacement generates them one at a time"
        )

    def pytest_report_teststatus(self, report: Any) -> tuple[str, str, Any] | None:
        """An item sent back after a crash of its batch: R (rerun), not pytest's F."""
        if report.outcome == "rerun" and report.when == "???":
            return "rerun", "R", ("RERUN", {"yellow": True})
        return None

    def pytest_unconfigure(self) -> None:
        """Remove the crash journal directory."""
        if self.journal is not None:
            shutil.rmtree(self.journal, ignore_errors=True)


def dist_left_to_default(config: pytest.Config) -> bool:
    """Whether `--dist` was left unset (xdist then uses `load` for `-n`).

    xdist rewrites `config.option.dist` from "no" to "load" for `-n`, so an explicit
    `--dist load` is told apart by the arguments as parsed before that (command line,
    PYTEST_ADDOPTS and the addopts ini key).
    """
    raw = getattr(config.known_args_namespace, "dist", "no")
    return raw == "no" and config.getvalue("dist") == "load"
