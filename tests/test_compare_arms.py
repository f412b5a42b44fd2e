"""Arms compared on the controller (`analyze/compare.py`, `analyze/compare_gates.py`), on
hand-built records.

Expected p-values were computed once with statsmodels 0.15.0 / scipy 1.17.1 (the call is above
each) or are published values; none comes from the code under test.
"""

from __future__ import annotations

from typing import Any

import pytest

from conftest import item_record
from pytest_llmeval.analyze.compare import ArmComparison, compare_arms, paired_records, task_arms
from pytest_llmeval.analyze.compare_gates import check_comparisons
from pytest_llmeval.analyze.gates import GateError, check_run, parse_gate
from pytest_llmeval.analyze.record import ItemRecord
from pytest_llmeval.report.compare_summary import comparison_rows, comparison_table
from pytest_llmeval.report.html import comparison_html, summary_html


def rec(arm: str, row: int, right: bool | None, task: str = "t", **fields: Any) -> ItemRecord:
    """Item `row` of `task` on `arm`: right, wrong, or (None) an error."""
    outcome = {True: "pass", False: "fail", None: "error"}[right]
    values: dict[str, Any] = dict(
        id=f"{task}/test/{row:04d}",
        nodeid=f"test_{task}.py::{task}/test/{row:04d}[{arm}]",
        task=task,
        model=arm,
        row_index=row,
        response=f"{arm} says {row}",
    )
    if right is None:
        values.update(score=None, correct=None, extracted=None, error="RuntimeError: boom")
    values.update(fields)
    return item_record(outcome, **values)


def three_arms() -> list[ItemRecord]:
    """41 items; the baseline is right on items 0-13.

    - b: right on 0-18: 14 both, 5 won, 22 neither (Altman et al. 2000, Table 6.2), plus an
      item 41 only b ran; latency 0.5 s slower on items 0-2, the rest cached.
    - c: ran items 0, 1 and 14-32 only: right on 0 and 14-20 (1 both, 1 lost, 7 won, 12
      neither: Fagerland et al. 2014).
    - d: right on 0-9 and 14-15 (10 both, 4 lost, 2 won, 25 neither); errors on 30 (a
      timeout) and 31, an unparsed answer on 33.
    """
    records = [rec("base", i, i < 14, latency_s=1.0) for i in range(41)]
    records += [
        rec("b", i, i < 19, latency_s=1.5 if i < 3 else None, cached=i >= 3) for i in range(42)
    ]
    records += [rec("c", i, i == 0 or 14 <= i <= 20) for i in [0, 1, *range(14, 33)]]
    for i in range(41):
        if i == 30:
            records.append(rec("d", i, None, error="BackendError: timed out after 3 tries"))
        elif i == 31:
            records.append(rec("d", i, None))
        elif i == 33:
            records.append(rec("d", i, False, extracted="[invalid]"))
        else:
            records.append(rec("d", i, i < 10 or i in (14, 15)))
    return records


def by_arm(comparisons: list[ArmComparison]) -> dict[str, ArmComparison]:
    return {c.candidate: c for c in comparisons}


def test_pairs_by_item_id_and_counts_wins_losses_ties() -> None:
    shuffled = three_arms()[::-1]  # arrival order must not matter
    result = by_arm(compare_arms(shuffled, "base", ["base", "b", "c", "d"]))
    assert list(result) == ["b", "c", "d"]
    b, c, d = result["b"], result["c"], result["d"]
    assert (b.n, b.baseline_only, b.candidate_only) == (41, 0, 1)
    assert (b.wins, b.losses, b.ties) == (5, 0, 36)
    assert (b.baseline_accuracy, b.candidate_accuracy) == (14 / 41, 19 / 41)
    assert b.won == [f"t/test/{i:04d}" for i in range(14, 19)] and b.lost == []
    assert (c.n, c.baseline_only, c.candidate_only) == (21, 20, 0)
    assert (c.wins, c.losses, c.ties) == (7, 1, 13)
    assert c.lost == ["t/test/0001"]
    assert (d.wins, d.losses, d.ties) == (2, 4, 35)


def test_delta_interval_and_mcnemar_match_published_values() -> None:
    result = by_arm(compare_arms(three_arms(), "base", ["base", "b", "c", "d"]))
    b, c = result["b"], result["c"]
    # Altman et al. (2000) Table 6.2: difference 0.122, Newcombe's method 10 0.011 to 0.226.
    assert b.delta == pytest.approx(0.122, abs=5e-4)
    assert b.delta_ci95 == [pytest.approx(0.011, abs=5e-4), pytest.approx(0.226, abs=5e-4)]
    # Fagerland et al. (2014): Newcombe square-and-add interval 0.026 to 0.507.
    assert c.delta_ci95 == [pytest.approx(0.026, abs=5e-4), pytest.approx(0.507, abs=5e-4)]
    # statsmodels mcnemar(table, exact=True).pvalue for b, c and d.
    mcnemar = [x.p_value_mcnemar for x in result.values()]
    assert mcnemar == pytest.approx([0.0625, 0.0703125, 0.6875], rel=1e-12)
    # statsmodels multipletests([0.0625, 0.0703125, 0.6875], method="holm")[1]
    holm = [x.p_value for x in result.values()]
    assert holm == pytest.approx([0.1875, 0.1875, 0.6875], rel=1e-12)


def test_a_single_comparison_is_not_adjusted() -> None:
    records = [r for r in three_arms() if r.model in ("base", "b")]
    [b] = compare_arms(records, "base", ["base", "b"])
    assert b.p_value == b.p_value_mcnemar == pytest.approx(0.0625, rel=1e-12)


def test_failures_per_arm_and_paired_latency() -> None:
    result = by_arm(compare_arms(three_arms(), "base", ["base", "b", "c", "d"]))
    d = result["d"].candidate_failures
    assert (d.errors, d.timeouts, d.backend_errors, d.unparsed) == (2, 1, 1, 1)
    base = result["d"].baseline_failures
    assert (base.errors, base.unparsed) == (0, 0)
    # b generated items 0-2 (0.5 s slower each); the others were cached: no latency.
    assert (result["b"].latency_delta_p50, result["b"].latency_n) == (0.5, 3)
    assert result["c"].latency_delta_p50 is None and result["c"].latency_n == 0
    assert not result["b"].continuous and result["b"].score_delta is None


def test_continuous_scores_get_bootstrap_and_wilcoxon() -> None:
    base = [0.25, 0.5, 0.5, 1.0, 0.0, 0.5, 0.75, 0.5]
    cand = [0.75, 0.5, 1.0, 1.0, 0.25, 0.25, 1.0, 1.0]
    records = [rec("a", i, s >= 1.0, score=s) for i, s in enumerate(base)]
    records += [rec("z", i, s >= 1.0, score=s) for i, s in enumerate(cand)]
    [z] = compare_arms(records, "a", ["a", "z"])
    assert z.continuous and z.score_n == 8
    assert z.score_delta == pytest.approx(0.21875, rel=1e-12)
    # scipy.stats.wilcoxon(d, method=PermutationMethod(n_resamples=inf)).pvalue (and default)
    assert z.score_p_value == pytest.approx(0.125, rel=1e-12)
    # scipy.stats.bootstrap((d,), mean, method="percentile", n_resamples=100000): 0.03125 to
    # 0.40625; ours is another seeded resampling: equal within resampling error.
    assert z.score_delta_ci95 is not None
    assert z.score_delta_ci95[0] == pytest.approx(0.03125, abs=0.035)
    assert z.score_delta_ci95[1] == pytest.approx(0.40625, abs=0.035)
    again = compare_arms(records[::-1], "a", ["a", "z"])[0]
    assert again.score_delta_ci95 == z.score_delta_ci95  # seeded, in item-id order


def test_tasks_with_one_arm_or_without_the_baseline_are_not_compared() -> None:
    records = [rec("a", 0, True, task="x"), rec("b", 0, True, task="y"), rec("c", 0, True, "y")]
    assert compare_arms(records, "a", ["a", "b", "c"]) == []
    assert task_arms(records, ["c", "b", "a"]) == {"x": ["a"], "y": ["c", "b"]}
    hand_written = [rec("a", 0, True, source="test"), rec("b", 0, True, source="test")]
    assert compare_arms(hand_written, "a") == []


def test_comparison_rows_one_per_item_and_arm_pair() -> None:
    pairs = paired_records(three_arms(), "base", ["base", "b", "c", "d"])
    rows = comparison_rows(pairs)
    assert len(rows) == 41 + 21 + 41
    won = [r for r in rows if r["candidate_arm"] == "b" and r["flipped"]]
    assert [r["flip"] for r in won] == ["won"] * 5
    first = won[0]
    assert first["baseline_response"] == "base says 14"
    assert first["candidate_response"] == "b says 14"
    assert (first["baseline_correct"], first["candidate_correct"]) == (False, True)


def test_table_shows_each_arm_against_the_baseline() -> None:
    table = comparison_table(compare_arms(three_arms(), "base", ["base", "b", "c", "d"]))
    assert "base (baseline)" in table
    assert "+0.122 [+0.011, +0.226]" in table
    assert "0.0625 / 0.188" in table  # McNemar, then Holm
    assert "21 (+20 unpaired)" in table
    assert "2 err (1 timeouts) / 1 unparsed" in table


def test_html_section_shows_the_table_and_flips_with_every_cell_escaped() -> None:
    records = [rec("base", i, i < 3, response=f"base & co say {i}") for i in range(4)]
    records += [
        rec("cand", 0, False, response="x" * 300),  # lost
        rec("cand", 1, True),
        rec("cand", 2, True),
        rec("cand", 3, True, response="<script>alert(1)</script> 2 + 2 = 4\n#### 4"),  # won
    ]
    order = ["base", "cand"]
    comparisons = compare_arms(records, "base", order)
    page = comparison_html(comparisons, paired_records(records, "base", order))
    assert page.startswith("<h2>llmeval arm comparison</h2>")
    assert "base (baseline)" in page and "cand" in page
    assert "+0.000 [" in page and "1/1/2" in page  # delta with its interval, W/L/T
    assert "Newcombe&#x27;s paired 95% interval" in page  # the legend, escaped too
    # The flipped items side by side: responses escaped, on one line, cut at 200 characters.
    assert "Flipped items (all 2; all in comparison.parquet)" in page
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; 2 + 2 = 4 #### 4" in page
    assert "base &amp; co say 3" in page and "cand won" in page and "cand lost" in page
    assert "x" * 197 + "..." in page and "x" * 198 not in page
    # Without arms to compare the summary has no such section.
    assert comparison_html([], {}) == ""
    assert "arm comparison" not in summary_html({}, [])


# --- comparison gates -----------------------------------------------------------------


def test_comparison_gate_grammar() -> None:
    gate = parse_gate("gsm8k:delta_low(patched)>=-0.02", "cli")
    assert (gate.task, gate.metric, gate.arm, gate.op, gate.threshold) == (
        "gsm8k", "delta_low", "patched", ">=", -0.02,
    )  # fmt: skip
    assert gate.text == "delta_low(patched)>=-0.02"
    assert parse_gate("p_value( cot ) < 0.05", "ini").arm == "cot"
    assert parse_gate("delta(callable:pkg.mod:fn)>0", "cli").arm == "callable:pkg.mod:fn"
    assert parse_gate("accuracy>=0.5", "cli").arm is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("delta>0", "compares arms; name the candidate arm, e.g. 'delta(patched)>0'"),
        ("accuracy(b)>0.5", "unknown comparison metric 'accuracy'"),
        ("delta()>0", "name the candidate arm"),
    ],
)
def test_comparison_gate_errors_say_the_fix(text: str, message: str) -> None:
    with pytest.raises(GateError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_gate(text, "cli")


def check(records: list[ItemRecord], *gates: str, baseline: str = "base") -> dict[str, Any]:
    order = ["base", "b", "c", "d"]
    results = check_comparisons(
        compare_arms(records, baseline, order),
        task_arms(records, order),
        baseline,
        {"t": []},
        [parse_gate(g, "cli") for g in gates],
    )
    return {r.gate.text: r for r in results}


def test_comparison_gates_read_the_comparison() -> None:
    results = check(
        three_arms(),
        "delta_low(b)>=0",
        "delta_low(d)>=-0.02",
        "p_value(b)<0.05",
        "delta(c)>0",
        "t:wins(c)>=7",
    )
    low_b = results["delta_low(b)>=0"]
    assert low_b.passed and low_b.value == pytest.approx(0.011, abs=5e-4)
    assert (low_b.model, low_b.baseline, low_b.n) == ("b", "base", 41)
    assert low_b.interval == (pytest.approx(0.011, abs=5e-4), pytest.approx(0.226, abs=5e-4))
    assert results["delta_low(d)>=-0.02"].passed is False
    assert results["p_value(b)<0.05"].passed is False  # Holm: 0.1875
    assert results["p_value(b)<0.05"].value == pytest.approx(0.1875)
    assert results["delta(c)>0"].passed and results["wins(c)>=7"].passed
    assert "paired vs baseline base" in low_b.describe()


def test_comparison_gates_that_cannot_be_evaluated_fail_with_the_reason() -> None:
    one_arm = [r for r in three_arms() if r.model == "base"]
    [alone] = check(one_arm, "delta(b)>0").values()
    assert alone.passed is False and alone.reason == "needs two arms: task t ran only base"
    results = check(three_arms(), "delta(nope)>0", "delta(base)>0")
    assert results["delta(nope)>0"].passed is False
    assert results["delta(nope)>0"].reason == "arm nope did not run task t (arms: base, b, c, d)"
    assert "is the baseline" in str(results["delta(base)>0"].reason)


def test_comparison_gates_are_not_checked_per_model() -> None:
    from pytest_llmeval.analyze.aggregate import summarize_run

    records = three_arms()
    summaries = summarize_run(records, {}, [], {}, {})
    gates = [parse_gate("delta(b)>0", "cli"), parse_gate("accuracy>=0", "cli")]
    checked = check_run(summaries, {"t": []}, gates)
    assert {g.gate.text for g in checked} == {"accuracy>=0"}
