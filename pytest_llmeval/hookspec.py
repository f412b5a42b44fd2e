"""Hooks that conftest.py files and plugins can implement to extend pytest_llmeval."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pytest_llmeval.backends import Backend
    from pytest_llmeval.declare.models import ModelSpec


@pytest.hookspec(firstresult=True)
def pytest_llmeval_make_backend(config: pytest.Config, spec: ModelSpec) -> Backend | None:
    """Create the resident backend for `spec` (called once per model per worker process).

    Return a Backend to take over, or None to let the next implementation (ultimately the
    built-in registry, which runs last) decide. `spec.backend` names the requested backend.
    """


@pytest.hookspec
def pytest_llmeval_update_report(config: pytest.Config, report: dict[str, Any]) -> None:
    """Called on the controller with the finished report envelope just before it is written;
    implementations may add keys (e.g. a patch id for an A/B run)."""
