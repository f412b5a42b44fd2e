"""Things that are not collected items reported like tests (controller only): gates, and
items that never ran. Each becomes `TestReport`s through `pytest_runtest_logreport`, so the
terminal, JUnit, pytest-html and the session's failure count see them as tests."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any, Literal

import pytest
from _pytest.reports import TestReport

from pytest_llmeval.analyze.gates import GateResult

GATE_PREFIX = "gates"
"""The file part of a gate's node id: `gates::gsm8k::accuracy[>=0.6 qwen]`."""

Phase = Literal["setup", "call", "teardown"]
Outcome = Literal["passed", "failed", "skipped"]


def log_phases(
    config: pytest.Config,
    nodeid: str,
    location: tuple[str, int | None, str],
    phases: Sequence[tuple[Phase, Outcome]],
    longrepr: Any,
    properties: Sequence[tuple[str, object]] = (),
) -> None:
    """One report per phase (`longrepr` on the phases that did not pass)."""
    for when, outcome in phases:
        config.hook.pytest_runtest_logreport(
            report=TestReport(
                nodeid=nodeid,
                location=location,
                keywords={},
                outcome=outcome,
                longrepr=longrepr if outcome != "passed" else None,
                when=when,
                user_properties=list(properties),
            )
        )


def log_error(config: pytest.Config, nodeid: str, message: str) -> None:
    """Report an item that did not run as an error (terminal, JUnit, failure count)."""
    location = (nodeid.split("::")[0], None, nodeid)
    log_phases(config, nodeid, location, [("setup", "failed"), ("teardown", "passed")], message)


def log_gate(config: pytest.Config, gate: GateResult) -> None:
    """Report a gate like a test: terminal, JUnit, and the session's failure count."""
    name = gate.test_name
    facts = asdict(gate.as_record())
    keys = ("value", "n", "ci95", "partial", "reason", "baseline")
    properties = [(f"llmeval.gate.{k}", facts[k]) for k in keys if k != "baseline" or facts[k]]
    longrepr: Any = None
    phases: list[tuple[Phase, Outcome]]
    if gate.passed is None:  # not evaluated, and allowed: reported like a skipped test
        phases = [("setup", "skipped"), ("teardown", "passed")]
        longrepr = (GATE_PREFIX, 0, f"Skipped: {gate.describe()}")
    else:
        phases = [
            ("setup", "passed"),
            ("call", "passed" if gate.passed else "failed"),
            ("teardown", "passed"),
        ]
        longrepr = None if gate.passed else gate.describe()
    location = (GATE_PREFIX, None, name)
    log_phases(config, f"{GATE_PREFIX}::{name}", location, phases, longrepr, properties)
