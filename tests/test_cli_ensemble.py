"""`pytest-llmeval ensemble` (issue 15): real short runs of the embedded model and the callable
backend on the same GSM8K items, ensembled; every verdict recomputed by hand from the
members' items.jsonl, the new folder validated against the shipped schemas, read back and
regated."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from conftest import REPO_ROOT, assert_valid_run, shared_data_dir
from pytest_llmeval.backends.weights import CACHE_ENV, model_cache_dir
from pytest_llmeval.cli import main
from pytest_llmeval.cli.runs import load_runs
from pytest_llmeval.report.schema import load_items, load_report

TASK = textwrap.dedent(
    """
    from pytest_llmeval import ChatPrompt, DataSource, Generation, Task, scoring

    PLAIN = ChatPrompt(user="Answer with only the final number, no words.\\n\\nQuestion: {question}")
    SHORT = ChatPrompt(user="Question: {question}\\nThe answer is a number. Answer:")

    gsm8k = Task(
        name="gsm8k",
        data=DataSource(files="gsm8k/test.jsonl"),
        %s,
        target=lambda row: scoring.gsm8k_target(row["answer"]),
        scorer=scoring.numeric,
        generation=Generation(max_new_tokens=%d),
        gates=["parse_rate >= 0"],
    )
    """
)
# The callable member: right on questions of even length, "7" on the others.
ANSWERS = textwrap.dedent(
    """
    import json, os

    ROWS = [json.loads(l) for l in open(os.path.join(os.environ["LLMEVAL_DATA_DIR"],
                                                      "gsm8k", "test.jsonl"))]
    TRUTH = {r["question"]: r["answer"].split("####")[-1].strip() for r in ROWS}

    def reply(messages, settings):
        question = messages[-1]["content"].split("Question: ", 1)[1]
        return f"#### {TRUTH[question]}" if len(question) % 2 == 0 else "#### 7"
    """
)
# name -> (prompt line of the task, max_new_tokens, pytest options)
RUNS = {
    "greedy8": ("prompt=PLAIN", 8, ["--model", "smollm2-135m"]),
    "greedy24": ("prompt=PLAIN", 24, ["--model", "smollm2-135m"]),
    "callable": ("prompt=PLAIN", 8, ["--model", "callable:answers:reply"]),
    "sampled": (
        'variants={"plain": PLAIN, "short": SHORT}', 8,
        ["--model", "smollm2-135m", "--llmeval-samples", "2", "--llmeval-temperature", "0.8"],
    ),
}  # fmt: skip


@pytest.fixture(scope="session")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The member runs, made once per session (about two minutes on a shared CPU): 4 GSM8K
    items each, in their own subprocess (torch stays out of this process)."""
    data_dir = shared_data_dir()
    if not (data_dir / "gsm8k" / "test.jsonl").exists():
        pytest.skip(f"no offline GSM8K copy under {data_dir}")
    root = tmp_path_factory.mktemp("ensemble_members")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
        "HF_HUB_OFFLINE": "1",
        CACHE_ENV: str(model_cache_dir()),
        "LLMEVAL_DATA_DIR": str(data_dir),
    }
    folders = {}
    for name, (prompt, max_new_tokens, options) in RUNS.items():
        project = root / name
        project.mkdir()
        (project / "test_short.py").write_text(TASK % (prompt, max_new_tokens))
        (project / "answers.py").write_text(ANSWERS)
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "test_short.py", *options, "--limit", "4",
             "--llmeval-data-dir", str(data_dir), "--llmeval-report", "out/report.json",
             "--llmeval-cache", "off", "-p", "no:randomly", "-p", "no:cacheprovider", "-q"],
            cwd=project, env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert (project / "out" / "report.json").exists(), done.stdout[-3000:] + done.stderr
        folders[name] = project / "out"
    return folders


def _items(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (folder / "items.jsonl").read_text().splitlines()]


def _voters(folders: list[Path]) -> dict[str, list[dict[str, Any]]]:
    """Per item id, its records over the folders in order (each folder's arms in file order)."""
    voters: dict[str, list[dict[str, Any]]] = {}
    for folder in folders:
        records = _items(folder)
        for arm in dict.fromkeys(r["arm"] for r in records):
            for record in records:
                if record["arm"] == arm:
                    voters.setdefault(record["id"], []).append(record)
    return voters


def _answer(record: dict[str, Any]) -> str | None:
    if record["score"] is None or record["extracted"] in (None, "[invalid]"):
        return None
    return str(record["extracted"])


def _unanswered(group: list[dict[str, Any]]) -> dict[str, Any]:
    return next((r for r in group if r["score"] is not None), group[0])


def _by_hand_majority(group: list[dict[str, Any]]) -> dict[str, Any]:
    answers = [_answer(r) for r in group]
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return _unanswered(group)
    top = max(counts.values())
    # The tie rule: of the answers with the most votes, the one voted first.
    winner = next(a for a in answers if a is not None and counts[a] == top)
    return group[answers.index(winner)]


def _ensemble(tmp_path: Path, members: list[Path], *args: str) -> tuple[Path, dict[str, Any]]:
    out = tmp_path / "ens"
    status = main(["ensemble", *map(str, members), "--name", "ens", "--out", str(out), *args])
    assert status == 0
    return out, assert_valid_run(out)


def test_majority_of_three_real_runs_recomputed_by_hand(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    members = [runs["greedy8"], runs["greedy24"], runs["callable"]]
    out, report = _ensemble(tmp_path, members, "--strategy", "majority")

    voters = _voters(members)
    assert len(voters) == 4 and all(len(group) == 3 for group in voters.values())
    expected = {item: _by_hand_majority(group) for item, group in voters.items()}
    made = {r["id"]: r for r in _items(out)}
    assert set(made) == set(expected)
    for item, chosen in expected.items():
        mine = made[item]
        assert (mine["extracted"], mine["correct"], mine["score"], mine["response"]) == (
            chosen["extracted"], chosen["correct"], chosen["score"], chosen["response"]
        )  # fmt: skip
        assert (mine["model"], mine["arm"], mine["latency_s"], mine["cached"]) == (
            "ens", "ens", None, None
        )  # fmt: skip
        assert mine["nodeid"] == chosen["nodeid"] + "[ens]"  # a single-arm member: no bracket
    right = sum(1 for r in expected.values() if r["correct"])
    metrics = report["tasks"]["gsm8k"]["models"]["ens"]["metrics"]
    assert (metrics["n"], metrics["n_correct"], metrics["accuracy"]) == (4, right, right / 4)
    # The Wilson interval of right/4, from statsmodels.
    from statsmodels.stats.proportion import proportion_confint

    assert metrics["accuracy_ci95"] == pytest.approx(
        list(proportion_confint(right, 4, method="wilson"))
    )
    assert metrics["speed_reason"] == "no items generated"
    # Provenance: the strategy and every member, in order; one model, backend "ensemble".
    ensemble = report["metadata"]["ensemble"]
    assert ensemble["strategy"] == "majority"
    assert [m["run"] for m in ensemble["members"]] == [str(m) for m in members]
    assert [m["run_id"] for m in ensemble["members"]] == [
        json.loads((m / "report.json").read_text())["run_id"] for m in members
    ]
    assert ensemble["members"][2]["models"] == ["callable:answers:reply"]
    (model,) = report["settings"]["models"]
    assert (model["name"], model["backend"]) == ("ens", "ensemble")
    assert report["tasks"]["gsm8k"]["declaration"]["generation"]["max_new_tokens"] == 8
    assert [g["gate"] for g in report["gates"]] == ["parse_rate>=0"]
    # Typed read-back and the saved-run commands accept it.
    assert load_report(out / "report.json").tasks["gsm8k"].models["ens"].metrics.n == 4
    assert len(load_items(out / "items.jsonl")) == 4
    (saved,) = load_runs([str(out)])
    assert saved.report.totals.passed == right
    assert main(["regate", str(out)]) == 0
    assert main(["regate", str(out), "--gate", f"accuracy>={(right + 1) / 4}"]) == 1
    assert main(["list", str(out)]) == 0


def test_first_non_blank_takes_the_earliest_parsed_answer(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    members = [runs["greedy8"], runs["callable"], runs["greedy24"]]
    out, report = _ensemble(tmp_path, members, "--strategy", "first-non-blank")
    made = {r["id"]: r for r in _items(out)}
    right = 0
    for item, group in _voters(members).items():
        chosen = next((r for r in group if _answer(r) is not None), _unanswered(group))
        assert (made[item]["extracted"], made[item]["correct"]) == (
            chosen["extracted"], chosen["correct"]
        )  # fmt: skip
        right += bool(chosen["correct"])
    assert report["tasks"]["gsm8k"]["models"]["ens"]["metrics"]["accuracy"] == right / 4
    # The callable always answers: no item is left without an answer.
    assert all(_answer(r) is not None for r in made.values())


def test_confidence_is_refused_without_confidences(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ens"
    members = [str(runs["greedy8"]), str(runs["callable"])]
    status = main(
        ["ensemble", *members, "--strategy", "confidence", "--name", "e", "--out", str(out)]
    )
    assert status == 2 and not out.exists()
    (line,) = capsys.readouterr().err.splitlines()
    assert "no record carries a confidence" in line
    assert "use --strategy majority or first-non-blank" in line


def test_confidence_picks_the_most_confident_arm_of_a_sampled_run(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    out, report = _ensemble(tmp_path, [runs["sampled"]], "--strategy", "confidence")
    made = {r["id"]: r for r in _items(out)}
    fallbacks = 0
    for item, group in _voters([runs["sampled"]]).items():
        assert [r["arm"] for r in group] == ["plain", "short"]
        # A record's confidence: the mean log-prob of the candidate whose text it kept.
        confident = []
        for i, record in enumerate(group):
            kept = [s for s in record["samples"] if s["response"] == record["response"]]
            if _answer(record) is not None and kept[0]["mean_logprob"] is not None:
                confident.append((kept[0]["mean_logprob"], -i))
        if confident:
            chosen = group[-max(confident)[1]]
        else:
            chosen = next((r for r in group if _answer(r) is not None), _unanswered(group))
            fallbacks += any(_answer(r) is not None for r in group)
        assert (made[item]["response"], made[item]["correct"]) == (
            chosen["response"], chosen["correct"]
        )  # fmt: skip
        assert made[item]["samples"] is None and made[item]["votes"] is None
    notes = report["metadata"]["ensemble"]["notes"]
    assert ("confidence_fallback" in notes) == (fallbacks > 0)
    assert report["metadata"]["ensemble"]["members"][0]["arms"] == ["plain", "short"]
    # The members' candidates are not the ensemble's: no best-of-n figures.
    assert report["tasks"]["gsm8k"]["models"]["ens"]["metrics"]["samples_n"] is None


def test_out_folder_rules_and_partial_members(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    members = [str(runs["greedy8"]), str(runs["callable"])]
    out = tmp_path / "ens"
    assert main(["ensemble", *members, "--name", "e", "--out", str(out)]) == 0
    assert main(["ensemble", *members, "--name", "e", "--out", str(out)]) == 2
    assert "folder not empty; give another --out, or --force" in capsys.readouterr().err
    assert main(["ensemble", *members, "--name", "e", "--out", str(out), "--force"]) == 0
    assert main(["ensemble", *members, "--name", "e", "--out", members[0]]) == 2
    assert "is one of the member runs" in capsys.readouterr().err
    assert main(["ensemble", *members, "--name", "a b", "--out", str(tmp_path / "x")]) == 2
    assert "--name 'a b': use letters" in capsys.readouterr().err
    assert main(["ensemble", members[0], "--name", "e", "--out", str(tmp_path / "y")]) == 2
    assert "1 voter(s); an ensemble needs two runs or more" in capsys.readouterr().err
    # A member that lacks an item: the others vote on it, and the command says so.
    short = tmp_path / "short"
    shutil.copytree(members[1], short)
    lines = (short / "items.jsonl").read_text().splitlines()
    (short / "items.jsonl").write_text("\n".join(lines[1:]) + "\n")
    capsys.readouterr()
    assert (
        main(["ensemble", members[0], str(short), "--name", "e", "--out", str(tmp_path / "p")]) == 0
    )
    assert "1 of 4 items were not run by every voter" in capsys.readouterr().out
    report = json.loads((tmp_path / "p" / "report.json").read_text())
    assert report["metadata"]["ensemble"]["notes"]["partial_items"].startswith("1 of 4")


def test_the_command_imports_no_torch(runs: dict[str, Path], tmp_path: Path) -> None:
    members = [str(runs["greedy8"]), str(runs["callable"])]
    code = (
        "import sys; from pytest_llmeval.cli import main; "
        f"assert main(['ensemble', *{members!r}, '--name', 'e', '--out', {str(tmp_path / 'o')!r}]) == 0; "
        "assert 'torch' not in sys.modules and 'pytest' not in sys.modules, 'imported'"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "o" / "report.json").exists()
