"""Checks on the offline GSM8K test split: every row loads and its target can be recovered."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pytest_llmeval.declare import data
from pytest_llmeval.declare.task import DataSource
from pytest_llmeval.score.numbers import extract_gsm8k, gsm8k_target

GSM8K_TEST_ROWS = 1319


def _data_dir() -> Path:
    configured = os.environ.get(data.DATA_DIR_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="module")
def rows() -> list[dict[str, object]]:
    data_dir = _data_dir()
    if not (data_dir / "gsm8k" / "test.jsonl").is_file():
        pytest.skip(f"no offline GSM8K copy under {data_dir}")
    loaded = data.load_rows(DataSource(files="gsm8k/test.jsonl"), data_dir)
    errors = [row for row in loaded.rows if isinstance(row, data.RowError)]
    assert errors == []
    return [dict(row) for row in loaded.rows if not isinstance(row, data.RowError)]


def test_row_count(rows: list[dict[str, object]]) -> None:
    assert len(rows) == GSM8K_TEST_ROWS


def test_rows_have_question_and_answer(rows: list[dict[str, object]]) -> None:
    bad = [i for i, row in enumerate(rows) if not {"question", "answer"} <= set(row)]
    assert bad == []


def test_every_target_is_a_number(rows: list[dict[str, object]]) -> None:
    failures = []
    for index, row in enumerate(rows):
        try:
            target = gsm8k_target(str(row["answer"]))
            float(target)
        except ValueError as exc:
            failures.append((index, str(exc)))
    assert failures == [], f"{len(failures)} rows without a numeric target: {failures[:10]}"


def test_reference_solution_recovers_target(rows: list[dict[str, object]]) -> None:
    mismatches = []
    for index, row in enumerate(rows):
        answer = str(row["answer"])
        found = extract_gsm8k(answer)
        target = gsm8k_target(answer)
        if found.value != target:
            mismatches.append((index, target, found.value, found.method))
    matched = len(rows) - len(mismatches)
    assert matched == GSM8K_TEST_ROWS, (
        f"{len(mismatches)} of {len(rows)} reference solutions do not recover their target "
        f"(index, target, extracted, method): {mismatches[:20]}"
    )
