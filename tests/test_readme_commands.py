"""Every command README.md shows runs here, with a small `--limit`, and exits as documented.

The commands are read from the README itself: a command added there without an entry below
fails `test_every_readme_command_is_covered`. They run in the repository on the real shipped
evals and the embedded model, with three substitutions this machine needs: `--limit` becomes
LIMIT (added where absent), `--model qwen7b` becomes the embedded model (no 7B model or GPU
here; the command is otherwise as written), and the `hosted` API model of the agreement example
becomes a real `transformers serve` of the embedded model on 127.0.0.1. Reports and the
generation cache go to a temporary folder shared by the commands (so later commands reuse the
first one's generations, as a user's reruns do).
"""

from __future__ import annotations

import csv
import json
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from served_model import embedded_model_dir

from conftest import REPO_ROOT

README = REPO_ROOT / "README.md"
LIMIT = "2"
#: Every real-model command here takes well under a minute on a warm cache; the bound stops a
#: hung run from hanging the suite.
COMMAND_TIMEOUT_S = 900


@dataclass(frozen=True)
class Documented:
    """A README command, how it runs here, and the exit status it must give."""

    exit_status: int
    why: str
    needs_server: bool = False


# Keyed by the command exactly as the README shows it.
COMMANDS: dict[str, Documented] = {
    "bash scripts/setup.sh && .venv/bin/pytest evals --limit 40": Documented(
        0, "the shipped gates are floors the embedded model clears"
    ),
    "pytest evals -k gsm8k --limit 100": Documented(0, "gsm8k's parse-rate floor holds"),
    "pytest evals --lf": Documented(
        1, "reruns the earlier commands' misses only, so the accuracy gates judge misses"
    ),
    'pytest evals --model qwen7b --gate "gsm8k:accuracy>=0.8" --junitxml out.xml': Documented(
        1, "the embedded model stands in for qwen7b and scores far below 0.8"
    ),
    "pytest evals --collect-only -q": Documented(0, "lists the item ids, runs nothing"),
    'pytest evals --llmeval-invariance-check 20 --gate "invariance_changed<=0"': Documented(
        0, "fp32 on the CPU: generating alone changes no greedy text"
    ),
    "pytest evals --model qwen7b -n 2": Documented(0, "two xdist workers on the CPU"),
    "pytest evals -k gsm8k --limit 100 --llmeval-samples 5 --llmeval-temperature 0.7": Documented(
        0, "gsm8k's parse-rate floor holds on the candidates the votes follow"
    ),
    (
        "pytest evals -k toxicity --limit 100 --model qwen7b --compare-backend hosted --gate "
        '"toxicity:agreement>=0.95"'
    ): Documented(
        0, "the same weights locally and behind transformers serve agree", needs_server=True
    ),
    "pytest evals -k rag --model qwen7b --llmeval-smoke": Documented(
        0, "the RAG eval's parse-rate floor holds; the smoke run passes on the embedded model"
    ),
}

# The test command CI itself runs (.ci/run): not rerun from inside the suite.
CI_COMMAND = (
    "bash scripts/setup.sh --dev && .venv/bin/ruff check . && .venv/bin/mypy && .venv/bin/pytest"
)


def readme_commands() -> list[str]:
    """The shell lines of the README's bash blocks and every inline `pytest evals ...`."""
    text = README.read_text(encoding="utf-8")
    found = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        found += [line.strip() for line in block.splitlines() if line.strip()]
    found += re.findall(r"`(pytest evals[^`]*)`", text)
    return list(dict.fromkeys(found))


def test_every_readme_command_is_covered() -> None:
    assert set(readme_commands()) == {*COMMANDS, CI_COMMAND}


def test_ci_runs_the_readme_test_command() -> None:
    ci = (REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8")
    steps = [step.strip() for step in CI_COMMAND.split("&&")]
    lines = [line.strip() for line in ci.splitlines()]
    assert all(step in lines for step in steps), steps


def as_run_here(command: str, server_url: str | None) -> list[str]:
    """The pytest arguments of `command` with this machine's substitutions."""
    words = shlex.split(command.split("&&")[-1])
    words = words[words.index("evals") :]
    args: list[str] = []
    skip = False
    for index, word in enumerate(words):
        if skip:
            skip = False
            continue
        following = words[index + 1] if index + 1 < len(words) else ""
        if word == "--limit":
            args += ["--limit", LIMIT]
            skip = True
        elif word == "--model" and following == "qwen7b":
            args += ["--model", "smollm2-135m"]
            skip = True
        elif word == "--compare-backend" and following == "hosted":
            assert server_url is not None
            args += ["--compare-backend", f"openai:{embedded_model_dir()}@{server_url}"]
            skip = True
        else:
            args.append(word)
    if "--limit" not in args and "--collect-only" not in args:
        args += ["--limit", LIMIT]
    return args


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("readme")


def run_command(args: list[str], workdir: Path, name: str) -> subprocess.CompletedProcess[str]:
    out = workdir / name
    command = [
        sys.executable, "-m", "pytest", *args,
        f"--llmeval-report={out}/report.json",
        f"--llmeval-cache-dir={workdir}/cache",
        # --lf reads the previous command's failures from here, not the checkout's own cache.
        "-o", f"cache_dir={workdir}/pytest-cache",
        "-W", "ignore::pytest.PytestAssertRewriteWarning",
    ]  # fmt: skip
    # `out.xml` and friends land in the work folder, not the checkout.
    command = [f"{workdir}/{a}" if a == "out.xml" else a for a in command]
    return subprocess.run(
        command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S
    )


def _metrics(workdir: Path, name: str) -> dict[str, Any]:
    report = json.loads((workdir / name / "report.json").read_text())
    return {
        task: {model: result["metrics"] for model, result in info["models"].items()}
        for task, info in report["tasks"].items()
    }


# In README order: --lf reruns what the command before it missed.
@pytest.mark.parametrize(
    "command", [c for c in COMMANDS if not COMMANDS[c].needs_server], ids=lambda c: c[:60]
)
def test_readme_command_exits_as_documented(command: str, workdir: Path) -> None:
    documented = COMMANDS[command]
    name = re.sub(r"\W+", "-", command)[:80]
    result = run_command(as_run_here(command, None), workdir, name)
    output = result.stdout[-4000:] + result.stderr[-2000:]
    assert result.returncode == documented.exit_status, f"{documented.why}\n{output}"
    if "--collect-only" in command:
        assert "gsm8k/test/0000" in result.stdout and "toxicity/test/" in result.stdout
        return
    metrics = _metrics(workdir, name)
    if "-k gsm8k" in command:
        assert set(metrics) == {"gsm8k"}
    if "-n 2" in command:
        items = (workdir / name / "items.jsonl").read_text().splitlines()
        assert {json.loads(line)["worker"] for line in items} == {"gw0", "gw1"}
    if "--llmeval-samples" in command:
        gsm8k = metrics["gsm8k"]["smollm2-135m"]
        assert gsm8k["samples_n"] == 5 and set(gsm8k["pass_at_k"]) == {"1", "2", "3", "4", "5"}
        assert (workdir / name / "samples.parquet").exists()
    if "--llmeval-smoke" in command:
        rag = metrics["rag"]["smollm2-135m"]
        assert set(rag["components"]) == {"value_accuracy", "ref_overlap", "na_recall"}
        (load,) = json.loads((workdir / name / "report.json").read_text())["model_loads"]
        assert load["smoke_items"] >= 1 and load["smoke_failure"] is None
        with (workdir / name / "models.csv").open(newline="") as handle:
            (row,) = list(csv.DictReader(handle))
        assert row["model"] == "smollm2-135m" and "rag wattbot" in row
        wattbot = rag["composites"]["wattbot"]  # None when the --limit draw has no blank truth
        if wattbot is None:
            assert row["rag wattbot"] == ""
        else:
            assert float(row["rag wattbot"]) == pytest.approx(wattbot, abs=1e-6)
    if "--junitxml" in command:
        assert (workdir / "out.xml").read_text().count('name="accuracy[&gt;=0.8') == 1


def test_readme_agreement_command(workdir: Path, embedded_server_url: str) -> None:
    (command,) = [c for c in COMMANDS if COMMANDS[c].needs_server]
    result = run_command(as_run_here(command, embedded_server_url), workdir, "agreement")
    output = result.stdout[-4000:] + result.stderr[-2000:]
    assert result.returncode == COMMANDS[command].exit_status, output
    toxicity = _metrics(workdir, "agreement")["toxicity"]["smollm2-135m"]
    assert toxicity["n"] == int(LIMIT) and toxicity["compared"] == int(LIMIT), toxicity
    assert toxicity["agreement"] >= 0.95 and toxicity["reference_errors"] == 0
    # Both sides answered in the policy's format; the reference was generated by the server in
    # this run, so it has its own speed figures.
    assert toxicity["both_parse_rate"] == 1.0 and toxicity["kappa_n"] == int(LIMIT)
    assert toxicity["reference_generated"] == int(LIMIT)
    assert toxicity["reference_latency_p50"] is not None
