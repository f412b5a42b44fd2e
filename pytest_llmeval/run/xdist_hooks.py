"""xdist hooks of an eval run: GPU pinning before workers start, up-front scheduling.

Registered by the plugin only when pytest-xdist is installed and the session shows at
configure time that it is an eval run (an llmeval option or ini key): both decisions come
before any test is collected, and an unrelated suite run with `-n` keeps xdist's own
behaviour. An explicit `--dist` always wins over the up-front scheduler.
"""

from __future__ import annotations

import warnings
from typing import Any

import execnet
import pytest

from pytest_llmeval.run.gpus import (
    SHARED_VARIABLE,
    VARIABLE,
    GpuPinningWarning,
    assign_gpus,
    sharing,
    visible_gpus,
)
from pytest_llmeval.run.scheduling import EvalScheduling


class XdistHooks:
    """Pinning and scheduling for one session; `scheduler` is the one it made, if any."""

    def __init__(self, pin_gpus: bool) -> None:
        self.pin_gpus = pin_gpus
        self.scheduler: EvalScheduling | None = None

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
        self.scheduler = EvalScheduling(config, log)
        return self.scheduler


def dist_left_to_default(config: pytest.Config) -> bool:
    """Whether `--dist` was left unset (xdist then uses `load` for `-n`).

    xdist rewrites `config.option.dist` from "no" to "load" for `-n`, so an explicit
    `--dist load` is told apart by the arguments as parsed before that (command line,
    PYTEST_ADDOPTS and the addopts ini key).
    """
    raw = getattr(config.known_args_namespace, "dist", "no")
    return raw == "no" and config.getvalue("dist") == "load"
