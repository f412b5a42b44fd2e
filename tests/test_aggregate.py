"""Unit tests for pytest_llmeval.analyze.aggregate."""

from __future__ import annotations

import pytest

from conftest import item_record as _record
from pytest_llmeval.analyze.aggregate import group_records, summarize, summarize_run
from pytest_llmeval.analyze.cost import Price
from pytest_llmeval.analyze.stats import wilson_interval
from pytest_llmeval.score.labels import INVALID


def test_errors_count_as_not_correct_over_all_items() -> None:
    # The case: 9 errors and 1 pass reported accuracy 1.0.
    records = [_record("pass"), *[_record("error", score=None, extracted=None)] * 9]
    summary = summarize(records)
    assert (summary.n, summary.n_answered, summary.n_errors, summary.n_correct) == (10, 1, 9, 1)
    assert summary.accuracy == pytest.approx(0.1)
    assert summary.accuracy_ci95 == pytest.approx(list(wilson_interval(1, 10)))
    assert summary.accuracy_answered == 1.0
    assert summary.accuracy_answered_ci95 == pytest.approx(list(wilson_interval(1, 1)))
    # Every rate: an errored item is unparsed.
    assert summary.parse_rate == pytest.approx(0.1)
    assert summary.parse_rate_answered == 1.0
    assert summary.error_rate == pytest.approx(0.9)


def test_mixed_outcomes() -> None:
    records = [
        _record("pass"),
        _record("pass"),
        _record("fail"),
        _record("error", score=None, extracted=None),
        _record("error", score=None, extracted=None),
    ]
    summary = summarize(records)
    assert (summary.n, summary.n_answered, summary.n_pass, summary.n_errors) == (5, 3, 2, 2)
    assert summary.accuracy == pytest.approx(2 / 5)
    assert summary.accuracy_answered == pytest.approx(2 / 3)
    assert summary.error_rate_ci95 == pytest.approx(list(wilson_interval(2, 5)))


def test_accuracy_is_the_pass_rate_and_mean_score_the_mean() -> None:
    # The issue's case: a partial-credit scorer, 5 of 6 items passing, showed "accuracy
    # 0.628" with a Wilson interval of a fractional sum.
    records = [_record("pass", correct=True, score=1.0) for _ in range(5)]
    records.append(_record("fail", correct=False, score=0.768))
    summary = summarize(records)
    assert summary.accuracy == pytest.approx(5 / 6)
    assert summary.accuracy_ci95 == pytest.approx([0.43649717781352965, 0.9699466302516933])
    # ^ statsmodels proportion_confint(5, 6, method="wilson")
    assert summary.mean_score == pytest.approx(0.9613333333333333)
    # scipy.stats.t.interval(0.95, 5, loc=mean, scale=sem) = (0.86194, 1.06073), clamped to 1.
    assert summary.mean_score_ci95 == pytest.approx([0.8619375023553958, 1.0])


def test_mean_score_counts_an_error_as_zero() -> None:
    records = [_record("pass", score=1.0), _record("fail", score=0.5), _record("error", score=None)]
    summary = summarize(records)
    assert summary.mean_score == pytest.approx(0.5)
    # scipy.stats.t.interval(0.95, 2, loc=0.5, scale=sem([1, 0.5, 0])) = (-0.742, 1.742)
    assert summary.mean_score_ci95 == [0.0, 1.0]


def test_accuracy_follows_the_score_not_the_agreement_outcome() -> None:
    # Agreement runs: the outcome is whether the labels agree; accuracy is the score passing.
    records = [
        _record("fail", correct=True, score=1.0),  # right answer, the reference disagreed
        _record("pass", correct=False, score=0.0),  # both wrong, but they agree
    ]
    summary = summarize(records)
    assert summary.n_pass == 1 and summary.n_correct == 1
    assert summary.accuracy == 0.5


def test_strict_accuracy_next_to_the_flexible_one() -> None:
    records = [
        _record("pass", method="strict"),
        _record("pass", method="flexible"),  # right, but no `#### n`
        _record("fail", method="strict", score=0.0),
        _record("error", score=None, method=None),
    ]
    summary = summarize(records)
    assert summary.accuracy == pytest.approx(2 / 4)
    assert summary.accuracy_strict == pytest.approx(1 / 4)
    assert summary.accuracy_strict_ci95 == pytest.approx(list(wilson_interval(1, 4)))


def test_strict_accuracy_is_none_for_other_scorers() -> None:
    summary = summarize([_record("pass", method="label"), _record("fail", method="none")])
    assert summary.accuracy_strict is None and summary.accuracy_strict_ci95 is None
    # The label scorer reads free text with method "flexible" too: still no strict accuracy
    # (before: 0.0 for every label task with one free-text answer).
    summary = summarize([_record("pass", method="flexible"), _record("pass", method="label")])
    assert summary.accuracy_strict is None
    assert summarize([_record("pass", method="flexible")], numeric=False).accuracy_strict is None


def test_strict_accuracy_of_a_numeric_task_without_any_marker_is_zero() -> None:
    # Declared numeric (summarize_run reads it from the task's declaration): no `#### n`
    # answer at all is a strict accuracy of 0, not "does not apply".
    records = [_record("pass", method="flexible"), _record("fail", method="none", score=0.0)]
    assert summarize(records, numeric=True).accuracy_strict == 0.0
    assert summarize([_record("pass", method="boxed")]).accuracy_strict == 0.0


def test_no_items_answered_gives_none_quality_and_zero_accuracy() -> None:
    summary = summarize([_record("error", score=None)])
    assert summary.n == 1 and summary.n_answered == 0
    assert summary.accuracy == 0.0
    assert summary.accuracy_answered is None and summary.accuracy_answered_ci95 is None
    assert summary.parse_rate_answered is None
    assert summary.error_rate == 1.0
    assert summary.latency_p50 is None
    assert summary.tokens_per_s is None


def test_parse_rate_counts_invalid_and_none_as_unparsed() -> None:
    records = [
        _record("pass", extracted="yes"),
        _record("fail", extracted="no"),
        _record("fail", extracted=INVALID),
        _record("fail", extracted=None),
        _record("error", score=None, extracted="ignored: not scored"),
    ]
    summary = summarize(records)
    assert summary.n == 5 and summary.n_answered == 4
    assert summary.parse_rate == pytest.approx(2 / 5)
    assert summary.parse_rate_answered == pytest.approx(0.5)
    assert summary.parse_rate_answered_ci95 == pytest.approx(list(wilson_interval(2, 4)))


def test_parse_rate_counts_a_blank_answer_as_unparsed() -> None:
    # The exact scorer's answer to an empty reply is "": no answer was extracted.
    records = [_record("pass", extracted="paris"), _record("fail", extracted="")]
    summary = summarize(records)
    assert summary.parse_rate == pytest.approx(0.5)


def test_tokens_per_s_counts_each_batch_wall_once() -> None:
    records = [
        _record(cached=False, batch_id="w0-0", batch_wall_s=2.0, tokens_out=100, tokens_in=10),
        _record(cached=False, batch_id="w0-0", batch_wall_s=2.0, tokens_out=100, tokens_in=10),
        _record(cached=False, batch_id="w0-1", batch_wall_s=3.0, tokens_out=300, tokens_in=5),
    ]
    summary = summarize(records)
    assert summary.batches == 2
    assert summary.generation_s == pytest.approx(5.0)
    assert summary.tokens_out == 500
    assert summary.tokens_in == 25
    assert summary.tokens_per_s == pytest.approx(500 / 5.0)  # not 500 / 7.0
    assert summary.items_per_min == pytest.approx(3 * 60 / 5.0)
    assert summary.speed_reason is None


def test_tokens_per_s_none_without_batches() -> None:
    summary = summarize([_record(tokens_out=50)])
    assert summary.batches == 0
    assert summary.tokens_per_s is None


def _generated(batch: str, wall: float, tokens: int, latency: float, **fields: object):  # type: ignore[no-untyped-def]
    values = {
        "cached": False, "batch_id": batch, "batch_wall_s": wall, "tokens_out": tokens,
        "tokens_in": 10, "latency_s": latency, "batch_energy_j": wall * 100,
    }  # fmt: skip
    return _record(**{**values, **fields})


def test_speed_and_energy_from_items_generated_in_this_run_only() -> None:
    # A cached item as the records of the run had it: its first run's 6-item batch.
    stale = _record(
        cached=True, batch_id="w0-1", batch_wall_s=6.0, tokens_out=160, latency_s=5.9,
        batch_energy_j=600.0,
    )  # fmt: skip
    fresh = [_generated("r2-w0-1", 1.0, 159, 0.9), _generated("r2-w0-1", 1.0, 100, 0.5)]
    summary = summarize([stale, *fresh])
    assert (summary.cached, summary.generated, summary.batches) == (1, 2, 1)
    assert summary.tokens_out == 259 and summary.tokens_in == 20
    assert summary.tokens_per_s == pytest.approx(259.0)
    assert summary.items_per_min == pytest.approx(120.0)
    assert summary.latency_p95 == pytest.approx(0.88)
    assert summary.energy_wh == pytest.approx(100 / 3600, abs=1e-6)  # one batch of 100 J


def test_a_fully_cached_run_has_no_speed_energy_or_cost() -> None:
    stale = _record(
        cached=True, batch_id="w0-1", batch_wall_s=6.0, tokens_out=160, tokens_in=40,
        latency_s=5.9, batch_energy_j=600.0,
    )  # fmt: skip
    summary = summarize([stale, stale])
    assert (summary.cached, summary.generated) == (2, 0)
    assert summary.tokens_per_s is None and summary.items_per_min is None
    assert summary.latency_p50 is None and summary.latency_p95 is None
    assert summary.speed_reason == "all items cached: no generation this run"
    assert summary.energy_wh is None and summary.j_per_token is None
    assert summary.energy_reason == "all items cached: no generation this run"
    assert (summary.tokens_in, summary.tokens_out) == (0, 0)
    prices = {"gpt-4o-mini": Price(0.15, 0.60)}
    models = {"m": ("openai", "gpt-4o-mini")}
    run = summarize_run([stale, stale], {}, models=models, prices=prices)[("gsm8k", "m")]
    assert run.cost_usd == 0.0  # nothing was spent this run


def test_cost_over_generated_items() -> None:
    stale = _record(cached=True, tokens_in=1_000_000, tokens_out=1_000_000)
    fresh = _record(cached=False, tokens_in=1_000_000, tokens_out=1_000_000)
    prices = {"gpt-4o-mini": Price(0.15, 0.60)}
    models = {"m": ("openai", "gpt-4o-mini")}
    run = summarize_run([stale, fresh], {}, models=models, prices=prices)[("gsm8k", "m")]
    assert run.cost_usd == pytest.approx(0.75)


def test_uncounted_tokens_give_null_tokens_and_tok_s() -> None:
    # A rule-based callable pipeline: no tokenizer, so no counts (not whitespace words).
    records = [_generated("b", 0.001, 0, 0.001, tokens_in=None, tokens_out=None) for _ in "abc"]
    summary = summarize(records)
    assert summary.tokens_in is None and summary.tokens_out is None
    assert summary.tokens_per_s is None
    assert summary.speed_reason == "token counts unknown: the backend does not count tokens"
    assert summary.items_per_min == pytest.approx(3 * 60 / 0.001)
    prices = {"gpt-4o-mini": Price(0.15, 0.60)}
    run = summarize_run(records, {}, models={"m": ("openai", "gpt-4o-mini")}, prices=prices)
    assert run[("gsm8k", "m")].cost_usd is None
    assert run[("gsm8k", "m")].cost_reason == summary.speed_reason


def test_partial_when_fewer_records_than_task_rows() -> None:
    assert summarize([_record()] * 3, task_rows=10).partial is True
    full = summarize([_record()] * 3, task_rows=3)
    assert full.partial is False
    assert full.task_rows == 3
    # Without the task's row count, the records are the whole task.
    assert summarize([_record()]).partial is False


def test_latency_percentiles_over_generated_items() -> None:
    records = [_record(cached=False, latency_s=value) for value in (1.0, 2.0, 3.0, 4.0)]
    records.append(_record("error", latency_s=100.0))
    records.append(_record("pass", cached=False, latency_s=None))
    summary = summarize(records)
    assert summary.latency_p50 == pytest.approx(2.5)
    assert summary.latency_p95 == pytest.approx(3.85)


def test_latency_method_first_non_empty() -> None:
    records = [
        _record(cached=False),
        _record(cached=False, latency_method="batch-share"),
        _record(cached=False, latency_method="x"),
    ]
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


def test_latency_percentiles_leave_out_copied_batch_wall_times() -> None:
    # A vLLM version without per-request metrics gives every item of a batch the batch's wall
    # time: those copies are not item latencies and must not enter p50/p95.
    own = "vllm request metrics: first scheduled until finished"
    copied = "batch wall time: this vLLM version reported no per-request metrics (not ...)"
    records = [
        _record("pass", cached=False, latency_s=s, latency_method=own, batch_id="b1",
                batch_wall_s=3.0, tokens_in=10, tokens_out=5)
        for s in (1.0, 2.0, 3.0)
    ] + [
        _record("pass", cached=False, latency_s=9.0, latency_method=copied, batch_id="b2",
                batch_wall_s=9.0, tokens_in=10, tokens_out=5)
        for _ in range(3)
    ]  # fmt: skip
    summary = summarize(records)
    assert summary.latency_p50 == pytest.approx(2.0)  # numpy.percentile([1, 2, 3], 50)
    assert summary.latency_p95 == pytest.approx(2.9)  # numpy.percentile([1, 2, 3], 95)
    assert summary.latency_method is not None
    assert "3 items with only their batch's wall time left out" in summary.latency_method
    only_copies = summarize(records[3:])
    assert only_copies.latency_p50 is None
    assert only_copies.latency_method == copied


def test_a_callable_pipeline_has_no_cost_and_says_why() -> None:
    from pytest_llmeval.analyze.cost import estimate_cost

    figures = estimate_cost("callable", "mypkg.pipe:run", None, None, {})
    # Not "local model: see energy": a callable's energy is not metered (remote backend).
    assert figures == {
        "cost_usd": None,
        "cost_reason": "callable pipeline: its cost is not known to the harness",
    }
