"""Bad input gets a clear message naming the input and the fix, and loses nothing else."""

from __future__ import annotations

import json

import pytest

from conftest import mini_rows, run_evals

OTHER_TASK = """
from pytest_llmeval import ChatPrompt, DataSource, Task, scoring
other = Task(name="other", data=DataSource(files="{files}", hub="{hub}"),
             prompt=ChatPrompt(user="{{{field}}}"), target="answer", scorer=scoring.numeric)
"""


def add_task(pytester: pytest.Pytester, files: str, field: str = "question", hub: str = "") -> None:
    source = OTHER_TASK.format(files=files, field=field, hub=hub)
    pytester.makepyfile(test_other=source.replace('hub=""', "hub=None"))


def test_missing_data_skips_task_with_how_to_provide_it(evalproject: pytest.Pytester) -> None:
    add_task(evalproject, "nowhere/missing.jsonl", hub="someorg/somedata")
    result = run_evals(evalproject, "-rs")
    result.assert_outcomes(passed=11, skipped=1)  # the mini task still runs, with its gate
    assert result.ret == 0
    result.stdout.fnmatch_lines(
        [
            "SKIPPED * task other: data not found: put nowhere/missing.jsonl under a data dir and "
            "pass --llmeval-data-dir DIR or set LLMEVAL_DATA_DIR (looked in *data); "
            "or make the Hub reachable for someorg/somedata*"
        ]
    )


def test_malformed_jsonl_row_is_one_error_item(evalproject: pytest.Pytester) -> None:
    lines = mini_rows(n=6).splitlines()
    lines[2] = '{"question": "2 + 3", "answer": '  # cut off mid-row
    (evalproject.path / "data" / "mini.jsonl").write_text("\n".join(lines) + "\n")
    result = run_evals(evalproject, "-v")
    result.assert_outcomes(passed=6, errors=1)  # 5 good rows + gate, 1 bad row
    assert result.ret == 1
    result.stdout.fnmatch_lines(
        ["*mini/test/0002 ERROR*", "*data error: *mini.jsonl:3: malformed JSON*"]
    )
    items = [
        json.loads(x) for x in (evalproject.path / "out" / "items.jsonl").read_text().splitlines()
    ]
    assert sorted(i["outcome"] for i in items) == ["error"] + ["pass"] * 5


def test_unknown_model_alias_lists_known_ones(evalproject: pytest.Pytester) -> None:
    result = evalproject.runpytest("--model", "qwen-77b")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*unknown model 'qwen-77b'*Known aliases: *qwen7b*smollm2-135m*[[]tool.llmeval.models[]]*"]
    )


def test_unknown_task_field_names_it_and_other_files_run(evalproject: pytest.Pytester) -> None:
    evalproject.makepyfile(
        test_typo="""
        from pytest_llmeval import ChatPrompt, DataSource, Task, scoring
        typo = Task(name="typo", data=DataSource(files="mini.jsonl"),
                    promt=ChatPrompt(user="{question}"), target="answer", scorer=scoring.numeric)
        """
    )
    result = run_evals(evalproject)
    result.assert_outcomes(passed=11, errors=1)
    result.stdout.fnmatch_lines(
        ["*task typo: Task got unknown field 'promt' (did you mean 'prompt'?)*"]
    )


def test_prompt_field_missing_from_data_is_a_task_error(evalproject: pytest.Pytester) -> None:
    add_task(evalproject, "mini.jsonl", field="questoin")
    result = run_evals(evalproject)
    result.assert_outcomes(passed=11, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*task other: field(s) 'questoin' not in the data (file:*mini.jsonl); "
            "available fields: answer, kind, question*"
        ]
    )


def test_empty_dataset_is_a_task_error(evalproject: pytest.Pytester) -> None:
    (evalproject.path / "data" / "empty.jsonl").write_text("")
    add_task(evalproject, "empty.jsonl")
    result = run_evals(evalproject)
    result.assert_outcomes(passed=11, errors=1)
    result.stdout.fnmatch_lines(["*task other: dataset file:*empty.jsonl has no rows*"])


def test_misspelt_gate_option_fails_its_gate(evalproject: pytest.Pytester) -> None:
    # Any word may name a task's own metric (a component, a composite): it is resolved at
    # check time, and a name the task lacks fails with the fix, never passes.
    result = run_evals(evalproject, "--gate", "mini:acuracy>=0.5")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        ["*gate acuracy>=0.5 FAILS: unknown metric 'acuracy' (did you mean 'accuracy'?)*"]
    )


def test_malformed_gate_option_is_a_usage_error(evalproject: pytest.Pytester) -> None:
    result = run_evals(evalproject, "--gate", "mini:accuracy=>0.5")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*cannot parse gate 'mini:accuracy=>0.5'*"])


def test_model_load_failure_errors_each_item_once_loaded(evalproject: pytest.Pytester) -> None:
    result = evalproject.runpytest(
        "--model",
        "callable:answers:no_such_function",
        "--llmeval-data-dir=data",
        "--llmeval-report",
        "out/report.json",
        "-W",
        "ignore::pytest.PytestAssertRewriteWarning",
    )
    result.assert_outcomes(errors=10, failed=1)  # every item errors; the gate has no data
    result.stdout.fnmatch_lines(["*'answers' has no callable 'no_such_function'*"])
    report = json.loads((evalproject.path / "out" / "report.json").read_text())
    assert len(report["model_loads"]) == 1 and report["model_loads"][0]["error"]


def test_space_separated_path_option_warns_how_to_write_it(evalproject: pytest.Pytester) -> None:
    result = evalproject.runpytest(
        "--model",
        "callable:answers:reply",
        "--llmeval-data-dir",
        "data",
        "--collect-only",
        "-q",
        "-W",
        "ignore::pytest.PytestAssertRewriteWarning",
    )
    result.stdout.fnmatch_lines(["*'--llmeval-data-dir data'*write '--llmeval-data-dir=data'*"])
    quiet = evalproject.runpytest(
        "--model",
        "callable:answers:reply",
        "--llmeval-data-dir=data",
        "--collect-only",
        "-q",
        "-W",
        "ignore::pytest.PytestAssertRewriteWarning",
    )
    quiet.stdout.no_fnmatch_line("*write '--llmeval-data-dir=*")


def test_scorer_value_outside_0_1_is_an_item_error(evalproject: pytest.Pytester) -> None:
    evalproject.makepyfile(
        test_bad_scorer="""
        from pytest_llmeval import ChatPrompt, DataSource, Score, Task

        def generous(response, target, row):
            return Score(2.0, "x", "custom")

        bad = Task(name="bad", data=DataSource(files="mini.jsonl"), prompt=ChatPrompt(user="q: {question}"),
                   target="answer", scorer=generous)
        """
    )
    result = run_evals(evalproject)
    result.assert_outcomes(passed=11, errors=10)  # the mini task and its gate still run
    result.stdout.fnmatch_lines(["*task bad: scorer returned 2.0; scores must be in [[]0, 1[]]*"])
    assert (evalproject.path / "out" / "report.json").is_file()
