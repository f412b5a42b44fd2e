"""The smoke run (`--llmeval-smoke`, run/smoke.py): whole runs with a healthy model and broken
ones (callables that answer garbage or raise), and the verdict rule on its own."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from conftest import mini_rows
from pytest_llmeval.run.smoke import SmokeOutcome, smoke_verdict

# Each responder logs its name per call, so a test can count the model work done.
RESPONDERS = textwrap.dedent(
    """
    from pathlib import Path

    def _log(name):
        with Path("calls.txt").open("a") as handle:
            handle.write(name + "\\n")

    def _right(messages):
        question = messages[-1]["content"]
        left, op, right = question.split(": ")[1].split()[:3]
        return f"#### {int(left) + int(right)}"

    def healthy(messages, settings):
        _log("healthy")
        return _right(messages)

    def garbage(messages, settings):
        _log("garbage")
        return "no idea"

    def boom(messages, settings):
        _log("boom")
        raise RuntimeError("server on fire")

    def halfway(messages, settings):  # right on mini, unparseable on mini2
        _log("halfway")
        return "no idea" if messages[-1]["content"].startswith("Q2") else _right(messages)
    """
)
TWO_TASKS = textwrap.dedent(
    """
    from pytest_llmeval import ChatPrompt, DataSource, Generation, Task, scoring

    mini = Task(
        name="mini", data=DataSource(files="mini.jsonl"), prompt=ChatPrompt(user="q: {question}"),
        target="answer", scorer=scoring.numeric, generation=Generation(max_new_tokens=16),
    )
    mini2 = Task(
        name="mini2", data=DataSource(files="mini.jsonl"), prompt=ChatPrompt(user="Q2: {question}"),
        target="answer", scorer=scoring.numeric, generation=Generation(max_new_tokens=16),
    )
    """
)
MODELS = ("healthy", "garbage", "boom", "halfway")


@pytest.fixture
def project(evalproject: pytest.Pytester) -> pytest.Pytester:
    """The mini rows (10) under two tasks, and four responders."""
    evalproject.makepyfile(responders=RESPONDERS, test_mini=TWO_TASKS)
    return evalproject


def run(project: pytest.Pytester, *args: str) -> pytest.RunResult:
    models = [arg for name in MODELS for arg in ("--model", f"{name}=callable:responders:{name}")]
    return project.runpytest(
        *models, "--llmeval-data-dir=data", "--llmeval-report", "out/report.json",
        "-p", "no:randomly", "-W", "ignore::pytest.PytestAssertRewriteWarning", *args,
    )  # fmt: skip


def calls(project: pytest.Pytester) -> dict[str, int]:
    lines = (project.path / "calls.txt").read_text().split()
    return {name: lines.count(name) for name in MODELS}


def outcomes(project: pytest.Pytester) -> dict[str, dict[str, int]]:
    """Per model: its items' outcomes in items.jsonl."""
    counts: dict[str, dict[str, int]] = {}
    for line in (project.path / "out" / "items.jsonl").read_text().splitlines():
        record = json.loads(line)
        model = counts.setdefault(record["model"], {})
        model[record["outcome"]] = model.get(record["outcome"], 0) + 1
    return counts


GARBAGE = "2/2 smoke items unparseable (first: 'no idea')"
BOOM = "2/2 smoke requests errored (first: RuntimeError: server on fire)"


def test_smoke_stops_broken_models_and_keeps_the_healthy_ones(project: pytest.Pytester) -> None:
    result = run(project, "--llmeval-smoke")
    # Broken models did their two smoke items only (boom's each retried once alone, as the
    # engine retries any failed request); the others ran their 20 items each.
    assert calls(project) == {"healthy": 20, "garbage": 2, "boom": 4, "halfway": 20}
    assert outcomes(project) == {
        "healthy": {"pass": 20},
        "garbage": {"fail": 2, "error": 18},  # its smoke items are real (wrong) answers
        "boom": {"error": 20},
        "halfway": {"pass": 10, "fail": 10},  # mini2 unparseable, mini fine: it runs
    }
    result.stdout.fnmatch_lines(
        [
            f"ERROR model garbage failed the smoke run (18 items errored): {GARBAGE}",
            f"ERROR model boom failed the smoke run (18 items errored): {BOOM}",
        ]
    )
    # One whole line per broken model, then a short reference on its other items.
    # (Counted before pytest's short summary, which repeats failures in full when CI is set.)
    before_short_summary = result.stdout.str().split("short test summary info")[0]
    assert before_short_summary.count(f"model garbage failed the smoke run: {GARBAGE}") == 1
    report = json.loads((project.path / "out" / "report.json").read_text())
    loads = {load["model"]: load for load in report["model_loads"]}
    assert loads["garbage"]["smoke_failure"] == GARBAGE and loads["garbage"]["items_errored"] == 18
    assert loads["healthy"]["smoke_failure"] is None and loads["healthy"]["smoke_items"] == 2


def test_smoke_items_are_kept_and_cached_not_redone(project: pytest.Pytester) -> None:
    run(project, "--llmeval-smoke")
    (project.path / "calls.txt").unlink()
    result = run(project, "--llmeval-smoke")
    # Every healthy generation, smoke items included, comes from the cache.
    assert calls(project)["healthy"] == 0
    assert outcomes(project)["healthy"] == {"pass": 20}
    result.stdout.fnmatch_lines(["ERROR model garbage failed the smoke run (18 items errored)*"])


def test_without_smoke_a_broken_model_runs_every_item(project: pytest.Pytester) -> None:
    run(project)
    assert calls(project)["garbage"] == 20


def test_only_a_model_with_nothing_usable_fails() -> None:
    ok = SmokeOutcome(parsed=True, text="#### 3")
    unparsed = SmokeOutcome(text="no idea")
    failed = SmokeOutcome(error="RuntimeError: x")
    assert smoke_verdict([ok, unparsed]) is None
    assert smoke_verdict([failed, ok]) is None
    assert smoke_verdict([]) is None
    # An item's own error (its prompt too long) says nothing of the model.
    too_long = SmokeOutcome(error="PromptTooLong: prompt is 40 tokens", item_level=True)
    assert smoke_verdict([too_long]) is None
    assert smoke_verdict([too_long, failed]) == (
        "1/1 smoke requests errored (first: RuntimeError: x)"
    )
    assert smoke_verdict([unparsed, failed]) == (
        "1/2 smoke items unparseable, 1 errored (first: 'no idea')"
    )


def test_smoke_under_xdist_each_worker_smokes_its_share(project: pytest.Pytester) -> None:
    result = run(project, "--llmeval-smoke", "-n", "2")
    assert outcomes(project)["healthy"] == {"pass": 20}
    # Each worker holding garbage items stops it after its own smoke items (at most 2 each).
    assert 1 <= calls(project)["garbage"] <= 4 and outcomes(project)["garbage"].get("pass", 0) == 0
    result.stdout.fnmatch_lines(["ERROR model garbage failed the smoke run (* items errored)*"])
    assert Path(project.path / "out" / "report.json").is_file()


LABEL_TASK = textwrap.dedent(
    """
    from pytest_llmeval import ChatPrompt, DataSource, Generation, Task, scoring

    tox = Task(
        name="tox", data=DataSource(files="tox.jsonl"), prompt=ChatPrompt(user="Text: {text}"),
        target="label", scorer=scoring.label(["toxic", "non-toxic"]),
        generation=Generation(max_new_tokens=16),
    )
    """
)
LABEL_RESPONDERS = textwrap.dedent(
    """
    from pathlib import Path

    def _log(name):
        with Path("calls.txt").open("a") as handle:
            handle.write(name + "\\n")

    def sane(messages, settings):
        _log("sane")
        return "Label: toxic"

    def garbage(messages, settings):
        _log("garbage")
        return "no idea"
    """
)


def test_smoke_stops_a_model_answering_garbage_on_a_label_task(
    evalproject: pytest.Pytester,
) -> None:
    # The label scorer reads "no idea" as "[invalid]", not None: parse_rate counts it
    # unparsed, so must the smoke verdict.
    evalproject.makepyfile(responders=LABEL_RESPONDERS, test_mini=LABEL_TASK)
    rows = [{"text": f"text {i}", "label": "toxic" if i % 2 else "non-toxic"} for i in range(4)]
    (evalproject.path / "data" / "tox.jsonl").write_text(
        "".join(json.dumps(row) + "\n" for row in rows)
    )
    result = evalproject.runpytest(
        "--model", "sane=callable:responders:sane", "--model", "garbage=callable:responders:garbage",
        "--llmeval-data-dir=data", "--llmeval-report", "out/report.json", "-p", "no:randomly",
        "-W", "ignore::pytest.PytestAssertRewriteWarning", "--llmeval-smoke",
    )  # fmt: skip
    lines = (evalproject.path / "calls.txt").read_text().split()
    assert (lines.count("sane"), lines.count("garbage")) == (4, 1)
    assert outcomes(evalproject) == {
        "sane": {"pass": 2, "fail": 2},
        "garbage": {"fail": 1, "error": 3},
    }
    result.stdout.fnmatch_lines(
        [
            "ERROR model garbage failed the smoke run (3 items errored): "
            "1/1 smoke items unparseable (first: 'no idea')"
        ]
    )


MUTE = textwrap.dedent(
    """
    def mute(messages, settings):
        return "   "
    """
)


TASK_MODULE_EXACT = textwrap.dedent(
    """
    from pytest_llmeval import ChatPrompt, DataSource, Generation, Task, scoring

    mini = Task(
        name="mini", data=DataSource(files="mini.jsonl"), prompt=ChatPrompt(user="q: {question}"),
        target="answer", scorer=scoring.exact, generation=Generation(max_new_tokens=16),
    )
    """
)


def test_smoke_stops_a_model_answering_nothing_on_an_exact_task(
    evalproject: pytest.Pytester,
) -> None:
    # The exact scorer's answer to an empty reply is "": nothing was extracted.
    evalproject.makepyfile(responders=MUTE, test_mini=TASK_MODULE_EXACT)
    result = evalproject.runpytest(
        "--model", "mute=callable:responders:mute", "--llmeval-data-dir=data",
        "--llmeval-report", "out/report.json", "-p", "no:randomly",
        "-W", "ignore::pytest.PytestAssertRewriteWarning", "--llmeval-smoke",
    )  # fmt: skip
    assert outcomes(evalproject) == {"mute": {"fail": 1, "error": 9}}
    result.stdout.fnmatch_lines(
        ["ERROR model mute failed the smoke run (9 items errored): 1/1 smoke items unparseable*"]
    )


PICKY = textwrap.dedent(
    """
    from pytest_llmeval.backends.context import PromptTooLong

    def picky(messages, settings):  # the first row is too long for it; the others are fine
        question = messages[-1]["content"]
        if question == "q: 0 + 1":
            raise PromptTooLong("prompt is 40 tokens, model context is 32 (max_new_tokens 16)")
        left, op, right = question.split(": ")[1].split()[:3]
        return f"#### {int(left) + int(right)}"
    """
)


def test_an_item_level_error_on_the_smoke_item_does_not_stop_the_model(
    evalproject: pytest.Pytester,
) -> None:
    # One task, so one smoke item: its prompt does not fit; the model itself is fine.
    evalproject.makepyfile(picky=PICKY)
    result = evalproject.runpytest(
        "--model", "picky=callable:picky:picky", "--llmeval-data-dir=data",
        "--llmeval-report", "out/report.json", "-p", "no:randomly",
        "-W", "ignore::pytest.PytestAssertRewriteWarning", "--llmeval-smoke",
    )  # fmt: skip
    assert outcomes(evalproject) == {"picky": {"error": 1, "pass": 9}}
    assert "failed the smoke run" not in result.stdout.str()
    report = json.loads((evalproject.path / "out" / "report.json").read_text())
    load = report["model_loads"][0]
    # The too-long item, then the task's next item, which generated.
    assert (load["smoke_items"], load["smoke_failure"]) == (2, None)


def test_a_server_context_refusal_on_the_smoke_item_does_not_stop_the_model(
    evalproject: pytest.Pytester,
) -> None:
    from fault_server import Fault, FaultServer
    from test_bad_input_limits import VLLM_TOO_LONG

    rows = mini_rows(n=4).splitlines()
    rows[0] = json.dumps({"question": "0 + 1 LONG", "answer": "1", "kind": "even"})
    (evalproject.path / "data" / "mini.jsonl").write_text("\n".join(rows) + "\n")
    with FaultServer(kind="vllm") as server:
        server.add(Fault.status_code(400, VLLM_TOO_LONG), times=None, when="LONG")
        result = evalproject.runpytest(
            f"--model=openai:test-model@{server.base_url}", "--llmeval-data-dir=data",
            "--llmeval-report", "out/report.json", "--llmeval-cache-dir=gencache",
            "-p", "no:randomly", "-W", "ignore::pytest.PytestAssertRewriteWarning",
            "--llmeval-smoke",
        )  # fmt: skip
    assert "failed the smoke run" not in result.stdout.str()
    # The server echoes the question: "echo: q: 1 + 2" is read as 2, a wrong answer, not an
    # error; only the refused item errors.
    assert list(outcomes(evalproject).values()) == [{"error": 1, "fail": 3}]


def test_a_model_with_no_smoke_item_is_scanned_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from pytest_llmeval.run import smoke

    scans: list[int] = []
    real = smoke.smoke_candidates

    def counted(items: object, done: set[str]) -> object:
        scans.append(1)
        return real(items, done)  # type: ignore[arg-type]

    monkeypatch.setattr(smoke, "smoke_candidates", counted)
    # Five items of one model, each drawing 4 samples: none is a smoke item.
    items = [
        SimpleNamespace(
            spec=SimpleNamespace(name="sampler"),
            task=SimpleNamespace(name="mini"),
            generation=SimpleNamespace(n=4),
            row={"question": f"{i} + 1"},
        )
        for i in range(5)
    ]
    run = smoke.SmokeRun(engine=SimpleNamespace())  # type: ignore[arg-type]
    for position, item in enumerate(items):
        run.before(item, items[position + 1 :])
    assert len(scans) == 1
