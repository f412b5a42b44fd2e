"""Unit tests for pytest_llmeval.analyze.aggregate."""

from __future__ import annotations

import pytest

from conftest import item_record as _record
from pytest_llmeval.analyze.aggregate import group_records, summarize
from pytest_llmeval.analyze.stats import wilson_interval
from pytest_llmeval.score.labels import INVALID


def test_accuracy_over_scored_items_only() -> None:
    records = [
        _record("pass"),
        _record("pass"),
        _record("fail"),
        _record("error", score=None, extracted=None),
        _record("error", score=None, extracted=None),
    ]
    summary = summarize(records)
    assert summary.n == 3
    assert summary.n_total == 5
    assert summary.n_pass == 2
    assert summary.n_errors == 2
    assert summary.accuracy == pytest.approx(2 / 3)
    assert summary.error_rate == pytest.approx(2 / 5)
    assert summary.accuracy_ci95 == pytest.approx(list(wilson_interval(2, 3)))
    assert summary.error_rate_ci95 == pytest.approx(list(wilson_interval(2, 5)))


def test_partial_credit_scores_are_averaged() -> None:
    records = [_record("pass", score=1.0), _record("fail", score=0.5), _record("fail", score=0.0)]
    summary = summarize(records)
    assert summary.accuracy == pytest.approx(0.5)
    low, high = summary.accuracy_ci95
    assert low < 0.5 < high


def test_no_scored_items_gives_none_metrics() -> None:
    summary = summarize([_record("error", score=None)])
    assert summary.n == 0
    assert summary.accuracy is None
    assert summary.accuracy_ci95 is None
    assert summary.parse_rate is None
    assert summary.error_rate == 1.0
    assert summary.latency_p50 is None
    assert summary.tokens_per_s is None


def test_parse_rate_counts_invalid_and_none_as_unparsed() -> None:
    records = [
        _record("pass", extracted="yes"),
        _record("fail", extracted="no"),
        _record("fail", extracted=INVALID),
        _record("fail", extracted=None),
        _record("error", extracted="ignored: not scored"),
    ]
    summary = summarize(records)
    assert summary.n == 4
    assert summary.parse_rate == pytest.approx(0.5)
    assert summary.parse_rate_ci95 == pytest.approx(list(wilson_interval(2, 4)))


def test_tokens_per_s_counts_each_batch_wall_once() -> None:
    records = [
        _record(batch_id="w0-0", batch_wall_s=2.0, tokens_out=100, tokens_in=10),
        _record(batch_id="w0-0", batch_wall_s=2.0, tokens_out=100, tokens_in=10),
        _record(batch_id="w0-1", batch_wall_s=3.0, tokens_out=300, tokens_in=5),
    ]
    summary = summarize(records)
    assert summary.batches == 2
    assert summary.generation_s == pytest.approx(5.0)
    assert summary.tokens_out == 500
    assert summary.tokens_in == 25
    assert summary.tokens_per_s == pytest.approx(500 / 5.0)  # not 500 / 7.0


def test_tokens_per_s_none_without_batches() -> None:
    summary = summarize([_record(tokens_out=50)])
    assert summary.batches == 0
    assert summary.tokens_per_s is None


def test_partial_when_fewer_records_than_task_rows() -> None:
    assert summarize([_record()] * 3, task_rows=10).partial is True
    full = summarize([_record()] * 3, task_rows=3)
    assert full.partial is False
    assert full.task_rows == 3
    # Without the task's row count, the records are the whole task.
    assert summarize([_record()]).partial is False


def test_latency_percentiles_over_scored_items() -> None:
    records = [_record(latency_s=value) for value in (1.0, 2.0, 3.0, 4.0)]
    records.append(_record("error", latency_s=100.0))
    records.append(_record("pass", latency_s=None))
    summary = summarize(records)
    assert summary.latency_p50 == pytest.approx(2.5)
    assert summary.latency_p95 == pytest.approx(3.85)


def test_latency_method_first_non_empty() -> None:
    records = [_record(), _record(latency_method="batch-share"), _record(latency_method="x")]
    assert summarize(records).latency_method == "batch-share"
    assert summarize([_record()]).latency_method is None


def test_group_records_by_task_and_model_in_first_seen_order() -> None:
    records = [
        _record(task="ethos", model="a", row_index=0),
        _record(task="gsm8k", model="a", row_index=1),
        _record(task="ethos", model="b", row_index=2),
        _record(task="ethos", model="a", row_index=3),
    ]
    groups = group_records(records)
    assert list(groups) == [("ethos", "a"), ("gsm8k", "a"), ("ethos", "b")]
    assert [r.row_index for r in groups[("ethos", "a")]] == [0, 3]
    assert [r.row_index for r in groups[("gsm8k", "a")]] == [1]
    assert [r.row_index for r in groups[("ethos", "b")]] == [2]
    assert group_records([]) == {}
