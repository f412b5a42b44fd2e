"""Shared fixtures for the plugin's own tests."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_llmeval.analyze.record import ItemRecord
from pytest_llmeval.backends.weights import CACHE_ENV, model_cache_dir
from pytest_llmeval.declare import data

REPO_ROOT = Path(__file__).resolve().parent.parent
#: The shipped GSM8K eval's source, for tests that write it into a pytester project. Kept here,
#: torch-free: importing a module that imports torch inside a pytester test puts torch in the
#: run's sys.modules snapshot, which drops it afterwards, and the next torch import segfaults.
GSM8K_EVAL = (REPO_ROOT / "evals" / "test_gsm8k.py").read_text()


def _preload_parquet_writer() -> None:
    """Import pandas' parquet machinery once in this process.

    In-process pytester runs drop the modules they imported when they end; pyarrow keeps its
    registry of pandas extension types, so a second import in a later run fails. Modules
    imported here, before any run, are kept.
    """
    import io

    import pandas as pd

    pd.DataFrame({"a": [1]}).to_parquet(io.BytesIO())


_preload_parquet_writer()


def item_record(outcome: str = "pass", **fields: Any) -> ItemRecord:
    """An item record of task `gsm8k` on model `m`: right when it passes, then `fields`."""
    values: dict[str, Any] = {
        "id": "gsm8k/test/0000",
        "nodeid": "test_gsm8k.py::gsm8k/test/0000",
        "task": "gsm8k",
        "model": "m",
        "split": "test",
        "row_index": 0,
        "source": "task",
        "outcome": outcome,
        "score": 1.0 if outcome == "pass" else 0.0,
        # As the record builders set it: the score reached the pass threshold (None: error).
        "correct": {"pass": True, "fail": False}.get(outcome),
        "extracted": "42",
    }
    values.update(fields)
    return ItemRecord(**values)


def assert_valid_run(folder: Path) -> dict[str, Any]:
    """Check a run's report.json and every items.jsonl line against the shipped JSON schemas
    (with jsonschema, independently of the code that generated them); returns the report."""
    import json

    import jsonschema

    from pytest_llmeval.report.schema import shipped_schema

    report: dict[str, Any] = json.loads((folder / "report.json").read_text())
    jsonschema.Draft202012Validator(shipped_schema("run-report")).validate(report)
    items = jsonschema.Draft202012Validator(shipped_schema("item-record"))
    lines = (folder / "items.jsonl").read_text().splitlines()
    assert lines, f"{folder}/items.jsonl is empty"
    for line in lines:
        items.validate(json.loads(line))
    assert report["totals"]["items"] == len(lines)
    return report


def shared_data_dir() -> Path:
    """The offline benchmark copies (../shared/data beside the checkout, or LLMEVAL_DATA_DIR)."""
    if os.environ.get(data.DATA_DIR_ENV):
        return Path(os.environ[data.DATA_DIR_ENV])
    return REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _offline_hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Tests never reach the Hub: declare it offline so nothing retries against the network.

    Also pins the converted embedded model's cache: pytester points HOME at a temporary
    directory, where the user cache would be empty and every run would convert the GGUF again.
    """
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv(CACHE_ENV, str(model_cache_dir()))
    data.hub_reachable.cache_clear()
    yield
    data.hub_reachable.cache_clear()


# A responder for the callable backend: answers "q: a op b" rows correctly, except rows whose
# question says WRONG (answers 999) and BOOM (raises, a backend error).
ANSWERS_MODULE = textwrap.dedent(
    """
    CALLS = []

    def reply(messages, settings):
        question = messages[-1]["content"]
        CALLS.append(question)
        if "BOOM" in question:
            raise RuntimeError("backend exploded on purpose")
        if "WRONG" in question:
            return "I think it is 999.\\n#### 999"
        left, op, right = question.split("q: ")[1].split()[:3]
        value = {"+": int(left) + int(right), "*": int(left) * int(right)}[op]
        return f"Let me compute: {left} {op} {right} = {value}.\\n#### {value}"
    """
)

TASK_MODULE = textwrap.dedent(
    """
    from pytest_llmeval import ChatPrompt, DataSource, Generation, Task, scoring

    mini = Task(
        name="mini",
        data=DataSource(files="mini.jsonl"),
        prompt=ChatPrompt(user="q: {question}"),
        target="answer",
        scorer=scoring.numeric,
        generation=Generation(max_new_tokens=16),
        label_field="kind",
        gates=["accuracy >= 0.5"],
    )
    """
)


def mini_rows(n: int = 10, wrong: int = 0, boom: int = 0) -> str:
    """jsonl text: n rows of 'a + b', the first `wrong` answered wrongly, next `boom` erroring."""
    import json

    lines = []
    for i in range(n):
        question = f"{i} + {i + 1}"
        if i < wrong:
            question += " WRONG"
        elif i < wrong + boom:
            question += " BOOM"
        kind = "even" if i % 2 == 0 else "odd"
        lines.append(json.dumps({"question": question, "answer": str(2 * i + 1), "kind": kind}))
    return "\n".join(lines) + "\n"


@pytest.fixture
def evalproject(pytester: pytest.Pytester) -> pytest.Pytester:
    """A pytester project with a mini task and the callable responder `answers:reply`."""
    pytester.syspathinsert()
    pytester.makepyfile(answers=ANSWERS_MODULE, test_mini=TASK_MODULE)
    (pytester.path / "data").mkdir()
    (pytester.path / "data" / "mini.jsonl").write_text(mini_rows())
    return pytester


def run_evals(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """Run the project's evals on the callable responder with its data dir."""
    return pytester.runpytest(
        "--model",
        "callable:answers:reply",
        "--llmeval-data-dir=data",
        "--llmeval-report",
        "out/report.json",
        # The outer session imported the plugin already; its inner re-registration warns.
        "-W",
        "ignore::pytest.PytestAssertRewriteWarning",
        *args,
    )


@pytest.fixture(scope="session")
def embedded_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `transformers serve` of the embedded model on 127.0.0.1, started once per test
    session (about 20 s) and always stopped; its OpenAI-compatible base URL."""
    from served_model import served_embedded_model

    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with served_embedded_model(log) as url:
        yield url
