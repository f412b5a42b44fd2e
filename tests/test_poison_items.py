"""A poison item (it crashes its worker every time) is blamed alone; items that never ran
are errors with a record; a failed request is retried without repeating its batch-mates."""

from __future__ import annotations

import json
import os
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from engine_items import Item

from conftest import TASK_MODULE, assert_valid_run, mini_rows
from pytest_llmeval.backends import GenerationRequest, GenerationResult
from pytest_llmeval.declare.models import ModelSpec
from pytest_llmeval.declare.task import Message
from pytest_llmeval.run.crash_journal import BatchJournal, belongs_to, read_batch
from pytest_llmeval.run.engine import Engine

MODEL = "callable:poison:reply"

# Answers like conftest's responder and logs every call; a question with POISON kills its
# process every time (as a reproducible segfault or OOM kill would); the questions listed in
# $FLAKY fail their first call only (a flaky API), those in $BROKEN fail every call.
RESPONDER = textwrap.dedent(
    """
    import json, os, pathlib

    LOG = pathlib.Path(os.environ["RESPONDER_LOG"])

    def reply(messages, settings):
        question = messages[-1]["content"]
        seen = LOG.read_text().count(json.dumps(question)) if LOG.exists() else 0
        with LOG.open("a") as handle:
            handle.write(json.dumps(question) + "\\n")
        if "POISON" in question:
            os._exit(1)
        flaky = question in os.environ.get("FLAKY", "").split(",")
        if question in os.environ.get("BROKEN", "").split(",") or (flaky and not seen):
            raise ConnectionError("503 Service Unavailable")
        left, op, right = question.split("q: ")[1].split()[:3]
        value = int(left) + int(right)
        return f"{left} {op} {right} = {value}\\n#### {value}"
    """
)


def rows_marked(n: int, marks: dict[int, str]) -> str:
    lines = mini_rows(n).splitlines()
    for row, mark in marks.items():
        record = json.loads(lines[row])
        record["question"] += f" {mark}"
        lines[row] = json.dumps(record)
    return "\n".join(lines) + "\n"


@pytest.fixture
def poisonproject(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    pytester.makepyfile(poison=RESPONDER, test_mini=TASK_MODULE)
    (pytester.path / "data").mkdir()
    (pytester.path / "data" / "mini.jsonl").write_text(rows_marked(24, {5: "POISON"}))
    monkeypatch.setenv("PYTHONPATH", str(pytester.path), prepend=os.pathsep)
    monkeypatch.setenv("RESPONDER_LOG", str(pytester.path / "calls.log"))
    return pytester


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(
        "--model",
        MODEL,
        "--llmeval-data-dir=data",
        "--llmeval-report",
        "out/report.json",
        "--llmeval-batch-size",
        "6",
        "-p",
        "no:cacheprovider",
        *args,
    )


def records(pytester: pytest.Pytester) -> dict[int, dict[str, Any]]:
    lines = (pytester.path / "out" / "items.jsonl").read_text().splitlines()
    return {r["row_index"]: r for r in map(json.loads, lines)}


def calls(pytester: pytest.Pytester) -> list[str]:
    return [json.loads(x) for x in (pytester.path / "calls.log").read_text().splitlines()]


def metrics(pytester: pytest.Pytester) -> dict[str, Any]:
    report = assert_valid_run(pytester.path / "out")
    found: dict[str, Any] = report["tasks"]["mini"]["models"][MODEL]["metrics"]
    return found


def test_poison_item_alone_is_blamed(poisonproject: pytest.Pytester) -> None:
    result = run(poisonproject, "-n", "2")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=24, errors=1)  # 23 items + the gate; row 5
    result.stdout.fnmatch_lines(["*replacing crashed worker*"])
    assert "Traceback" not in result.stdout.str()
    found = records(poisonproject)
    assert sorted(found) == list(range(24))
    blamed = {row: r["error"] for row, r in found.items() if r["outcome"] == "error"}
    assert blamed == {5: "worker crashed while generating this item (alone)"}
    assert all(r["outcome"] == "pass" for row, r in found.items() if row != 5)
    figures = metrics(poisonproject)
    assert (figures["n"], figures["n_errors"], figures["partial"]) == (24, 1, False)


@pytest.mark.parametrize("restarts", [0, 2])
def test_every_item_has_a_record_when_restarts_run_out(
    poisonproject: pytest.Pytester, restarts: int
) -> None:
    result = run(poisonproject, "-n", "2", "--max-worker-restart", str(restarts))
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert "Traceback" not in result.stdout.str()
    found = records(poisonproject)
    assert sorted(found) == list(range(24)), "every item has exactly one record"
    errors = {row: r["error"] for row, r in found.items() if r["outcome"] == "error"}
    # Only row 5 crashes; whatever else errored never ran and says why.
    assert all(r["outcome"] == "pass" for row, r in found.items() if row not in errors)
    crashed = {row for row, e in errors.items() if e.startswith("worker crashed")}
    not_run = {row for row, e in errors.items() if e.startswith("not run: ")}
    assert crashed | not_run == set(errors)
    if restarts == 0:
        assert crashed == set() and 5 in not_run
        reason = (
            "not run: xdist stopped replacing crashed workers (1 crash, --max-worker-restart 0)"
        )
        assert {errors[row] for row in not_run} == {reason}
        result.stdout.fnmatch_lines(["*ERROR at setup of *mini/test/0005*", reason])
    else:
        assert (crashed, not_run) == ({5}, set())
    figures = metrics(poisonproject)
    # Not-run items are errors of the selection, not a smaller selection.
    assert (figures["n"], figures["n_errors"], figures["partial"]) == (24, len(errors), False)


def test_retries_repeat_no_success(
    poisonproject: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    (poisonproject.path / "data" / "mini.jsonl").write_text(mini_rows(8))
    # Both in the first batch of 6 (equal lengths keep row order), after successes.
    monkeypatch.setenv("FLAKY", "q: 2 + 3")
    monkeypatch.setenv("BROKEN", "q: 4 + 5")
    result = run(poisonproject)
    result.assert_outcomes(passed=8, errors=1)  # 7 items and the gate; row 4 errors
    asked = calls(poisonproject)
    counts = {question: asked.count(question) for question in set(asked)}
    # Each request that succeeded was made once; each failed one is retried once, alone.
    assert counts == {
        "q: 0 + 1": 1,
        "q: 1 + 2": 1,
        "q: 2 + 3": 2,
        "q: 3 + 4": 1,
        "q: 4 + 5": 2,
        "q: 5 + 6": 1,
        "q: 6 + 7": 1,
        "q: 7 + 8": 1,
    }
    found = records(poisonproject)
    assert found[2]["outcome"] == "pass"
    assert found[4]["error"] == "ConnectionError: 503 Service Unavailable"


# ---- the engine's side, unit by unit --------------------------------------------------


class JournaledBackend:
    """Records each batch's prompts and what the journal said while it was generated."""

    def __init__(self, journal: Path) -> None:
        self.spec = ModelSpec("m", "fake", "m")
        self.default_batch_size = 4
        self.journal = journal
        self.batches: list[tuple[list[str], list[str] | None]] = []

    def identity(self) -> Mapping[str, Any]:
        return {"backend": "fake"}

    def render(self, messages: list[Message]) -> str:
        return messages[-1]["content"]

    def generate(
        self, requests: Sequence[GenerationRequest], batch_id: str
    ) -> list[GenerationResult]:
        prompts = [r.messages[-1]["content"] for r in requests]
        self.batches.append((prompts, read_batch(self.journal, "gw3")))
        return [
            GenerationResult(p, p, None, None, 0.0, "stop", batch_id, len(prompts), 0.0, "test")
            for p in prompts
        ]


def test_engine_journals_each_batch_and_generates_crashed_items_alone(tmp_path: Path) -> None:
    backend = JournaledBackend(tmp_path)
    engine = Engine(make_backend=lambda spec: backend, worker="gw3")
    engine.journal = BatchJournal(tmp_path, "gw3")
    engine.alone = frozenset({"t::1", "t::2"})  # the batch that crashed the last worker
    queue = [Item(f"t::{i}", backend.spec) for i in range(6)]
    for i, item in enumerate(queue):
        assert engine.result_for(item, queue[i + 1 :]).text == item.nodeid
        assert read_batch(tmp_path, "gw3") is None, "no batch on record between windows"
    # Each batch was on record while it ran; the crashed batch's items went one at a time.
    assert backend.batches == [
        (["t::0", "t::3", "t::4", "t::5"], ["t::0", "t::3", "t::4", "t::5"]),
        (["t::1"], ["t::1"]),
        (["t::2"], ["t::2"]),
    ]


def test_a_journal_entry_belongs_to_its_test() -> None:
    item = "test_mini.py::mini/test/0005"
    assert belongs_to(item, item) and belongs_to(f"{item}@reference", item)
    assert belongs_to("test_x.py::test_hand#2", "test_x.py::test_hand")
    assert not belongs_to("test_mini.py::mini/test/00051", item)
