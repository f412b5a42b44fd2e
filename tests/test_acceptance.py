"""Whole pytest runs of a small task on the callable backend: outcomes, exit codes, reports."""

from __future__ import annotations

import json
from typing import Any

import pytest

from conftest import assert_valid_run, mini_rows, run_evals
from pytest_llmeval.analyze.record import SCHEMA_VERSION


def read_report(pytester: pytest.Pytester) -> dict[str, Any]:
    report: dict[str, Any] = json.loads((pytester.path / "out" / "report.json").read_text())
    return report


def read_items(pytester: pytest.Pytester) -> list[dict[str, Any]]:
    lines = (pytester.path / "out" / "items.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_correct_items_pass_and_gate_holds(evalproject: pytest.Pytester) -> None:
    result = run_evals(evalproject, "-v")
    result.assert_outcomes(passed=11)  # 10 items + 1 gate
    assert result.ret == 0
    result.stdout.fnmatch_lines(
        [
            "*test_mini.py::mini/test/0000 PASSED*",
            "*gates::mini::accuracy[[]>=0.5 callable:answers:reply[]] PASSED*",
            "*llmeval summary*",
        ]
    )
    report = assert_valid_run(evalproject.path / "out")
    assert report["schema_version"] == SCHEMA_VERSION and report["totals"]["passed"] == 10


def test_wrong_items_fail_with_one_line_but_gate_decides_exit(evalproject: pytest.Pytester) -> None:
    (evalproject.path / "data" / "mini.jsonl").write_text(mini_rows(wrong=3))
    result = run_evals(evalproject)
    result.assert_outcomes(passed=8, failed=3)  # 7 right items + the gate; 3 misses
    assert result.ret == 0, "misses alone must not fail the run while the gate holds"
    result.stdout.fnmatch_lines(['*expected 1, got 999 (strict: "*#### 999")*'])
    result.stdout.no_fnmatch_line("*Traceback*")
    result.stdout.no_fnmatch_line("*ItemMiss*")


def test_failing_gate_sets_exit_code_1(evalproject: pytest.Pytester) -> None:
    (evalproject.path / "data" / "mini.jsonl").write_text(mini_rows(wrong=6))
    result = run_evals(evalproject)
    result.assert_outcomes(passed=4, failed=7)  # 6 misses + the gate
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*gate accuracy>=0.5 FAILS: accuracy=0.4 (95% CI*), n=10*"])


def test_strict_mode_fails_on_any_miss(evalproject: pytest.Pytester) -> None:
    (evalproject.path / "data" / "mini.jsonl").write_text(mini_rows(wrong=1))
    assert run_evals(evalproject).ret == 0
    assert run_evals(evalproject, "--llmeval-strict").ret == 1


def test_cli_gate_overrides_task_gate(evalproject: pytest.Pytester) -> None:
    (evalproject.path / "data" / "mini.jsonl").write_text(mini_rows(wrong=3))
    result = run_evals(evalproject, "--gate", "mini:accuracy>=0.9")
    assert result.ret == 1
    gates = read_report(evalproject)["gates"]
    assert [(g["gate"], g["origin"], g["passed"]) for g in gates] == [
        ("accuracy>=0.9", "cli", False)
    ]


def test_ini_gate_applies_and_cli_wins_over_ini(evalproject: pytest.Pytester) -> None:
    evalproject.makeini(
        "[pytest]\nllmeval_gates =\n    mini:parse_rate>=0.99\n    accuracy>=0.95\n"
    )
    (evalproject.path / "data" / "mini.jsonl").write_text(mini_rows(wrong=1))
    assert run_evals(evalproject).ret == 1  # ini accuracy>=0.95 fails at 0.9
    assert run_evals(evalproject, "--gate", "accuracy>=0.8").ret == 0
    origins = {g["metric"]: g["origin"] for g in read_report(evalproject)["gates"]}
    assert origins == {"parse_rate": "ini", "accuracy": "cli"}


def test_backend_error_is_an_error_and_fails_the_run(evalproject: pytest.Pytester) -> None:
    (evalproject.path / "data" / "mini.jsonl").write_text(mini_rows(boom=2))
    result = run_evals(evalproject, "--llmeval-batch-size", "1")
    result.assert_outcomes(passed=9, errors=2)  # 8 items + gate
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*RuntimeError: backend exploded on purpose*"])
    errors = [r for r in read_items(evalproject) if r["outcome"] == "error"]
    assert [r["id"] for r in errors] == ["mini/test/0000", "mini/test/0001"]
    assert (
        read_report(evalproject)["tasks"]["mini"]["models"]["callable:answers:reply"]["metrics"][
            "n_errors"
        ]
        == 2
    )


def test_report_contents(evalproject: pytest.Pytester) -> None:
    (evalproject.path / "data" / "mini.jsonl").write_text(mini_rows(wrong=2))
    run_evals(evalproject)
    report = read_report(evalproject)
    for key in ("run_id", "started", "finished", "argv", "versions", "machine", "tasks", "gates"):
        assert report[key], key
    assert report["versions"]["python"] and report["versions"]["pytest"]
    assert report["machine"]["gpus"]["count"] == 0
    assert report["machine"]["gpus"]["reason"]
    metrics = report["tasks"]["mini"]["models"]["callable:answers:reply"]["metrics"]
    assert metrics["n"] == 10 and metrics["accuracy"] == pytest.approx(0.8)
    low, high = metrics["accuracy_ci95"]
    assert 0.4 < low < 0.8 < high < 1.0
    assert metrics["latency_p50"] is not None and metrics["latency_p95"] is not None
    # The callable backend counts no tokens (its function returned plain text).
    assert metrics["tokens_out"] is None and metrics["tokens_in"] is None
    assert report["totals"] == {
        "items": 10,
        "passed": 8,
        "failed": 2,
        "errors": 0,
        "gates_failed": 0,
    }
    items = read_items(evalproject)
    assert len(items) == 10
    required = {
        "id",
        "task",
        "model",
        "prompt",
        "response",
        "extracted",
        "target",
        "score",
        "outcome",
        "latency_s",
        "tokens_in",
        "tokens_out",
        "method",
    }
    for item in items:
        assert required <= set(item)
    first = next(i for i in items if i["id"] == "mini/test/0000")
    assert first["extracted"] == "999" and first["target"] == "1" and first["outcome"] == "fail"
    assert first["method"] == "strict" and "q: 0 + 1 WRONG" in first["prompt"]


def test_default_report_path_under_reports(evalproject: pytest.Pytester) -> None:
    evalproject.makeini("[pytest]\n")
    evalproject.runpytest("--model", "callable:answers:reply", "--llmeval-data-dir=data")
    reports = list((evalproject.path / "reports").glob("*/report.json"))
    assert len(reports) == 1
    assert (reports[0].parent / "items.jsonl").is_file()


def test_collect_only_lists_stable_ids_without_running(evalproject: pytest.Pytester) -> None:
    result = run_evals(evalproject, "--collect-only", "-q")
    ids = [line for line in result.stdout.lines if "::mini/" in line]
    assert ids == [f"test_mini.py::mini/test/{i:04d}" for i in range(10)]
    assert not (evalproject.path / "out" / "report.json").exists()


def test_keyword_selects_task_and_partial_gate(evalproject: pytest.Pytester) -> None:
    evalproject.makepyfile(
        test_other="""
        from pytest_llmeval import ChatPrompt, DataSource, Task, scoring
        other = Task(name="other", data=DataSource(files="mini.jsonl"),
                     prompt=ChatPrompt(user="q: {question}"), target="answer",
                     scorer=scoring.numeric)
        """
    )
    result = run_evals(evalproject, "-k", "other")
    result.assert_outcomes(passed=10)  # no gate on "other"
    assert set(read_report(evalproject)["tasks"]) == {"other"}
    result = run_evals(evalproject, "-k", "mini/test/0001 or mini/test/0002")
    result.assert_outcomes(passed=3)
    gate = read_report(evalproject)["gates"][0]
    assert gate["partial"] is True and gate["n"] == 2


def test_limit_samples_stratified_and_reproducibly(evalproject: pytest.Pytester) -> None:
    first = run_evals(evalproject, "--limit", "4", "--collect-only", "-q").stdout.lines
    second = run_evals(evalproject, "--limit", "4", "--collect-only", "-q").stdout.lines
    picked = [line for line in first if "::mini/" in line]
    assert len(picked) == 4 and picked == [line for line in second if "::mini/" in line]
    rows = [int(line.rsplit("/", 1)[1]) for line in picked]
    assert sum(r % 2 == 0 for r in rows) == 2  # two "even" and two "odd" labels
    other_seed = run_evals(
        evalproject, "--limit", "4", "--llmeval-seed", "7", "--collect-only", "-q"
    )
    assert [line for line in other_seed.stdout.lines if "::mini/" in line] != picked


def test_last_failed_reruns_only_the_misses(evalproject: pytest.Pytester) -> None:
    (evalproject.path / "data" / "mini.jsonl").write_text(mini_rows(wrong=2))
    run_evals(evalproject)
    result = run_evals(evalproject, "--lf", "-v")
    # Only the two misses run; the gate over them alone fails and says it saw a partial selection.
    result.assert_outcomes(failed=3)
    result.stdout.fnmatch_lines(
        [
            "*mini/test/0000 FAILED*",
            "*mini/test/0001 FAILED*",
            "*gate accuracy>=0.5 FAILS: accuracy=0 (95% CI*), n=2, partial selection*",
        ]
    )


def test_several_models_get_model_suffix(evalproject: pytest.Pytester) -> None:
    evalproject.makepyfile(answers2="from answers import reply\n")
    result = run_evals(evalproject, "--model", "callable:answers2:reply", "--collect-only", "-q")
    result.stdout.fnmatch_lines(
        [
            "*mini/test/0000[[]callable:answers:reply[]]",
            "*mini/test/0000[[]callable:answers2:reply[]]",
        ]
    )


def test_junit_contains_items_and_gates(evalproject: pytest.Pytester) -> None:
    (evalproject.path / "data" / "mini.jsonl").write_text(mini_rows(wrong=1))
    run_evals(evalproject, "--junitxml", "junit.xml")
    xml = (evalproject.path / "junit.xml").read_text()
    assert xml.count("<testcase ") == 11
    assert 'name="accuracy[&gt;=0.5 callable:answers:reply]"' in xml
    assert "expected 1, got 999" in xml


def test_batching_groups_upcoming_items(evalproject: pytest.Pytester) -> None:
    run_evals(evalproject, "--llmeval-batch-size", "4")
    items = read_items(evalproject)
    sizes = sorted({i["batch_id"]: i["batch_size"] for i in items}.values())
    assert sizes == [2, 4, 4]
    assert all(i["latency_s"] <= i["batch_wall_s"] for i in items)


def test_backend_fixture_shares_the_resident_model(evalproject: pytest.Pytester) -> None:
    evalproject.makepyfile(
        test_handwritten="""
        import pytest

        def test_generate_by_hand(llmeval_backend):
            assert llmeval_backend.generate("q: 2 * 21").endswith("#### 42")
            assert llmeval_backend.last.tokens_out is None  # a str reply: no counts

        def test_chat_messages_and_settings(llmeval_backend):
            messages = [{"role": "user", "content": "q: 2 * 21"}]
            assert llmeval_backend.generate(messages, max_new_tokens=8).endswith("#### 41")

        def test_unknown_setting_names_the_known_ones(llmeval_backend):
            with pytest.raises(TypeError, match="max_tokens; known: max_new_tokens"):
                llmeval_backend.generate("q: 1 + 1", max_tokens=5)

        def test_a_backend_error_is_raised(llmeval_backend):
            with pytest.raises(RuntimeError, match="exploded"):
                llmeval_backend.generate("q: 1 + 1 BOOM")
        """
    )
    # 10 items + gate + 3 hand-written tests pass; the one expecting 41 fails as a test. The
    # global gate applies to the task, not to the hand-written tests (their own verdicts).
    result = run_evals(evalproject, "--gate", "accuracy>=0.9")
    result.assert_outcomes(passed=14, failed=1)
    assert result.ret == 1, "a failing hand-written test fails the run, unlike a miss"
    report = read_report(evalproject)
    assert len(report["model_loads"]) == 1, "the fixture and the items must share one model load"
    by_hand = [r for r in read_items(evalproject) if r["source"] == "test"]
    assert sorted((r["id"], r["outcome"], r["score"]) for r in by_hand) == [
        ("test_a_backend_error_is_raised", "error", None),
        ("test_chat_messages_and_settings", "fail", 0.0),
        ("test_generate_by_hand", "pass", 1.0),
    ]
    assert all(r["task"] == "test_handwritten.py" for r in by_hand)
    generated = [r for r in by_hand if r["outcome"] != "error"]
    assert all(r["response"].endswith("#### 42") and r["cached"] is False for r in generated)
    (boom,) = [r for r in by_hand if r["outcome"] == "error"]
    assert boom["error"] == "RuntimeError: backend exploded on purpose"
    model = report["tasks"]["test_handwritten.py"]["models"]["callable:answers:reply"]
    # The errored generation counts as not correct; `accuracy_answered` leaves it out.
    assert model["metrics"]["n"] == 3 and model["metrics"]["accuracy"] == pytest.approx(1 / 3)
    assert model["metrics"]["accuracy_answered"] == 0.5
    assert [g["task"] for g in report["gates"]] == ["mini"]

    # A rerun serves the hand-written generations from the cache, like the items.
    run_evals(evalproject).assert_outcomes(passed=14, failed=1)
    again = [r for r in read_items(evalproject) if r["source"] == "test"]
    assert len(again) == 3 and all(r["cached"] is True for r in again if r["outcome"] != "error")


def test_run_cut_short_by_maxfail_does_not_pass(evalproject: pytest.Pytester) -> None:
    (evalproject.path / "data" / "mini.jsonl").write_text(mini_rows(wrong=3))
    result = run_evals(evalproject, "-x")
    assert result.ret == 1, "no gate was checked: an aborted run must not exit 0"


def test_gate_on_a_task_that_produced_nothing_fails(evalproject: pytest.Pytester) -> None:
    result = run_evals(evalproject, "--gate", "gsm8k:accuracy>=0.5")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*gate accuracy>=0.5 FAILS: no data: task gsm8k produced*n=0*"])


def test_reused_report_path_holds_one_run(evalproject: pytest.Pytester) -> None:
    run_evals(evalproject)
    run_evals(evalproject)
    assert len(read_items(evalproject)) == 10


def test_an_xfailed_miss_does_not_turn_the_exit_status(evalproject: pytest.Pytester) -> None:
    # Misses are counted from failed call reports: an xfailed miss is no failure at all.
    (evalproject.path / "data" / "mini.jsonl").write_text(mini_rows(wrong=2))
    evalproject.makeconftest(
        """
        import pytest

        def pytest_collection_modifyitems(items):
            for item in items:
                if item.name == "mini/test/0000":
                    item.add_marker(pytest.mark.xfail(reason="known hard row"))
        """
    )
    result = run_evals(evalproject)
    result.assert_outcomes(passed=9, failed=1, xfailed=1)  # 8 right + gate; row 1; row 0
    assert result.ret == 0


def test_the_backend_fixture_serves_wider_scoped_fixtures(evalproject: pytest.Pytester) -> None:
    # Session scope, as before: a module-scoped fixture may build on it. Its generations
    # belong to the test that was running (here: the first that asked for the fixture).
    evalproject.makepyfile(
        test_judge="""
        import pytest

        @pytest.fixture(scope="module")
        def reference_answer(llmeval_backend):
            return llmeval_backend.generate("q: 20 + 22")

        def test_first(reference_answer):
            assert reference_answer.endswith("#### 42")

        def test_second(reference_answer, llmeval_backend):
            assert llmeval_backend.generate("q: 6 * 7") == reference_answer.replace("20 + 22", "6 * 7")
        """
    )
    result = run_evals(evalproject, "test_judge.py")
    result.assert_outcomes(passed=2)
    by_hand = sorted((r["id"], r["prompt"]) for r in read_items(evalproject))
    assert by_hand == [("test_first", "[user] q: 20 + 22"), ("test_second", "[user] q: 6 * 7")]


def test_an_eval_run_without_xdist_loaded(evalproject: pytest.Pytester) -> None:
    # The xdist hooks are registered only when xdist is there: -p no:xdist is a plain run.
    result = run_evals(evalproject, "-p", "no:xdist")
    result.assert_outcomes(passed=11)
    assert result.ret == 0
