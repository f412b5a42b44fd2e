"""Issue 15: `pytest-llmeval audit` on real saved runs of the callable backend: a clean run
has no finding (exit 0); crafted copies, each with one problem written into its report.json
or items.jsonl (still valid against the schemas), are flagged with the right kind (exit 1)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest

from conftest import REPO_ROOT, TASK_MODULE, assert_valid_run, mini_rows
from pytest_llmeval.cli import main
from pytest_llmeval.report.schema import shipped_schema

# The callable responder of conftest, but reporting token counts as a model would (the callable
# backend has no tokenizer: without counts every generated item lacks tokens_out).
COUNTED = textwrap.dedent(
    """
    def reply(messages, settings):
        question = messages[-1]["content"]
        if "BOOM" in question:
            raise RuntimeError("backend exploded on purpose")
        if "WRONG" in question:
            text = "I think it is 999.\\n#### 999"
        else:
            left, op, right = question.split("q: ")[1].split()[:3]
            value = {"+": int(left) + int(right), "*": int(left) * int(right)}[op]
            text = f"Let me compute: {left} {op} {right} = {value}.\\n#### {value}"
        return {"text": text, "tokens_in": len(question), "tokens_out": len(text.split())}
    """
)
SAMPLED_TASK = TASK_MODULE.replace(
    "Generation(max_new_tokens=16)", "Generation(max_new_tokens=16, n=3, temperature=0.7)"
)
assert SAMPLED_TASK != TASK_MODULE
ARM = "callable:counted:reply"
N = 12


def _saved_run(root: Path, rows: str, git: bool = False, task: str = TASK_MODULE) -> Path:
    """A real run of the mini task on the counting responder in `root`, by a pytest process
    of its own; its run folder. With `git`, the project is a git checkout with an uncommitted
    change to a tracked file when the run starts."""
    root.mkdir(parents=True)
    (root / "counted.py").write_text(COUNTED)
    (root / "test_mini.py").write_text(task)
    (root / "data").mkdir()
    (root / "data" / "mini.jsonl").write_text(rows)
    if git:
        quiet = {"cwd": root, "check": True, "capture_output": True}
        subprocess.run(["git", "init", "-q"], **quiet)  # type: ignore[call-overload]
        subprocess.run(["git", "add", "."], **quiet)  # type: ignore[call-overload]
        ident = ["-c", "user.name=t", "-c", "user.email=t@example.com"]
        subprocess.run(["git", *ident, "commit", "-qm", "x"], **quiet)  # type: ignore[call-overload]
        (root / "counted.py").write_text(COUNTED + "\n# an uncommitted change\n")
    env = {**os.environ, "PYTHONPATH": f"{REPO_ROOT}{os.pathsep}{root}", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [
            sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider",
            "--model", ARM, "--llmeval-data-dir=data", "--llmeval-report", "out/report.json",
            "--llmeval-cache", "off",
        ],
        cwd=root, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert (root / "out" / "report.json").exists(), done.stdout + done.stderr
    assert_valid_run(root / "out")
    return root / "out"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real runs, made once: `clean` (12 rows, 3 answered wrongly), `errors` (12 rows, 1
    raising in the backend), `dirty` (clean's rows, from a checkout with changes) and
    `sampled` (clean's rows, 3 sampled candidates each, voted on)."""
    base = tmp_path_factory.mktemp("audit")
    return {
        "clean": _saved_run(base / "clean", mini_rows(N, wrong=3)),
        "errors": _saved_run(base / "errors", mini_rows(N, wrong=2, boom=1)),
        "dirty": _saved_run(base / "dirty", mini_rows(N, wrong=3), git=True),
        "sampled": _saved_run(base / "sampled", mini_rows(N, wrong=3), task=SAMPLED_TASK),
    }


Items = list[dict[str, Any]]


def craft(
    source: Path,
    target: Path,
    items: Callable[[Items], None] | None = None,
    report: Callable[[dict[str, Any]], None] | None = None,
) -> Path:
    """A copy of the run `source` in `target`, its records and report edited in place by
    `items` and `report`; checked still valid against the shipped schemas."""
    shutil.copytree(source, target)
    records = [json.loads(line) for line in (target / "items.jsonl").read_text().splitlines()]
    if items is not None:
        items(records)
        lines = "".join(json.dumps(record) + "\n" for record in records)
        (target / "items.jsonl").write_text(lines)
    if report is not None:
        data = json.loads((target / "report.json").read_text())
        report(data)
        (target / "report.json").write_text(json.dumps(data))
    valid(target)
    return target


def valid(folder: Path) -> None:
    """Check report.json and each items.jsonl line against the shipped JSON schemas (with
    jsonschema; unlike `assert_valid_run`, a crafted run's totals may disagree)."""
    report = json.loads((folder / "report.json").read_text())
    jsonschema.Draft202012Validator(shipped_schema("run-report")).validate(report)
    items = jsonschema.Draft202012Validator(shipped_schema("item-record"))
    for line in (folder / "items.jsonl").read_text().splitlines():
        items.validate(json.loads(line))


def audit_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    """`audit ARGS --format json`: the exit status and the parsed output."""
    status = main(["audit", *args, "--format", "json"])
    return status, json.loads(capsys.readouterr().out)


def first(records: Items, outcome: str) -> dict[str, Any]:
    return next(r for r in records if r["outcome"] == outcome)


def test_a_clean_real_run_has_no_finding(
    runs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    report = json.loads((runs["clean"] / "report.json").read_text())
    metrics = report["tasks"]["mini"]["models"][ARM]["metrics"]
    assert (metrics["n"], metrics["n_correct"], metrics["tokens_out"] > 0) == (N, 9, True)
    assert report["git"] is None  # a temporary folder, not a checkout
    assert main(["audit", str(runs["clean"])]) == 0
    assert capsys.readouterr().out == "no findings in 1 runs\n"


def test_a_clean_sampled_run_has_no_finding(
    runs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    records = [
        json.loads(line) for line in (runs["sampled"] / "items.jsonl").read_text().splitlines()
    ]
    assert {len(r["samples"]) for r in records} == {3}
    assert main(["audit", str(runs["sampled"])]) == 0
    assert capsys.readouterr().out == "no findings in 1 runs\n"


def test_a_sampled_item_whose_verdict_is_not_its_votes_is_flagged(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def outvoted(records: Items) -> None:
        # The majority's answer made wrong: the item stays correct, its votes now say not.
        votes = first(records, "pass")["votes"]
        votes.update(majority="999", majority_correct=False, correct=0)

    crafted = craft(runs["sampled"], tmp_path / "votes", outvoted)
    status, out = audit_json(capsys, str(crafted))
    assert status == 1
    (finding,) = out["findings"]
    assert (finding["kind"], finding["items"]) == ("inconsistent-item", ["mini/test/0003"])
    assert finding["what"].startswith(
        "1 items correct True but its votes (pass_by majority) say False"
    )


def _no_tokens(records: Items) -> None:
    first(records, "pass")["tokens_out"] = None


def _slow(records: Items) -> None:
    first(records, "fail")["latency_s"] = 30.0


def _fail_but_correct(records: Items) -> None:
    first(records, "pass")["outcome"] = "fail"


def _score_but_not_correct(records: Items) -> None:
    first(records, "fail")["score"] = 1.0


def _correct_without_score(records: Items) -> None:
    first(records, "pass")["score"] = None


def _accuracy(report: dict[str, Any]) -> None:
    report["tasks"]["mini"]["models"][ARM]["metrics"]["accuracy"] = 0.9


def _truncated(records: Items) -> None:
    records.pop()


def _dirty(report: dict[str, Any]) -> None:
    report["git"] = {"commit": "ab" * 20, "dirty": True}


@pytest.mark.parametrize(
    ("items", "report", "kinds", "what"),
    [
        (_no_tokens, None, ["missing-tokens"], "1 of 12 generated items have no tokens_out"),
        (_fail_but_correct, None, ["inconsistent-item"], "1 items outcome fail but correct True"),
        (
            _score_but_not_correct, None, ["inconsistent-item"],
            "1 items score >= pass_threshold 1 but correct False",
        ),
        # No score but correct: also what accuracy and n_errors in report.json no longer match.
        (
            _correct_without_score, None,
            ["inconsistent-item", "inconsistent-metrics", "inconsistent-metrics"],
            "1 items correct True but score None",
        ),
        (None, _accuracy, ["inconsistent-metrics"], "accuracy 0.9000 but 9/12 records correct"),
        # The last record (a right answer) gone: totals, n and accuracy no longer match.
        (
            _truncated, None, ["inconsistent-metrics"] * 3,
            "totals.items 12 but items.jsonl has 11 records",
        ),
        (None, _dirty, ["dirty-tree"], "uncommitted changes (commit abababababab)"),
    ],
    ids=["tokens", "outcome", "score", "score-none", "accuracy", "truncated", "dirty"],
)  # fmt: skip
def test_a_crafted_problem_is_flagged_with_its_kind(
    runs: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    items: Callable[[Items], None] | None,
    report: Callable[[dict[str, Any]], None] | None,
    kinds: list[str],
    what: str,
) -> None:
    crafted = craft(runs["clean"], tmp_path / "crafted", items, report)
    status, out = audit_json(capsys, str(crafted))
    assert status == 1
    assert sorted(f["kind"] for f in out["findings"]) == kinds
    assert any(what in f["what"] for f in out["findings"]), out["findings"]
    assert all(f["run"] == "crafted" for f in out["findings"])


def test_a_latency_outlier_is_flagged_above_the_tukey_fence(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    crafted = craft(runs["clean"], tmp_path / "slow", _slow)
    records = [json.loads(line) for line in (crafted / "items.jsonl").read_text().splitlines()]
    latencies = np.array([r["latency_s"] for r in records])
    q1, median, q3 = np.percentile(latencies, [25, 50, 75])
    fence = max(q3 + 3 * (q3 - q1), median + 1.0)
    slow_id = next(r["id"] for r in records if r["latency_s"] == 30.0)
    assert main(["audit", str(crafted)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        f"slow: [latency-outlier] mini/{ARM}: 1 of 12 item latencies above {fence:.2f} s "
        f"(Q3 + 3 x IQR; median {median:.2f} s): {slow_id} 30.00 s, they inflate latency_p95 "
        "and may be stalls, retries or a swapping model",
        "1 finding in 1 of 1 runs (latency-outlier: 1)",
    ]
    # A fence the outlier stays under: no finding.
    assert main(["audit", str(crafted), "--latency-min-s", "60"]) == 0


def test_an_error_rate_above_the_threshold_is_flagged(
    runs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    status, out = audit_json(capsys, str(runs["errors"]))
    assert status == 1
    (finding,) = out["findings"]
    assert finding["kind"] == "error-rate" and finding["task"] == "mini"
    # 1 of 12 items errored: 0.083 > 0.05, with the backend's message.
    assert finding["what"].startswith("error rate 0.083 (1/12) above 0.05; most common (1x): ")
    assert "backend exploded on purpose" in finding["what"]
    assert finding["items"] == ["mini/test/0002"]
    assert main(["audit", str(runs["errors"]), "--max-error-rate", "0.1"]) == 0


def test_a_run_made_from_a_dirty_checkout_is_flagged(
    runs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    report = json.loads((runs["dirty"] / "report.json").read_text())
    assert report["git"]["dirty"] is True
    status, out = audit_json(capsys, str(runs["dirty"]))
    assert status == 1
    assert [(f["kind"], f["task"]) for f in out["findings"]] == [("dirty-tree", "*")]
    assert report["git"]["commit"][:12] in out["findings"][0]["what"]
    status, out = audit_json(capsys, str(runs["dirty"]), "--skip", "dirty-tree")
    assert (status, out["findings"]) == (0, [])


def test_a_run_copied_twice_is_a_duplicate_and_other_runs_are_not(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copytree(runs["clean"], tmp_path / "a")
    shutil.copytree(runs["clean"], tmp_path / "b")
    assert main(["audit", str(tmp_path / "*"), str(runs["errors"])]) == 1
    lines = capsys.readouterr().out.splitlines()
    duplicates = [line for line in lines if "[duplicate-run]" in line]
    assert duplicates == [
        "b: [duplicate-run] *: same models, tasks, generation settings, data, limit and seed "
        "as a, compare, ensemble and plot would count this evaluation twice"
    ]
    # The errors run has other rows (its data hash differs): no duplicate of the clean one.
    assert lines[-1] == "2 findings in 2 of 3 runs (error-rate: 1, duplicate-run: 1)"
    # The same rows and settings from a dirty checkout are the same evaluation too.
    assert main(["audit", str(runs["clean"]), str(runs["dirty"]), "--skip", "dirty-tree"]) == 1
    # Two runs in folders named `out`: each named with its parent.
    assert capsys.readouterr().out.startswith(
        "dirty/out: [duplicate-run] *: same models, tasks, generation settings, data, limit "
        "and seed as clean/out, "
    )


def test_markdown_output_is_a_table_of_the_findings(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    crafted = craft(runs["clean"], tmp_path / "md", _no_tokens, _dirty)
    assert main(["audit", str(crafted), "--format", "md"]) == 1
    lines = capsys.readouterr().out.splitlines()
    header = [cell.strip() for cell in lines[0].split("|")[1:-1]]
    assert header == ["run", "kind", "task/arm", "what", "why it matters"]
    assert [line.split("|")[2].strip() for line in lines[2:4]] == ["dirty-tree", "missing-tokens"]
    assert lines[-1] == "2 findings in 1 of 1 runs (dirty-tree: 1, missing-tokens: 1)"


def test_bad_thresholds_and_missing_runs_are_one_line_and_exit_2(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["audit", str(runs["clean"]), "--max-error-rate", "5"]) == 2
    err = capsys.readouterr().err
    assert err == "pytest-llmeval audit: --max-error-rate 5: give a share between 0 and 1\n"
    assert main(["audit", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pytest-llmeval audit: ") and "no such file" in err
    assert err.count("\n") == 1


def test_audit_runs_without_torch(runs: dict[str, Path]) -> None:
    code = (
        "import sys; from pytest_llmeval.cli import main; "
        f"status = main(['audit', {str(runs['dirty'])!r}]); "
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules; "
        "sys.exit(status)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    # Exit 1: the dirty tree is flagged; an assertion or import error would be another status.
    assert done.returncode == 1, done.stderr
    assert "[dirty-tree]" in done.stdout
