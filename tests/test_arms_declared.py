"""Arms a run declares: named model arms (`--model NAME=SPEC`), a task's prompt variants
(`Task(variants=...)`) and the model arms a task runs on (`Task(models=...)`).

Deterministic checks run `callable:` arms on the mini rows; the comparison of two variants
runs the embedded model on GSM8K rows from ../shared/data."""

from __future__ import annotations

import html
import json
import textwrap
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from conftest import assert_valid_run, shared_data_dir
from pytest_llmeval.analyze.paired import holm
from pytest_llmeval.declare.ids import arm_name, arm_parts
from pytest_llmeval.declare.models import UnknownModel, resolve_models, split_arm_name
from pytest_llmeval.declare.task import ChatPrompt, DataSource, Task
from pytest_llmeval.run import records

# ---- names: `--model NAME=SPEC` ---------------------------------------------------------


def test_a_plain_name_before_the_first_equals_names_the_arm() -> None:
    base, patched = resolve_models(["base=qwen7b", "patched=callable:mypatch:generate"])
    assert (base.name, base.backend, base.model_id) == (
        "base",
        "transformers",
        "Qwen/Qwen2.5-7B-Instruct",
    )
    assert (patched.name, patched.backend, patched.model_id) == (
        "patched",
        "callable",
        "mypatch:generate",
    )
    # Unnamed specs keep today's names; the same value twice is one arm.
    assert [s.name for s in resolve_models(["qwen7b", "qwen7b", "callable:m:f"])] == [
        "qwen7b",
        "callable:m:f",
    ]


@pytest.mark.parametrize(
    "value",
    [
        "openai:gpt-4o@http://127.0.0.1:8000/v1?api_key=abc",  # `:` before the first `=`
        "org/model=v2",  # a path-like prefix
        "callable:mod:fn",
    ],
)
def test_an_equals_inside_a_spec_names_no_arm(value: str) -> None:
    assert split_arm_name(value) == (None, value)


def test_a_directory_whose_name_holds_an_equals_is_a_model_not_a_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lr=3e-4").mkdir()
    assert split_arm_name("lr=3e-4") == (None, "lr=3e-4")
    [spec] = resolve_models(["lr=3e-4"])
    assert spec.name == "lr=3e-4" and spec.model_id.endswith("lr=3e-4")


def test_duplicate_and_empty_arm_names_are_one_line_errors() -> None:
    with pytest.raises(UnknownModel, match="arm name 'a' is taken by an earlier --model"):
        resolve_models(["a=qwen7b", "a=qwen1.5b"])
    with pytest.raises(UnknownModel, match="arm name 'qwen7b' is taken"):
        resolve_models(["qwen7b", "qwen7b=qwen1.5b"])
    with pytest.raises(UnknownModel, match="give the model after '='"):
        resolve_models(["a="])


def test_arm_names_and_their_parts() -> None:
    assert arm_name("qwen7b", None, several_models=True) == "qwen7b"
    assert arm_name("qwen7b", "cot", several_models=True) == "qwen7b-cot"
    assert arm_name("qwen7b", "cot", several_models=False) == "cot"
    models = ["smollm2-135m", "smollm2-135m-x", "qwen7b"]
    assert arm_parts("smollm2-135m-cot", models) == ("smollm2-135m", "cot")
    assert arm_parts("smollm2-135m-x-cot", models) == ("smollm2-135m-x", "cot")
    assert arm_parts("qwen7b", models) == ("qwen7b", None)
    assert arm_parts("cot", ["qwen7b"]) == ("qwen7b", "cot")
    assert arm_parts("qwen7b", ["qwen7b"]) == ("qwen7b", None)


def test_a_crashed_items_record_reads_model_and_variant_from_its_bracket() -> None:
    record = records.crashed(
        "evals/t.py::gsm8k/test/0042[smollm2-135m-cot]", "worker crashed", ["qwen7b",
        "smollm2-135m"], "gw1"
    )  # fmt: skip
    assert (record.arm, record.model, record.variant) == ("smollm2-135m-cot", "smollm2-135m", "cot")
    alone = records.not_run("evals/t.py::gsm8k/test/0042", "not run: x", ["qwen7b"])
    assert (alone.arm, alone.model, alone.variant) == ("qwen7b", "qwen7b", None)


# ---- declaring variants and models ------------------------------------------------------


def _task(**fields: Any) -> Task:
    return Task(
        name="t", data=DataSource(files="x.jsonl"), target="answer", scorer="numeric", **fields
    )


def test_variant_and_model_declarations_that_cannot_run_say_why() -> None:
    prompt = ChatPrompt(user="{question}")
    assert _task(variants={"plain": prompt, "cot": prompt}).problem is None
    assert "give prompt= or variants=, not both" in str(
        _task(prompt=prompt, variants={"a": prompt}).problem
    )
    assert "missing required field(s): prompt" in str(_task().problem)
    assert "variant name 'two words'" in str(_task(variants={"two words": prompt}).problem)
    assert "variant 'a' must be a ChatPrompt" in str(_task(variants={"a": "text"}).problem)
    assert "non-empty dict" in str(_task(variants={}).problem)
    assert "models= must be a list of --model arm names" in str(
        _task(prompt=prompt, models=[1]).problem
    )
    assert _task(prompt=prompt, models="pipeline").models == ("pipeline",)


# ---- whole runs on callable arms --------------------------------------------------------

# Answers like `answers:reply`, but wrong on rows 1 and 2 under the terse prompt; every call
# is appended to the file $CALLS_LOG (what the model was asked, for cache checks).
VARIANT_REPLY = textwrap.dedent(
    """
    import os

    def reply(messages, settings):
        question = messages[-1]["content"]
        with open(os.environ["CALLS_LOG"], "a") as log:
            log.write(question.replace("\\n", " ") + "\\n")
        left, op, right = question.split("q: ")[1].split()[:3]
        if question.startswith("Tersely") and left in ("1", "2"):
            return "#### 999"
        value = int(left) + int(right)
        return f"{left} + {right} = {value}\\n#### {value}"

    def worse(messages, settings):
        text = reply(messages, settings)
        left = messages[-1]["content"].split("q: ")[1].split()[0]
        return "#### 999" if left in ("3", "4", "5") else text
    """
)

VARIANT_TASKS = textwrap.dedent(
    """
    from pytest_llmeval import ChatPrompt, DataSource, Generation, Task, scoring

    mini = Task(
        name="mini",
        data=DataSource(files="mini.jsonl"),
        variants={
            "plain": ChatPrompt(user="q: {question}"),
            "terse": ChatPrompt(user="Tersely, q: {question}"),
        },
        target="answer",
        scorer=scoring.numeric,
        generation=Generation(max_new_tokens=16),
        gates=["accuracy >= 0.5"],
    )
    """
)

ONE = "callable:variant_reply:reply"


@pytest.fixture
def variantproject(
    evalproject: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> pytest.Pytester:
    evalproject.makepyfile(variant_reply=VARIANT_REPLY, test_mini=VARIANT_TASKS)
    monkeypatch.setenv("CALLS_LOG", str(evalproject.path / "calls.log"))
    return evalproject


def run(pytester: pytest.Pytester, *args: str, models: tuple[str, ...] = (ONE,)) -> Any:
    model_args = [arg for model in models for arg in ("--model", model)]
    return pytester.runpytest(
        *model_args,
        "--llmeval-data-dir=data",
        "--llmeval-report",
        "out/report.json",
        "-p",
        "no:randomly",
        "-W",
        "ignore::pytest.PytestAssertRewriteWarning",
        *args,
    )


def items_of(pytester: pytest.Pytester) -> list[dict[str, Any]]:
    lines = (pytester.path / "out" / "items.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def calls(pytester: pytest.Pytester) -> list[str]:
    log = pytester.path / "calls.log"
    return log.read_text().splitlines() if log.exists() else []


def test_variant_ids_with_one_model_and_with_several(variantproject: pytest.Pytester) -> None:
    one = run(variantproject, "--collect-only", "-q")
    one.stdout.fnmatch_lines(["*::mini/test/0000[[]plain[]]", "*::mini/test/0009[[]terse[]]"])
    assert "20 tests collected" in one.stdout.str()
    two = run(
        variantproject,
        "--collect-only",
        "-q",
        models=(f"a={ONE}", "b=callable:variant_reply:worse"),
    )
    two.stdout.fnmatch_lines(
        [
            "*::mini/test/0000[[]a-plain[]]",
            "*::mini/test/0000[[]a-terse[]]",
            "*::mini/test/0000[[]b-plain[]]",
            "*::mini/test/0009[[]b-terse[]]",
        ]
    )
    assert "40 tests collected" in two.stdout.str()


def test_k_selects_one_variant_and_lf_reruns_one_arms_misses(
    variantproject: pytest.Pytester,
) -> None:
    selected = run(variantproject, "-k", "mini and terse")
    assert selected.ret == 0, selected.stdout.str()
    assert {r["arm"] for r in items_of(variantproject)} == {"terse"}
    assert len(items_of(variantproject)) == 10

    run(variantproject)  # both variants: the terse arm misses rows 1 and 2
    again = run(variantproject, "--lf", "-v")
    again.stdout.fnmatch_lines(["*mini/test/0001[[]terse[]] FAILED*"])
    rerun = items_of(variantproject)
    assert [(r["id"], r["arm"], r["variant"]) for r in rerun] == [
        ("mini/test/0001", "terse", "terse"),
        ("mini/test/0002", "terse", "terse"),
    ]


def test_variants_never_share_a_cached_generation(variantproject: pytest.Pytester) -> None:
    first = run(variantproject)
    assert first.ret == 0, first.stdout.str()
    made = items_of(variantproject)
    # Both variants asked the model for every row: no variant was served the other's text.
    assert len(calls(variantproject)) == 20
    assert not any(r["cached"] for r in made)
    by_arm = {(r["arm"], r["id"]): r for r in made}
    assert by_arm[("terse", "mini/test/0001")]["response"] == "#### 999"
    assert by_arm[("plain", "mini/test/0001")]["extracted"] == "3"
    assert (
        by_arm[("terse", "mini/test/0001")]["prompt"]
        != by_arm[("plain", "mini/test/0001")]["prompt"]
    )
    # The rerun reads each variant's own generation back (no model work).
    second = run(variantproject)
    assert second.ret == 0 and len(calls(variantproject)) == 20
    assert [(r["arm"], r["response"]) for r in items_of(variantproject)] == [
        (r["arm"], r["response"]) for r in made
    ]
    assert all(r["cached"] for r in items_of(variantproject))


def test_variants_are_compared_and_gated_as_arms(variantproject: pytest.Pytester) -> None:
    result = run(variantproject, "--gate", "mini:delta(terse)<=-0.2")
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "*Arms compared with the baseline arm*",
            "*mini*plain (baseline)*10*1.000*",
            "*mini*terse*10*0.800*-0.200*",
        ]
    )
    report = assert_valid_run(variantproject.path / "out")
    [comparison] = report["comparisons"]
    assert (comparison["baseline"], comparison["candidate"]) == ("plain", "terse")
    assert (comparison["wins"], comparison["losses"]) == (0, 2)
    task = report["tasks"]["mini"]
    assert set(task["models"]) == {"plain", "terse"}
    assert task["models"]["terse"]["metrics"]["accuracy"] == pytest.approx(0.8)
    variants = task["declaration"]["variants"]
    assert list(variants) == ["plain", "terse"]
    assert variants["plain"]["user"] == "q: {question}"
    assert variants["plain"]["sha256"] != variants["terse"]["sha256"]
    assert task["declaration"]["prompt"] == variants["plain"]
    swapped = run(variantproject, "--llmeval-baseline-arm", "terse")
    [comparison] = assert_valid_run(variantproject.path / "out")["comparisons"]
    assert (comparison["baseline"], comparison["candidate"]) == ("terse", "plain")
    assert swapped.ret == 0


def test_a_sweep_of_two_variants_by_two_models_compares_four_arms_with_holm(
    variantproject: pytest.Pytester,
) -> None:
    models = (f"a={ONE}", "b=callable:variant_reply:worse")
    result = run(variantproject, models=models)
    assert result.ret == 0, result.stdout.str()
    report = assert_valid_run(variantproject.path / "out")
    comparisons = report["comparisons"]
    assert [(c["baseline"], c["candidate"]) for c in comparisons] == [
        ("a-plain", "a-terse"),
        ("a-plain", "b-plain"),
        ("a-plain", "b-terse"),
    ]
    # a-terse: 2 losses; b-plain: 3 losses; b-terse: 5 losses (rows 1-5).
    assert [c["losses"] for c in comparisons] == [2, 3, 5]
    raw = [c["p_value_mcnemar"] for c in comparisons]
    assert [c["p_value"] for c in comparisons] == pytest.approx(holm(raw))
    assert comparisons[2]["p_value"] == pytest.approx(min(1.0, 3 * raw[2]))
    assert set(report["tasks"]["mini"]["models"]) == {"a-plain", "a-terse", "b-plain", "b-terse"}
    records_by_arm = {(r["arm"], r["model"], r["variant"]) for r in items_of(variantproject)}
    assert ("b-terse", "b", "terse") in records_by_arm


# ---- which models a task runs on --------------------------------------------------------

RESTRICTED = textwrap.dedent(
    """
    from pytest_llmeval import ChatPrompt, DataSource, Generation, Task, scoring

    def _task(name, models):
        return Task(
            name=name,
            data=DataSource(files="mini.jsonl"),
            prompt=ChatPrompt(user="q: {question}"),
            target="answer",
            scorer=scoring.numeric,
            generation=Generation(max_new_tokens=16),
            gates=["accuracy >= 0.9"],
            models=models,
        )

    rag = _task("rag", ["pipeline"])
    mc = _task("mc", ["pipeline", "plain"])
    other = _task("other", ["elsewhere"])
    """
)


def test_a_task_runs_only_on_the_models_it_names(evalproject: pytest.Pytester) -> None:
    evalproject.makepyfile(test_mini=RESTRICTED)
    result = run(
        evalproject,
        "-rs",
        "--gate",
        "accuracy>=0.95",
        models=("pipeline=callable:answers:reply", "plain=callable:answers:reply"),
    )
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "*SKIPPED*task other runs only on model arm(s) elsewhere, not among this run's "
            "models (pipeline, plain): add --model elsewhere=SPEC or change the task's models=*"
        ]
    )
    made = items_of(evalproject)
    assert {(r["task"], r["arm"]) for r in made} == {
        ("rag", "pipeline"),
        ("mc", "pipeline"),
        ("mc", "plain"),
    }
    assert any(r["nodeid"].endswith("rag/test/0000[pipeline]") for r in made)
    report = assert_valid_run(evalproject.path / "out")
    # The skipped task's gates are not evaluated (passed None), so they do not fail the run.
    other = [g for g in report["gates"] if g["task"] == "other"]
    assert other and all(g["passed"] is None for g in other)
    assert report["tasks"]["rag"]["declaration"]["models"] == ["pipeline"]


# ---- the embedded model: two prompt variants on GSM8K rows ------------------------------

GSM8K_VARIANTS = textwrap.dedent(
    """
    from pytest_llmeval import ChatPrompt, DataSource, Generation, Task, scoring

    gsm8k = Task(
        name="gsm8k",
        data=DataSource(hub="openai/gsm8k", config="main", split="test", files="gsm8k/test.jsonl"),
        variants={
            "plain": ChatPrompt(user="{question}"),
            "format": ChatPrompt(
                user="{question}\\nSolve it step by step, then end with a line '#### <number>'."
            ),
        },
        target=lambda row: scoring.gsm8k_target(row["answer"]),
        scorer=scoring.numeric,
        generation=Generation(max_new_tokens=48),
    )
    """
)


def test_two_prompt_variants_on_the_embedded_model_are_compared(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_gsm8k=GSM8K_VARIANTS)
    # In a subprocess: torch imported inside an in-process run would be dropped from
    # sys.modules afterwards, and importing it again breaks later tests of this process.
    result = pytester.runpytest_subprocess(
        "--limit", "4", f"--llmeval-data-dir={shared_data_dir()}", "--llmeval-report",
        "out/report.json", "-p", "no:randomly", "-W", "ignore::pytest.PytestAssertRewriteWarning",
    )  # fmt: skip
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(["*Arms compared with the baseline arm*", "*gsm8k*format*4*"])
    report = assert_valid_run(pytester.path / "out")
    [comparison] = report["comparisons"]
    assert (comparison["baseline"], comparison["candidate"], comparison["n"]) == (
        "plain",
        "format",
        4,
    )
    made = items_of(pytester)
    assert len(made) == 8 and {r["model"] for r in made} == {"smollm2-135m"}
    plain = {r["id"]: r for r in made if r["variant"] == "plain"}
    formatted = {r["id"]: r for r in made if r["variant"] == "format"}
    assert plain.keys() == formatted.keys()
    # Each variant's own prompt reached the model, and the figures are those of its records.
    assert all("####" in formatted[i]["prompt"] and "####" not in plain[i]["prompt"] for i in plain)
    right = sum(bool(r["correct"]) for r in formatted.values())
    assert comparison["candidate_accuracy"] == pytest.approx(right / 4)
    assert comparison["delta"] == pytest.approx(
        comparison["candidate_accuracy"] - comparison["baseline_accuracy"]
    )


# The hinted variant shows the model GSM8K's worked answer (with its `<<16-3-4=9>>`
# calculator marks): copied, it flips items to right, and its markup must reach the HTML
# report escaped.
GSM8K_HINTED = GSM8K_VARIANTS.replace(
    "Solve it step by step, then end with a line '#### <number>'.",
    "Worked solution:\\n{answer}\\nCopy the worked solution exactly.",
).replace('"format"', '"hinted"')


def test_html_report_and_provenance_of_two_variants_on_the_embedded_model(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_gsm8k=GSM8K_HINTED)
    result = pytester.runpytest_subprocess(
        "--limit", "3", f"--llmeval-data-dir={shared_data_dir()}", "--llmeval-report",
        "out/report.json", "-p", "no:randomly", "-W", "ignore::pytest.PytestAssertRewriteWarning",
        "--html", "out/report.html",
    )  # fmt: skip
    assert result.ret == 0, result.stdout.str()
    out = pytester.path / "out"
    report = assert_valid_run(out)
    [comparison] = report["comparisons"]
    page = (out / "report.html").read_text()
    section = page[page.index("<h2>llmeval arm comparison</h2>") :]
    assert "plain (baseline)" in section and "hinted" in section
    assert f"{comparison['delta']:+.3f} [{comparison['delta_ci95'][0]:+.3f}, " in section
    # Every flipped item side by side, its responses on one line and escaped.
    flips = pd.read_parquet(out / "comparison.parquet").query("flipped")
    assert len(flips) == len(comparison["won"]) + len(comparison["lost"]) > 0
    assert f"Flipped items (all {len(flips)};" in section
    for response in flips["candidate_response"]:
        assert html.escape(" ".join(response.split())[:150]) in section
    assert "&lt;&lt;" in section and "<<" not in section  # GSM8K's calculator marks, copied

    # Provenance per arm: one model, two prompts (the declared variants' hashes), one data set.
    task = report["tasks"]["gsm8k"]
    arms = task["arms"]
    assert set(arms) == set(task["models"]) == {"plain", "hinted"}
    plain, hinted = arms["plain"], arms["hinted"]
    assert plain["model_id"] == hinted["model_id"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert (plain["model"], plain["backend"]) == ("smollm2-135m", "transformers")
    assert plain["identity_sha256"] == hinted["identity_sha256"]
    [load] = report["model_loads"]
    assert plain["identity_sha256"] == load["identity_sha256"]
    assert len(load["identity_sha256"]) == 64
    assert (plain["variant"], hinted["variant"]) == ("plain", "hinted")
    variants = task["declaration"]["variants"]
    assert plain["prompt_sha256"] == variants["plain"]["sha256"]
    assert hinted["prompt_sha256"] == variants["hinted"]["sha256"] != plain["prompt_sha256"]
    assert plain["data_sha256"] == hinted["data_sha256"] == task["data"]["sha256"]
    assert plain["patch_sha256"] is None
