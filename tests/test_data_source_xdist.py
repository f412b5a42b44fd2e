"""Under xdist the data source is decided once: workers follow the controller's decision,
and the controller notices when workers loaded different rows anyway."""

from __future__ import annotations

import json
import os
import textwrap
from typing import Any

import pytest

TASK = textwrap.dedent(
    """
    import os
    from pytest_llmeval import ChatPrompt, DataSource, Generation, Task, scoring

    def rows():
        {rows}

    mini = Task(
        name="mini",
        data=DataSource(hub="example/mini", generate=rows),
        prompt=ChatPrompt(user="q: {{question}}"),
        target="answer",
        scorer=scoring.numeric,
        generation=Generation(max_new_tokens=16),
    )
    """
)
SAME_ROWS = 'return [{"question": f"{i} + {i + 1}", "answer": str(2 * i + 1)} for i in range(6)]'
# A worker-dependent source: gw1 reads a different copy of the data than gw0.
ROWS_BY_WORKER = (
    "shift = 0 if os.environ.get('PYTEST_XDIST_WORKER') == 'gw0' else 1\n"
    '    return [{"question": f"{i + shift} + 1", "answer": str(i + shift + 1)} '
    "for i in range(6)]"
)
# The Hub answers on gw0 only (a flaky network): without one decision, gw0 alone reads it.
FLAKY_HUB = textwrap.dedent(
    """
    import os
    from pytest_llmeval.declare import data

    def hub_reachable():
        return os.environ.get("PYTEST_XDIST_WORKER") == "gw0"

    def read_hub(source):
        return [{"question": f"{i} * 3", "answer": str(3 * i)} for i in range(6)]

    data.hub_reachable = hub_reachable
    data._read_hub = read_hub
    """
)


def _run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.RunResult:
    # The inner controller is no worker, even when this test runs under an outer xdist.
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    # Workers import answers.py and this checkout's package.
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join([str(pytester.path), os.environ.get("PYTHONPATH", "")])
    )
    return pytester.runpytest_subprocess(
        "-n",
        "2",
        "--model",
        "callable:answers:reply",
        "--llmeval-report",
        "out/report.json",
        "-p",
        "no:cacheprovider",
    )


def _task(pytester: pytest.Pytester) -> dict[str, Any]:
    report = json.loads((pytester.path / "out" / "report.json").read_text())
    task: dict[str, Any] = report["tasks"]["mini"]
    return task


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    from conftest import ANSWERS_MODULE

    pytester.makepyfile(answers=ANSWERS_MODULE)
    return pytester


def test_workers_follow_the_controllers_hub_decision(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.makeconftest(FLAKY_HUB)
    project.makepyfile(test_mini=TASK.format(rows=SAME_ROWS))
    result = _run(project, monkeypatch)
    assert result.ret == 0, result.stdout.str()
    task = _task(project)
    assert task["data"]["kind"] == "generated"
    assert task["data_conflict"] is None
    assert task["models"]["callable:answers:reply"]["metrics"]["n"] == 6


def test_workers_that_loaded_different_rows_fail_the_run(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.makepyfile(test_mini=TASK.format(rows=ROWS_BY_WORKER))
    result = _run(project, monkeypatch)
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*task mini: workers loaded different rows: gw* sha256 *"])
    assert _task(project)["data_conflict"].startswith("workers loaded different rows")
