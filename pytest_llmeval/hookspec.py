"""Hooks that conftest.py files and plugins implement to extend pytest_llmeval.

Each `firstresult` hook has a built-in implementation that runs last (`trylast=True`), so an
implementation in a conftest.py or plugin wins by returning a value, and falls through to the
built-in one by returning None. Report hooks come in a pair: `generate`, then `update`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pytest_llmeval.backends import Backend
    from pytest_llmeval.declare.models import ModelSpec
    from pytest_llmeval.declare.task import ScoreFn, Task
    from pytest_llmeval.report.envelope import RunFacts, RunReport


@pytest.hookspec(firstresult=True)
def pytest_llmeval_make_backend(config: pytest.Config, spec: ModelSpec) -> Backend | None:
    """Create the resident backend for a model.

    Called once per model in each process that runs its items (each xdist worker), when the
    first item or the `llmeval_backend` fixture needs it.

    :param config: The pytest config.
    :param spec: The resolved model: `spec.name` as given with `--model`, `spec.backend`
        (`transformers`, `vllm`, `openai`, `callable`, or any name your hook accepts),
        `spec.model_id` and the alias's `spec.options`.
    :returns: An object with the `pytest_llmeval.backends.Backend` methods, or None to let
        the next implementation (ultimately the built-in registry) decide.

    Example, in a conftest.py::

        def pytest_llmeval_make_backend(config, spec):
            if spec.backend == "echo":
                return EchoBackend(spec)  # identity, render, info, generate, close
    """


@pytest.hookspec(firstresult=True)
def pytest_llmeval_make_scorer(config: pytest.Config, task: Task, name: str) -> ScoreFn | None:
    """Provide the scorer a task names as a string (`Task(scorer="contains")`).

    Called at collection, in every process that collects the task, once per task.

    :param config: The pytest config.
    :param task: The task that names the scorer.
    :param name: The scorer's name as the task gives it.
    :returns: A function `scorer(response, target, row) -> Score`, or None to let the next
        implementation decide (the built-in one knows `numeric` and `exact`; an unknown name
        makes the task one error item that says so).

    Example, in a conftest.py::

        from pytest_llmeval import Score

        def pytest_llmeval_make_scorer(config, task, name):
            if name == "contains":
                def contains(response, target, row):
                    found = target.lower() in response.lower()
                    return Score(float(found), target if found else None, "contains")
                return contains
    """


@pytest.hookspec(firstresult=True)
def pytest_llmeval_generate_report(
    config: pytest.Config, facts: RunFacts, exitstatus: int
) -> RunReport | None:
    """Build the run report from what the controller gathered.

    Called once, on the controller (never on an xdist worker), at session end after the
    gates were checked and the exit status decided, before any report file is written; not
    called when the session produced no records.

    :param config: The pytest config.
    :param facts: Records, task facts, model loads, workers, per task x model metrics and
        the checked gates (`pytest_llmeval.report.envelope.RunFacts`).
    :param exitstatus: The session's exit status.
    :returns: A `RunReport`, or None to let the built-in builder
        (`pytest_llmeval.report.envelope.build_report`) make it.

    Example, in a conftest.py (a CI job that names its runs and keeps secrets off argv)::

        from pytest_llmeval.report.envelope import build_report

        def pytest_llmeval_generate_report(config, facts, exitstatus):
            report = build_report(facts, exitstatus, config.rootpath)
            report.run_id = os.environ.get("CI_JOB_ID", report.run_id)
            report.argv = [arg for arg in report.argv if not arg.startswith("--token")]
            return report
    """


@pytest.hookspec
def pytest_llmeval_update_report(config: pytest.Config, report: RunReport) -> None:
    """Edit the run report before it is written (report.json, summary.md).

    Called once, on the controller, right after `pytest_llmeval_generate_report`.

    :param config: The pytest config.
    :param report: The `RunReport`; change it in place. Free-form facts belong in
        `report.metadata`, which is written as given.

    Example, in a conftest.py::

        def pytest_llmeval_update_report(config, report):
            report.metadata["patch"] = os.environ.get("PATCH_ID", "baseline")
    """
