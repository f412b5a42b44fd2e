"""Workflow 4 end to end: the example hooked-model server (examples/hooks_server/) on
127.0.0.1 with the embedded model, its hooks API, and a baseline vs patched A/B over it with
and without xdist (the patch applied while, and only while, the patched arm generates)."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest
import requests
from served_model import embedded_model_dir, free_port, running_server

from conftest import GSM8K_EVAL, REPO_ROOT, assert_valid_run, shared_data_dir

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

EXAMPLE = REPO_ROOT / "examples" / "hooks_server"
PATCH = json.loads((EXAMPLE / "patch.json").read_text())
[HOOKED] = [hook["module"] for hook in PATCH["hooks"]]
BASELINE = "callable:examples.hooks_server.client:baseline"
PROMPT = (
    "Solve the following math problem step by step. "
    "At the end, write the final answer on its own line in the form '#### <number>'.\n\n"
    "Question: {question}"
)


@pytest.fixture(scope="session")
def hooks_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The example server with the embedded model on a free loopback port; its base URL."""
    port = free_port()
    log = tmp_path_factory.mktemp("hooks_server") / "server.log"
    command = [sys.executable, "-m", "examples.hooks_server.server", "--model",
               embedded_model_dir(), "--port", str(port), "--threads", "1"]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO_ROOT)}
    url = f"http://127.0.0.1:{port}"
    with running_server("hooks server", command, f"{url}/api/hooks", log, env, cwd=REPO_ROOT):
        yield url


def gsm8k_questions(n: int) -> list[str]:
    lines = (shared_data_dir() / "gsm8k" / "test.jsonl").read_text().splitlines()[:n]
    return [json.loads(line)["question"] for line in lines]


def generate(url: str, question: str, use_hooks: bool) -> dict[str, Any]:
    body = {"messages": [{"role": "user", "content": PROMPT.format(question=question)}],
            "max_new_tokens": 24, "use_hooks": use_hooks}  # fmt: skip
    reply = requests.post(f"{url}/api/generate", json=body, timeout=120)
    assert reply.ok, reply.text
    answer: dict[str, Any] = reply.json()
    return answer


def log_after(url: str, seq: int) -> list[dict[str, Any]]:
    entries = requests.get(f"{url}/api/requests", timeout=10).json()["requests"]
    return [entry for entry in entries if entry["seq"] > seq]


def last_seq(url: str) -> int:
    entries = log_after(url, 0)
    return entries[-1]["seq"] if entries else 0


def test_hooks_api_and_a_hook_that_changes_the_answers(hooks_server: str) -> None:
    url = hooks_server
    assert requests.get(f"{url}/api/hooks", timeout=10).json() == {"hooks": []}
    bad = requests.post(f"{url}/api/hooks", json={"hooks": [{"module": "nope", "scale": 0}]})
    assert bad.status_code == 422 and "no module named 'nope'" in bad.text
    questions = gsm8k_questions(3)
    plain = [generate(url, q, use_hooks=False)["text"] for q in questions]

    installed = requests.post(f"{url}/api/hooks", json=PATCH, timeout=10).json()
    assert installed == {"hooks": PATCH["hooks"]}
    # Posting again replaces, never stacks: a retried setup installs the patch once.
    assert requests.post(f"{url}/api/hooks", json=PATCH, timeout=10).json() == installed
    assert requests.get(f"{url}/api/hooks", timeout=10).json() == installed
    hooked = [generate(url, q, use_hooks=True) for q in questions]
    unhooked = generate(url, questions[0], use_hooks=False)
    assert requests.delete(f"{url}/api/hooks", timeout=10).json() == {"hooks": []}
    assert requests.get(f"{url}/api/hooks", timeout=10).json() == {"hooks": []}

    assert all(answer["hooks_applied"] == [HOOKED] for answer in hooked)
    assert sum(a["text"] != b for a, b in zip(hooked, plain, strict=True)) == len(questions)
    # Installed but not asked for: the plain answer, no hook ran.
    assert unhooked["text"] == plain[0] and unhooked["hooks_applied"] == []
    assert generate(url, questions[0], use_hooks=True)["hooks_applied"] == []  # none left


# ---- the A/B through pytest_llmeval ------------------------------------------------------

ALIAS = textwrap.dedent(
    """
    [tool.llmeval.models.patched]
    backend = "callable"
    model = "examples.hooks_server.client:patched"
    setup = "examples.hooks_server.client:install"
    teardown = "examples.hooks_server.client:remove"
    patch = "patch.json"

    # A second patch on the same server: under -n 2 the two patched arms compete for it.
    [tool.llmeval.models.patched2]
    backend = "callable"
    model = "examples.hooks_server.client:patched"
    setup = "examples.hooks_server.client:install"
    teardown = "examples.hooks_server.client:remove"
    patch = "patch2.json"
    """
)
PATCH2 = {"hooks": [{"module": "model.layers.15.mlp", "scale": 0.5}]}
ITEMS = 4
STABLE = ["n", "wins", "losses", "ties", "delta", "delta_ci95", "p_value", "won", "lost",
          "baseline_accuracy", "candidate_accuracy", "baseline_failures",
          "candidate_failures"]  # fmt: skip


@pytest.fixture
def abproject(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, hooks_server: str
) -> pytest.Pytester:

    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT), prepend=os.pathsep)
    monkeypatch.setenv("HOOKS_SERVER_URL", hooks_server)
    monkeypatch.setenv("LLMEVAL_ARM_LOCK_DIR", str(pytester.path / "locks"))
    pytester.makepyfile(test_gsm8k=GSM8K_EVAL.replace("max_new_tokens=256", "max_new_tokens=24"))
    pytester.makefile(".toml", pyproject=ALIAS)
    (pytester.path / "patch.json").write_bytes((EXAMPLE / "patch.json").read_bytes())
    (pytester.path / "patch2.json").write_text(json.dumps(PATCH2))
    return pytester


def run_ab(project: pytest.Pytester, url: str, folder: str, *args: str) -> dict[str, Any]:
    """One A/B run; its report, with the server's log of the run's generations."""
    seq = last_seq(url)
    result = project.runpytest_subprocess(
        "--model", BASELINE, "--model", "patched", "--model", "patched2", "--limit", str(ITEMS),
        f"--llmeval-data-dir={shared_data_dir()}", "--llmeval-report", f"{folder}/report.json",
        f"--llmeval-cache-dir={folder}/cache", "-p", "no:randomly", *args,
    )  # fmt: skip
    assert "Arms compared with the baseline arm" in result.stdout.str(), result.stdout.str()
    report = assert_valid_run(project.path / folder)
    report["server_log"] = log_after(url, seq)
    return report


def assert_not_interleaved(report: dict[str, Any]) -> None:
    """Every generation of the run: the baseline's plain, each patched arm's with exactly
    one whole patch applied, ITEMS with each patch (a patch swapped mid-batch by the other
    arm's setup or teardown would show as a request with the wrong hooks or none)."""
    log = report["server_log"]
    assert len(log) == 3 * ITEMS
    plain = [entry for entry in log if not entry["use_hooks"]]
    assert len(plain) == ITEMS and all(entry["hooks_applied"] == [] for entry in plain), plain
    applied = sorted(tuple(entry["hooks_applied"]) for entry in log if entry["use_hooks"])
    assert applied == [(HOOKED,)] * ITEMS + [("model.layers.15.mlp",)] * ITEMS, applied
    # The same prompts on every arm.
    hashes = sorted(e["prompt_sha256"] for e in plain)
    assert sorted(e["prompt_sha256"] for e in log) == sorted(hashes * 3)


def test_baseline_vs_patched_over_the_server_with_and_without_xdist(
    abproject: pytest.Pytester, hooks_server: str
) -> None:
    serial = run_ab(abproject, hooks_server, "serial", "-n", "0")
    parallel = run_ab(abproject, hooks_server, "parallel", "-n", "2")
    for report in (serial, parallel):
        assert_not_interleaved(report)
        assert requests.get(f"{hooks_server}/api/hooks", timeout=10).json() == {"hooks": []}
        sha = hashlib.sha256((EXAMPLE / "patch.json").read_bytes()).hexdigest()
        states = [m["arm_state"] for m in report["model_loads"] if m["model"] == "patched"]
        assert states and {s["patch_sha256"] for s in states} == {sha}
        assert sum(s["applied_batches"] for s in states) >= 1

    comparison, second = serial["comparisons"]
    assert (comparison["baseline"], comparison["candidate"]) == (BASELINE, "patched")
    assert second["candidate"] == "patched2" and comparison["n"] == second["n"] == ITEMS
    assert [{k: c[k] for k in STABLE} for c in parallel["comparisons"]] == [
        {k: c[k] for k in STABLE} for c in serial["comparisons"]
    ]

    table = pd.read_parquet(abproject.path / "serial" / "comparison.parquet")
    changed = table[table.baseline_response != table.candidate_response]
    assert set(changed.candidate_arm) == {"patched", "patched2"}  # both patches change answers
    other = pd.read_parquet(abproject.path / "parallel" / "comparison.parquet")
    merged = table.merge(other, on="id", suffixes=("", "_n2"))
    merged = merged[merged.candidate_arm == merged.candidate_arm_n2]
    assert len(merged) == 2 * ITEMS  # each patched arm answered the same under -n 2
    assert (merged.candidate_response == merged.candidate_response_n2).all()
    assert (merged.baseline_response == merged.baseline_response_n2).all()
    for each in serial["comparisons"]:
        print("hooked-server A/B:", json.dumps({k: each[k] for k in STABLE}))
    print(table[["id", "candidate_arm", "flip", "baseline_response", "candidate_response"]])
