"""Records are always plain JSON: numpy/pandas scalars from a scorer or a dataset are coerced on
the worker, and a value that cannot be stored makes that item an error naming the field."""

from __future__ import annotations

import json
import os
import textwrap
from typing import Any

import numpy as np
import pandas as pd
import pytest

from conftest import assert_valid_run, item_record
from pytest_llmeval.analyze.plain import RecordValueError, plain_record

# Scorers as a user writes them with numpy/pandas at hand: values are numpy scalars.
SCORERS = textwrap.dedent(
    """
    import numpy as np
    import pandas as pd
    from pytest_llmeval import Score

    def numpy_score(response, target, row):
        got = response.rsplit("####", 1)[-1].strip()
        right = np.float64(got == target)
        return Score(right, np.str_(got), "strict", span=pd.Series([got])[0])

    class Opaque:
        pass

    def opaque_score(response, target, row):
        return Score(1.0, Opaque(), "strict")
    """
)

TASKS = textwrap.dedent(
    """
    from pytest_llmeval import ChatPrompt, DataSource, Generation, Task
    from scorers import {scorer}

    mini = Task(
        name="mini",
        data=DataSource(files="mini.jsonl"),
        prompt=ChatPrompt(user="q: {{question}}"),
        target="answer",
        scorer={scorer},
        generation=Generation(max_new_tokens=16),
        gates=["accuracy >= 0.5"],
    )
    """
)


def _run(
    evalproject: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, scorer: str, workers: list[str]
) -> tuple[pytest.RunResult, list[dict[str, Any]]]:
    """Run the mini task with `scorer` (in-process or under xdist); the result and its items."""
    evalproject.makepyfile(scorers=SCORERS, test_mini=TASKS.format(scorer=scorer))
    monkeypatch.setenv("PYTHONPATH", str(evalproject.path), prepend=os.pathsep)
    result = evalproject.runpytest_subprocess(
        "--model", "callable:answers:reply", "--llmeval-data-dir=data",
        "--llmeval-report", "out/report.json", "-p", "no:cacheprovider", *workers,
    )  # fmt: skip
    assert "INTERNALERROR" not in result.stdout.str()
    assert_valid_run(evalproject.path / "out")
    items = [json.loads(line) for line in (evalproject.path / "out/items.jsonl").open()]
    return result, items


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["in-process", "xdist"])
def test_numpy_scores_are_coerced_on_the_worker(
    evalproject: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, workers: list[str]
) -> None:
    # Before: with -n 2 a numpy float crossing the xdist channel ended in INTERNALERROR, exit 3,
    # and no report at all.
    result, items = _run(evalproject, monkeypatch, "numpy_score", workers)
    assert result.ret == 0, result.stdout.str()[-2000:]
    assert len(items) == 10
    assert {type(r["score"]) for r in items} == {float}
    assert all(r["outcome"] == "pass" and r["extracted"] == r["target"] for r in items)


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["in-process", "xdist"])
def test_a_value_that_cannot_be_json_is_an_item_error_naming_the_field(
    evalproject: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, workers: list[str]
) -> None:
    result, items = _run(evalproject, monkeypatch, "opaque_score", workers)
    assert result.ret == 1
    assert len(items) == 10
    assert {r["outcome"] for r in items} == {"error"}
    assert all("field 'extracted'" in r["error"] and "Opaque" in r["error"] for r in items)


def test_plain_record_converts_numpy_and_pandas_scalars() -> None:
    record = item_record(
        score=np.float32(0.5),
        extracted=np.str_("18"),
        tokens_out=np.int64(7),
        cached=np.bool_(True),
        label=pd.NA,
        latency_s=np.float64("nan"),
    )
    plain = plain_record(record)
    assert type(plain.score) is float and plain.score == 0.5
    assert type(plain.extracted) is str and plain.extracted == "18"
    assert type(plain.tokens_out) is int and plain.tokens_out == 7
    assert plain.cached is True
    assert plain.label is None  # pandas' missing value is JSON null
    assert plain.latency_s is None  # NaN is not JSON
    json.dumps(vars(plain), allow_nan=False)


def test_plain_record_refuses_other_objects_naming_the_field() -> None:
    with pytest.raises(RecordValueError, match=r"field 'label'.*ndarray"):
        plain_record(item_record(label=np.array([1, 2])))


def test_the_decoding_settings_cross_the_worker_as_plain_json() -> None:
    # Every backend records the settings it sent as a dict (lists of stop strings inside);
    # before, any dict field made the item an error ("cannot be stored as JSON").
    decoding = {
        "temperature": np.float64(0.7),
        "stop": ("###", np.str_("<|im_end|>")),
        "seed": np.int64(5),
        "server_defaults": [],
        "extra": {"repeat_penalty": 1.0},
    }
    plain = plain_record(item_record(decoding=decoding))
    assert plain.decoding == {
        "temperature": 0.7,
        "stop": ["###", "<|im_end|>"],
        "seed": 5,
        "server_defaults": [],
        "extra": {"repeat_penalty": 1.0},
    }
    assert type(plain.decoding["seed"]) is int
    with pytest.raises(RecordValueError, match=r"field 'decoding.extra.x'"):
        plain_record(item_record(decoding={"extra": {"x": object()}}))
    with pytest.raises(RecordValueError, match=r"field 'decoding'.*keys"):
        plain_record(item_record(decoding={1: "a"}))
