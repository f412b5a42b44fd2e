"""The bad-input suite (issue 11, points 6-8): each kind of bad input as a whole pytest run.

Every kind ends in a one-line message that names the input and the fix, with no Python
traceback, a non-zero exit where the run cannot be trusted, and the healthy `mini` task beside
it still run, cached and reported.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from conftest import run_evals

# ---- helpers ----------------------------------------------------------------------------


def no_traceback(result: pytest.RunResult) -> None:
    """Neither a Python traceback nor pytest's INTERNALERROR dump in the output."""
    text = "\n".join(result.outlines + result.errlines)
    assert "Traceback" not in text, text
    assert "INTERNALERROR" not in text, text


def mini_kept(project: Path) -> None:
    """The healthy mini task's 10 items are in the report and their generations in the cache."""
    report = json.loads((project / "out" / "report.json").read_text())
    items = [json.loads(x) for x in (project / "out" / "items.jsonl").read_text().splitlines()]
    mini = [i for i in items if i["task"] == "mini"]
    assert sorted(i["outcome"] for i in mini) == ["pass"] * 10
    assert report["totals"]["items"] == len(items)
    with sqlite3.connect(project / ".llmeval_cache" / "generations.sqlite3") as db:
        (cached,) = db.execute("SELECT count(*) FROM generations").fetchone()
    assert cached >= 10


def add_module(project: pytest.Pytester, name: str, source: str) -> None:
    project.makepyfile(**{name: source})


BAD_TASK = """
from pytest_llmeval import ChatPrompt, DataSource, Generation, Task, scoring
bad = Task(name="bad", data={data}, prompt=ChatPrompt(user="q: {{question}}"),
           target="answer", scorer=scoring.numeric, generation={generation},
           gates=["accuracy >= 0.5"])
"""


def bad_task(data: str = 'DataSource(files="mini.jsonl")', generation: str = "Generation()") -> str:
    return BAD_TASK.format(data=data, generation=generation)


# ---- 6. report paths: checked at start, a usage error --------------------------------------


def _usage_error(result: pytest.RunResult, project: Path, *lines: str) -> None:
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(list(lines))
    no_traceback(result)
    # Checked before any model work: nothing generated, nothing cached, no stray files.
    assert "passed" not in result.stdout.str()
    assert not (project / ".llmeval_cache").exists()
    assert not (project / "items.jsonl").exists()


def test_report_dir_under_a_file_is_a_usage_error(evalproject: pytest.Pytester) -> None:
    (evalproject.path / "afile").write_text("not a directory\n")
    result = run_evals(evalproject, "--llmeval-report", "afile/out/report.json")
    _usage_error(
        result,
        evalproject.path,
        "*--llmeval-report afile/out/report.json: cannot create directory *afile/out: "
        "*afile is a file; choose another path*",
    )


def test_report_path_that_is_a_directory_is_a_usage_error(evalproject: pytest.Pytester) -> None:
    (evalproject.path / "runs").mkdir()
    result = run_evals(evalproject, "--llmeval-report", "runs")
    _usage_error(
        result,
        evalproject.path,
        "*--llmeval-report runs: *runs is a directory; give a file path such as runs/report.json*",
    )
    assert not (evalproject.path / "summary.md").exists()


def test_default_report_dir_under_a_file_is_a_usage_error(evalproject: pytest.Pytester) -> None:
    (evalproject.path / "reports").write_text("not a directory\n")
    result = evalproject.runpytest(
        "--model",
        "callable:answers:reply",
        "--llmeval-data-dir=data",
        "-W",
        "ignore::pytest.PytestAssertRewriteWarning",
    )
    _usage_error(
        result,
        evalproject.path,
        "*report directory *reports: *reports is a file; remove it or pass --llmeval-report PATH*",
    )


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        ("--junitxml=afile/junit.xml", "*--junitxml afile/junit.xml: cannot create directory*"),
        ("--html=afile/report.html", "*--html afile/report.html: cannot create directory*"),
        ("--html=adir", "*--html adir: *adir is a directory; give a file path such as *"),
    ],
)
def test_other_report_files_are_checked_at_start(
    evalproject: pytest.Pytester, option: str, expected: str
) -> None:
    (evalproject.path / "afile").write_text("not a directory\n")
    (evalproject.path / "adir").mkdir()
    result = run_evals(evalproject, option)
    _usage_error(result, evalproject.path, expected)


def test_plain_session_with_an_odd_junit_path_is_left_to_pytest(pytester: pytest.Pytester) -> None:
    # No llmeval option, task or ini key: the plugin must not change a plain session.
    pytester.makepyfile(test_plain="def test_one():\n    assert True\n")
    (pytester.path / "afile").write_text("x")
    result = pytester.runpytest("--junitxml=afile/junit.xml")
    assert "cannot create directory" not in result.stderr.str()


# ---- 7. declarations: one error item, the healthy suite beside it runs -------------------


@pytest.mark.parametrize(
    ("data", "generation", "expected"),
    [
        (
            None,
            "Generation(max_new_tokens=-1)",
            "*task bad: Generation.max_new_tokens must be an integer >= 1, got -1*",
        ),
        (
            None,
            'Generation(temperature="hot")',
            "*task bad: Generation.temperature must be a number >= 0 (0: greedy), got 'hot'*",
        ),
        (
            None,
            "Generation(max_tokens=64)",
            "*task bad: Generation got unknown field 'max_tokens' (did you mean "
            "'max_new_tokens'?)*",
        ),
        (
            "DataSource(path=123)",
            None,
            "*task bad: DataSource got unknown field 'path'; known fields: hub, config, split, "
            "files*",
        ),
        (
            "DataSource(files=123)",
            None,
            "*task bad: DataSource.files must be a file path (str), got 123*",
        ),
        (
            'DataSource(files="mini.jsonl", split="test[:10]")',
            None,
            "*task bad: DataSource.split must be a split name such as 'test' (no '/', '[[]', "
            "'[]]' or spaces), got 'test[[]:10[]]'*",
        ),
        (
            "DataSource()",
            None,
            "*task bad: DataSource needs at least one of hub=, files= or generate=*",
        ),
    ],
)
def test_bad_declaration_is_one_error_item_and_the_healthy_task_runs(
    evalproject: pytest.Pytester, data: str | None, generation: str | None, expected: str
) -> None:
    source = bad_task(
        **{k: v for k, v in (("data", data), ("generation", generation)) if v is not None}
    )
    add_module(evalproject, "test_bad", source)
    result = run_evals(evalproject, "-rE")
    # mini and its gate; the broken declaration is one error item, like a bad Task field.
    result.assert_outcomes(passed=11, errors=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([expected])
    no_traceback(result)
    mini_kept(evalproject.path)


SCORER_TASK = """
from pytest_llmeval import ChatPrompt, DataSource, Task

def scorer(response, target, row):
    return {value}

bad = Task(name="bad", data=DataSource(files="mini.jsonl"), prompt={prompt},
           target="answer", scorer=scorer)
"""


@pytest.mark.parametrize(
    ("value", "prompt", "expected"),
    [
        (
            "None",
            'ChatPrompt(user="q: {question}")',
            "*task bad: scorer must return a Score(value, extracted, method), got None*",
        ),
        (
            "1.0",
            'ChatPrompt(user="q: {question}")',
            "*task bad: scorer must return a Score(value, extracted, method), got float 1.0 "
            "(wrap it: Score(1.0, extracted, method))*",
        ),
        (
            "None",
            'lambda row: "q: " + row["question"]',
            "*task bad: the prompt function must return a list of chat messages "
            "[[]{'role': 'user', 'content': ...}[]], got str 'q: 0 + 1'*",
        ),
    ],
)
def test_scorer_or_prompt_of_the_wrong_type_says_what_was_expected(
    evalproject: pytest.Pytester, value: str, prompt: str, expected: str
) -> None:
    add_module(evalproject, "test_bad", SCORER_TASK.format(value=value, prompt=prompt))
    result = run_evals(evalproject, "-rE")
    result.assert_outcomes(passed=11, errors=10)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([expected])
    no_traceback(result)
    mini_kept(evalproject.path)


# ---- 8. data -----------------------------------------------------------------------------

PNG_BYTES = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01" + bytes(range(256))


@pytest.mark.parametrize("name", ["pic.jsonl", "pic.json", "pic.csv"])
def test_binary_data_file_names_the_file_and_the_encoding(
    evalproject: pytest.Pytester, name: str
) -> None:
    (evalproject.path / "data" / name).write_bytes(PNG_BYTES)
    add_module(evalproject, "test_bad", bad_task(data=f'DataSource(files="{name}")'))
    result = run_evals(evalproject, "-rE")
    result.assert_outcomes(passed=11, errors=1, failed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            f"*task bad: *data/{name} is not UTF-8 text (byte 0x89 at offset 0: invalid start "
            "byte); save it as UTF-8*"
        ]
    )
    no_traceback(result)
    mini_kept(evalproject.path)


ECHO_TASK = """
from pytest_llmeval import ChatPrompt, DataSource, Task, scoring

def reply(messages, settings):
    return messages[-1]["content"].removeprefix("say ")

echo = Task(name="echo", data=DataSource(files="echo.csv"), prompt=ChatPrompt(user="say {say}"),
            target="answer", scorer=scoring.exact)
"""


def test_csv_targets_keep_their_strings(pytester: pytest.Pytester) -> None:
    pytester.syspathinsert()
    pytester.makepyfile(test_echo=ECHO_TASK)
    (pytester.path / "data").mkdir()
    # "007" must stay 007, and an empty target cell must not become NaN (which "nan" matched).
    (pytester.path / "data" / "echo.csv").write_text("say,answer\n007,007\nnan,\n42,42\n")
    result = pytester.runpytest(
        "--model",
        "callable:test_echo:reply",
        "--llmeval-data-dir=data",
        "--llmeval-report=out/report.json",
        "-W",
        "ignore::pytest.PytestAssertRewriteWarning",
    )
    items = {
        i["id"]: i
        for i in map(json.loads, (pytester.path / "out" / "items.jsonl").read_text().splitlines())
    }
    assert items["echo/test/0000"]["target"] == "007"
    assert items["echo/test/0000"]["outcome"] == "pass"
    assert items["echo/test/0001"]["target"] == ""
    assert items["echo/test/0001"]["outcome"] != "pass"
    assert items["echo/test/0002"]["target"] == "42"
    assert items["echo/test/0002"]["outcome"] == "pass"
    no_traceback(result)


def test_missing_file_of_a_gated_task_fails_its_gates(evalproject: pytest.Pytester) -> None:
    add_module(evalproject, "test_bad", bad_task(data='DataSource(files="nowhere.jsonl")'))
    result = run_evals(evalproject, "-rs")
    result.assert_outcomes(passed=11, skipped=1, failed=1)  # the skipped task's gate fails
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*bad*accuracy>=0.5*data not found: put nowhere.jsonl*"])
    no_traceback(result)
    mini_kept(evalproject.path)


def test_data_path_that_is_a_directory_is_an_error(evalproject: pytest.Pytester) -> None:
    (evalproject.path / "data" / "shards.jsonl").mkdir()
    add_module(evalproject, "test_bad", bad_task(data='DataSource(files="shards.jsonl")'))
    result = run_evals(evalproject, "-rE")
    result.assert_outcomes(passed=11, errors=1, failed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        ["*task bad: *data/shards.jsonl is a directory; files= must name one data file*"]
    )
    no_traceback(result)
    mini_kept(evalproject.path)


# ---- units behind the runs above ---------------------------------------------------------


def test_generation_keeps_its_cache_key_and_positional_values() -> None:
    from pytest_llmeval.declare.task import Generation

    # `problem` is no setting, nor is `n` (how many draws): the cache key's settings
    # (draw_dict) and equality stay as before, so earlier caches still serve.
    settings = Generation(64, 0.5, stop="###").draw_dict()
    assert Generation(64, 0.5, stop="###").as_dict() == {**settings, "n": 1}
    assert settings == {
        "max_new_tokens": 64,
        "temperature": 0.5,
        "top_p": 1.0,
        "stop": ("###",),
        "seed": 0,
        "top_k": 0,
        "repetition_penalty": 1.0,
    }
    assert Generation(max_new_tokens=64) == Generation(64)
    assert Generation().problem is None


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"max_new_tokens": True}, "Generation.max_new_tokens must be an integer >= 1, got True"),
        ({"seed": 1.5}, "Generation.seed must be an integer, got 1.5"),
        ({"stop": 7}, "Generation.stop must be a string or a list of strings, got 7"),
        ({"top_k": -1}, "Generation.top_k must be an integer >= 0 (0: no top-k cut), got -1"),
    ],
)
def test_generation_problem_names_the_field_and_the_value(
    kwargs: dict[str, object], expected: str
) -> None:
    from pytest_llmeval.declare.task import Generation

    assert Generation(**kwargs).problem == expected


def test_data_source_problem_is_raised_where_rows_are_loaded(tmp_path: Path) -> None:
    from pytest_llmeval.declare.data import load_rows
    from pytest_llmeval.declare.task import DataSource, TaskError

    with pytest.raises(TaskError, match="DataSource.csv_sep must be a non-empty string"):
        load_rows(DataSource(files="x.csv", csv_sep=""), tmp_path)


def test_data_source_accepts_a_path_object(tmp_path: Path) -> None:
    from pytest_llmeval.declare.data import load_rows
    from pytest_llmeval.declare.task import DataSource

    (tmp_path / "rows.jsonl").write_text('{"q": "1"}\n')
    source = DataSource(files=tmp_path / "rows.jsonl")
    assert source.problem is None and source.files == str(tmp_path / "rows.jsonl")
    assert load_rows(source, None).rows == [{"q": "1"}]


def test_csv_cells_stay_text(tmp_path: Path) -> None:
    from pytest_llmeval.declare.data import load_rows
    from pytest_llmeval.declare.task import DataSource

    (tmp_path / "rows.csv").write_text("q,answer\na,007\nb,\nc,NA\nd,1e3\n", encoding="utf-8")
    rows = load_rows(DataSource(files="rows.csv"), tmp_path).rows
    assert [row["answer"] for row in rows] == ["007", "", "NA", "1e3"]  # type: ignore[index]


def test_utf8_bom_is_not_part_of_the_first_row(tmp_path: Path) -> None:
    from pytest_llmeval.declare.data import load_rows
    from pytest_llmeval.declare.task import DataSource

    (tmp_path / "rows.jsonl").write_bytes(b'\xef\xbb\xbf{"q": "1"}\n')
    assert load_rows(DataSource(files="rows.jsonl"), tmp_path).rows == [{"q": "1"}]


@pytest.mark.parametrize(
    "returned", ["'hello'", "['hello']", "[]", "[{'content': 'hi'}]", "{'role': 'user'}"]
)
def test_prompt_function_must_return_chat_messages(returned: str) -> None:
    from pytest_llmeval.declare.task import DataSource, Task, TaskError

    task = Task(
        name="t",
        data=DataSource(files="x.jsonl"),
        prompt=eval(f"lambda row: {returned}"),
        target="a",
        scorer="exact",
    )
    with pytest.raises(TaskError, match="must return a list of chat messages"):
        task.messages({"a": "1"})


def test_hand_written_generate_with_bad_settings_fails_that_test(
    evalproject: pytest.Pytester,
) -> None:
    # A kept problem is still raised where the settings are used: in the test that used them.
    add_module(
        evalproject,
        "test_hand",
        "def test_hand(llmeval_backend):\n"
        "    llmeval_backend.generate('q: 1 + 2', max_new_tokens=0)\n",
    )
    result = run_evals(evalproject)
    result.assert_outcomes(passed=11, failed=1)
    result.stdout.fnmatch_lines(
        ["*llmeval_backend.generate: Generation.max_new_tokens must be an integer >= 1, got 0*"]
    )


def test_unknown_hub_split_names_the_splits(tmp_path: Path) -> None:
    # A dataset directory read by `datasets.load_dataset` itself, as a Hub dataset would be.
    from pytest_llmeval.declare.data import load_rows
    from pytest_llmeval.declare.task import DataSource, TaskError

    (tmp_path / "train.jsonl").write_text('{"q": "1", "a": "2"}\n')
    with pytest.raises(TaskError) as excinfo:
        load_rows(DataSource(hub=str(tmp_path), split="tset"), None, hub=True)
    assert str(excinfo.value) == (
        f"hub:{tmp_path}/default/tset: Unknown split \"tset\". Should be one of ['train']. "
        "Set DataSource(split=...) to one of them"
    )
