"""The batch-invariance check (`--llmeval-invariance-check N`) and the batch-invariant mode
(`--llmeval-batch-invariant`), driven by a fake backend whose answers depend on padding.

The fake backend stands for what left padding does to a real model on some GPUs: a prompt
shorter than the longest of its batch (so padded) gets a different, wrong answer; a prompt
generated alone or among prompts of its own length gets the right one.
"""

from __future__ import annotations

import json
import textwrap
from typing import Any

import pytest

from conftest import assert_valid_run, item_record, mini_rows, run_evals
from pytest_llmeval.analyze.aggregate import summarize
from pytest_llmeval.analyze.gates import parse_gate
from pytest_llmeval.analyze.record import Invariance
from pytest_llmeval.declare.sampling import sample_order
from pytest_llmeval.run.invariance import checked_rows

PADDED_CONFTEST = textwrap.dedent(
    """
    import json
    from pytest_llmeval.backends import GenerationResult

    class Padded:
        default_batch_size = 4

        def __init__(self, spec, tokens):
            self.spec = spec
            self.tokens = tokens

        def identity(self):
            return {"backend": "padded"}

        def render(self, messages):
            return messages[-1]["content"]

        def info(self):
            return {**self.identity(), "model_loads": 1, "load_time_s": 0.0}

        def prompt_tokens(self, prompt):
            # One token per character: "q: 9 + 10" is longer than "q: 8 + 9".
            return len(prompt) if self.tokens else None

        def generate(self, requests, batch_id):
            prompts = [self.render(r.messages) for r in requests]
            with open("batches.jsonl", "a") as log:
                log.write(json.dumps(prompts) + "\\n")
            longest = max(map(len, prompts))
            results = []
            for prompt in prompts:
                left, _, right = prompt.split("q: ")[1].split()[:3]
                value = int(left) + int(right)
                if len(prompt) < longest:  # padded: the answer drifts
                    value += 1
                results.append(
                    GenerationResult(
                        text=f"#### {value}", prompt=prompt, tokens_in=len(prompt),
                        tokens_out=2, latency_s=0.0, finish_reason="stop", batch_id=batch_id,
                        batch_size=len(requests), batch_wall_s=0.0, latency_method="fake",
                    )
                )
            return results

        def close(self):
            pass

    def pytest_llmeval_make_backend(config, spec):
        if spec.model_id == "answers:reply":
            return Padded(spec, tokens=True)
        if spec.model_id == "answers:untokenized":
            return Padded(spec, tokens=False)
    """
)

ROWS = 12  # rows 0-8: "q: i + i+1" is 8 characters, row 9: 9, rows 10-11: 10


@pytest.fixture
def padded(evalproject: pytest.Pytester) -> pytest.Pytester:
    evalproject.makeconftest(PADDED_CONFTEST)
    (evalproject.path / "data" / "mini.jsonl").write_text(mini_rows(ROWS))
    return evalproject


def batches(project: pytest.Pytester) -> list[list[str]]:
    return [json.loads(line) for line in (project.path / "batches.jsonl").read_text().splitlines()]


def items(project: pytest.Pytester) -> list[dict[str, Any]]:
    lines = (project.path / "out" / "items.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def metrics_of(project: pytest.Pytester) -> dict[str, Any]:
    report = assert_valid_run(project.path / "out")
    models = report["tasks"]["mini"]["models"]
    (model,) = models.values()
    result: dict[str, Any] = model["metrics"]
    return result


# ---- which items are checked ------------------------------------------------------------


def test_checked_rows_are_the_first_n_of_the_seeded_order_over_the_chosen_rows() -> None:
    chosen = [2, 5, 7, 11, 13, 17, 19]
    order = sample_order(len(chosen), 0)
    assert checked_rows(chosen, 3, 0) == frozenset(chosen[i] for i in order[:3])
    assert checked_rows(chosen, 3, 0) == checked_rows(list(chosen), 3, 0)  # a pure function
    assert checked_rows(chosen, 3, 1) != checked_rows(chosen, 3, 0) or len(chosen) <= 3
    assert checked_rows(chosen, 0, 0) == frozenset()
    assert checked_rows(chosen, 99, 0) == frozenset(chosen)


# ---- the check on a backend whose answers depend on padding ------------------------------


def test_the_check_counts_the_items_that_padding_changed_and_their_score_change(
    padded: pytest.Pytester,
) -> None:
    result = run_evals(
        padded,
        "--llmeval-cache=off",
        "--llmeval-batch-size=4",
        f"--llmeval-invariance-check={ROWS}",
        "--gate=invariance_changed<=0",
    )
    # Batched longest first in fours: [10, 11, 9, 0] pads rows 9 and 0, which answer wrong.
    records = {r["row_index"]: r for r in items(padded)}
    wrong = {row for row, r in records.items() if not r["correct"]}
    assert wrong == {0, 9}
    for row, record in records.items():
        check = record["invariance"]
        assert check["error"] is None
        assert check["unbatched_response"] == f"#### {2 * row + 1}"
        assert check["changed"] is (record["response"] != check["unbatched_response"])
        assert check["unbatched_correct"] is True and check["unbatched_score"] == 1.0
        assert check["score_changed"] is (row in wrong)
    metrics = metrics_of(padded)
    assert metrics["invariance_checked"] == ROWS
    assert metrics["invariance_changed"] == 2
    assert metrics["invariance_score_changed"] == 2
    assert metrics["invariance_errors"] == 0
    assert metrics["invariance_accuracy_delta"] == pytest.approx(2 / ROWS)
    # The unbatched generations were one request each, after the batched ones.
    assert sum(1 for batch in batches(padded) if len(batch) == 1) == ROWS
    # The gate on the count fails the run and says over how many checked items.
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*invariance_changed<=0 FAILS: invariance_changed=2, n=12*"])


def test_the_check_takes_the_seeded_sample_and_never_touches_the_cache(
    padded: pytest.Pytester,
) -> None:
    run_evals(padded, "--llmeval-batch-size=4", "--llmeval-invariance-check=3")
    first = {r["row_index"]: r for r in items(padded)}
    checked = {row for row, r in first.items() if r["invariance"] is not None}
    assert checked == checked_rows(list(range(ROWS)), 3, 0)  # the task seed: Generation.seed 0
    assert metrics_of(padded)["invariance_checked"] == 3
    assert metrics_of(padded)["invariance_changed"] == len(checked & {0, 9})
    # Again with a warm cache: the batched texts come from the cache, the unbatched ones are
    # generated anew (3 single-request batches and nothing else).
    (padded.path / "batches.jsonl").unlink()
    run_evals(padded, "--llmeval-batch-size=4", "--llmeval-invariance-check=3")
    again = {r["row_index"]: r for r in items(padded)}
    assert all(r["cached"] for r in again.values())
    assert [len(batch) for batch in batches(padded)] == [1, 1, 1]
    for row in checked:
        assert again[row]["invariance"] == first[row]["invariance"]
        assert again[row]["response"] == first[row]["response"]


def test_without_the_option_nothing_is_checked_and_an_invariance_gate_has_no_data(
    padded: pytest.Pytester,
) -> None:
    result = run_evals(padded, "--llmeval-cache=off", "--gate=invariance_changed<=0")
    assert all(r["invariance"] is None for r in items(padded))
    metrics = metrics_of(padded)
    assert metrics["invariance_checked"] is None and metrics["invariance_changed"] is None
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*invariance_changed<=0 FAILS: invariance_changed=no data*"])


def test_the_check_selects_the_same_items_under_xdist(padded: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    args = ["--llmeval-cache=off", "--llmeval-batch-size=4", "--llmeval-invariance-check=5"]
    run_evals(padded, *args)
    alone = {r["id"] for r in items(padded) if r["invariance"] is not None}
    result = padded.runpytest_subprocess(
        "--model", "callable:answers:reply", "--llmeval-data-dir=data",
        "--llmeval-report", "out/report.json", "-n", "2", *args,
    )  # fmt: skip
    assert result.ret in (0, 1), result.stdout.str()
    spread = {r["id"] for r in items(padded) if r["invariance"] is not None}
    assert spread == alone and len(alone) == 5
    assert {r["worker"] for r in items(padded)} == {"gw0", "gw1"}


# ---- the batch-invariant mode ------------------------------------------------------------


def test_batch_invariant_mode_batches_only_prompts_of_one_token_length(
    padded: pytest.Pytester,
) -> None:
    run_evals(padded, "--llmeval-cache=off", "--llmeval-batch-size=4")
    assert any(len(set(map(len, batch))) > 1 for batch in batches(padded))  # padded today
    (padded.path / "batches.jsonl").unlink()

    result = run_evals(
        padded,
        "--llmeval-cache=off",
        "--llmeval-batch-size=4",
        "--llmeval-batch-invariant",
        f"--llmeval-invariance-check={ROWS}",
        "--gate=invariance_changed<=0",
    )
    batched = [batch for batch in batches(padded) if len(batch) > 1]
    assert batched, "nothing was batched"
    assert all(len(set(map(len, batch))) == 1 for batch in batches(padded))
    assert all(len(batch) <= 4 for batch in batches(padded))
    records = items(padded)
    assert all(r["batch_invariant"] is True and r["correct"] for r in records)
    assert metrics_of(padded)["invariance_changed"] == 0
    assert result.ret == 0, result.stdout.str()


def test_batch_invariant_mode_keeps_its_own_cache_entries(padded: pytest.Pytester) -> None:
    """A padded generation cached by an ordinary run is not served in invariant mode."""
    run_evals(padded, "--llmeval-batch-size=4")
    result = run_evals(padded, "--llmeval-batch-size=4", "--llmeval-batch-invariant")
    assert not any(r["cached"] for r in items(padded))
    assert result.ret == 0, result.stdout.str()
    run_evals(padded, "--llmeval-batch-size=4", "--llmeval-batch-invariant")
    assert all(r["cached"] and r["batch_invariant"] for r in items(padded))
    run_evals(padded, "--llmeval-batch-size=4")
    assert all(r["cached"] and r["batch_invariant"] is False for r in items(padded))


def test_batch_invariant_mode_on_a_backend_without_token_counts_warns_once(
    padded: pytest.Pytester,
) -> None:
    result = padded.runpytest(
        "--model", "callable:answers:untokenized", "--llmeval-data-dir=data",
        "--llmeval-report", "out/report.json", "--llmeval-cache=off",
        "--llmeval-batch-size=4", "--llmeval-batch-invariant",
        "-W", "ignore::pytest.PytestAssertRewriteWarning",
    )  # fmt: skip
    text = result.stdout.str()
    assert text.count("--llmeval-batch-invariant does not apply to model") == 1, text
    assert all(r["batch_invariant"] is False for r in items(padded))


def test_the_new_options_take_ini_keys_and_refuse_bad_values(padded: pytest.Pytester) -> None:
    padded.makeini(
        """
        [pytest]
        llmeval_invariance_check = 2
        llmeval_batch_invariant = true
        """
    )
    run_evals(padded, "--llmeval-cache=off")
    records = items(padded)
    assert sum(r["invariance"] is not None for r in records) == 2
    assert all(r["batch_invariant"] for r in records)
    bad = run_evals(padded, "--llmeval-invariance-check=-1")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    bad.stderr.fnmatch_lines(["*--llmeval-invariance-check must be >= 0, got -1*"])


# ---- aggregation and gates, from records ------------------------------------------------


def check(changed: bool, score_changed: bool, unbatched_correct: bool) -> Invariance:
    return Invariance(
        unbatched_response="x",
        unbatched_score=1.0 if unbatched_correct else 0.0,
        unbatched_correct=unbatched_correct,
        changed=changed,
        score_changed=score_changed,
        error=None,
    )


def test_metrics_count_changes_over_the_checked_items_only() -> None:
    failed = Invariance(None, None, None, None, None, error="BackendError: boom")
    records = [
        item_record("pass", invariance=check(False, False, True)),
        item_record("fail", invariance=check(True, True, True)),  # fixed when alone
        item_record("pass", invariance=check(True, False, True)),  # other text, same score
        item_record("pass", invariance=check(True, True, False)),  # broken when alone
        item_record("fail", invariance=check(True, True, True)),
        item_record("pass", invariance=failed),
        item_record("pass"),  # not selected
    ]
    metrics = summarize(records)
    assert metrics.invariance_checked == 5
    assert metrics.invariance_errors == 1
    assert metrics.invariance_changed == 4
    assert metrics.invariance_score_changed == 3
    # batched correct 3 of 5, unbatched 4 of 5
    assert metrics.invariance_accuracy_delta == pytest.approx(0.2)
    assert summarize([item_record("pass")]).invariance_checked is None


def test_invariance_metrics_are_gateable() -> None:
    for text in ("invariance_changed<=0", "invariance_score_changed<=1",
                 "invariance_accuracy_delta>=-0.05"):  # fmt: skip
        assert parse_gate(text, "cli").metric == text.split("<")[0].split(">")[0]


def test_the_shipped_schema_describes_the_new_fields() -> None:
    from pytest_llmeval.report.schema import shipped_schema

    record = shipped_schema("item-record")
    assert "invariance" in record["properties"] and "batch_invariant" in record["properties"]
    assert set(record["$defs"]["Invariance"]["properties"]) == {
        "unbatched_response", "unbatched_score", "unbatched_correct", "changed",
        "score_changed", "error",
    }  # fmt: skip
    report = json.dumps(shipped_schema("run-report"))
    for name in ("invariance_checked", "invariance_changed", "invariance_score_changed",
                 "invariance_accuracy_delta", "invariance_errors"):  # fmt: skip
        assert f'"{name}"' in report
