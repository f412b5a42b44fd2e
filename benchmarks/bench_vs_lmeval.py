"""pytest_llmeval vs lm-evaluation-harness end to end on the same GSM8K items (CPU, embedded model).

Both tools run as their own process, one after the other, A B A B: `pytest` on a task over the
first N GSM8K test rows with the shipped prompt, cache off; and `lm-eval run` (HF backend) on a
task written from the same rows and prompt: the same converted model directory, its chat
template (`--apply_chat_template`), greedy, the same batch size and max new tokens. Wall time
covers everything each command does (start-up, imports, model load, generation, scoring,
reports). The script prints the project/lm-eval items/s ratio of each pair and of the sums,
whether the N generations are identical, the padding share of our run, and the load average
next to each figure (the machine may be shared: then the figures are provisional).

lm-eval needs its own environment (its pins differ from the project's), for example:

    python -m venv /tmp/lmeval-venv
    /tmp/lmeval-venv/bin/pip install torch==2.13.0 "lm_eval[hf]==0.4.13" transformers==5.23.0
    python benchmarks/bench_vs_lmeval.py --lm-eval /tmp/lmeval-venv/bin/lm-eval \
        --items 64 --batch-size 8 --max-new-tokens 128 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from common import GSM8K_TEST, REPO, _shipped_prompt, write_gsm8k_task

from pytest_llmeval.backends.weights import embedded_checkpoint

TASK = "llmeval_bench_gsm8k"


def write_lmeval_task(directory: Path, max_new_tokens: int) -> Path:
    """An lm-eval task over the local GSM8K test file with our prompt, greedy, no stop string
    but the end-of-sequence token (lm-eval always adds it), as our task generates."""
    # lm-eval renders doc_to_text with Jinja: the prompt's {question} becomes {{question}}.
    prompt = _shipped_prompt().replace("{question}", "{{question}}")
    folder = directory / "lmeval_tasks"
    folder.mkdir()
    config = {
        "task": TASK,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(GSM8K_TEST)}},
        "test_split": "test",
        "output_type": "generate_until",
        "doc_to_text": prompt,
        "doc_to_target": "{{answer.split('####')[-1].strip()}}",
        "target_delimiter": "",
        "generation_kwargs": {"until": [], "do_sample": False, "max_gen_toks": max_new_tokens},
        "metric_list": [{"metric": "exact_match"}],
    }
    # JSON is YAML: no yaml package needed here.
    (folder / f"{TASK}.yaml").write_text(json.dumps(config, indent=1))
    return folder


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def run_project(directory: Path, items: int, batch_size: int) -> tuple[float, dict[str, str], dict]:
    out = directory / "project-out"
    command = [
        sys.executable, "-m", "pytest", str(directory), "-q", "-p", "no:cacheprovider",
        "-p", "no:randomly", "--rootdir", str(directory), "--llmeval-cache", "off",
        "--llmeval-batch-size", str(batch_size), "--llmeval-report", str(out / "report.json"),
    ]  # fmt: skip
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    started = time.perf_counter()
    done = subprocess.run(command, cwd=directory, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode not in (0, 1):
        raise SystemExit(
            f"pytest failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    records = [json.loads(line) for line in (out / "items.jsonl").read_text().splitlines()]
    texts = {r["id"].rsplit("/", 1)[1]: r["response"] for r in records}
    report = json.loads((out / "report.json").read_text())
    metrics = report["tasks"]["bench"]["models"]["smollm2-135m"]["metrics"]
    assert len(texts) == items, f"{len(texts)} records for {items} items"
    return wall, texts, metrics


def run_lmeval(
    lm_eval: str, directory: Path, tasks: Path, items: int, batch_size: int
) -> tuple[float, dict[str, str]]:
    out = directory / "lmeval-out"
    command = [
        lm_eval, "run", "--model", "hf",
        "--model_args", f"pretrained={embedded_checkpoint()},dtype=float32",
        "--device", "cpu", "--tasks", TASK, "--include_path", str(tasks),
        "--apply_chat_template", "--batch_size", str(batch_size), "--limit", str(items),
        "--log_samples", "--output_path", str(out),
    ]  # fmt: skip
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    env.pop("PYTHONPATH", None)  # its own environment, not the project's
    started = time.perf_counter()
    done = subprocess.run(command, cwd=directory, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"lm-eval failed ({done.returncode}):\n{done.stderr[-3000:]}")
    (samples,) = sorted(out.rglob(f"samples_{TASK}_*.jsonl"))[-1:]
    texts = {}
    for line in samples.read_text().splitlines():
        sample = json.loads(line)
        texts[f"{sample['doc_id']:04d}"] = sample["resps"][0][0]
    for old in out.rglob("*"):  # the next round's samples file is then the only one
        if old.is_file():
            old.unlink()
    return wall, texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lm-eval", default="/tmp/lmeval-venv/bin/lm-eval")
    parser.add_argument("--items", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        write_gsm8k_task(directory, args.items, args.max_new_tokens)
        tasks = write_lmeval_task(directory, args.max_new_tokens)
        ours_total = theirs_total = 0.0
        differ: set[str] = set()
        for round_ in range(1, args.rounds + 1):
            before = load_average()
            ours, our_texts, metrics = run_project(directory, args.items, args.batch_size)
            middle = load_average()
            theirs, their_texts = run_lmeval(
                args.lm_eval, directory, tasks, args.items, args.batch_size
            )
            after = load_average()
            ours_total += ours
            theirs_total += theirs
            differ |= {k for k in our_texts if our_texts[k] != their_texts.get(k)}
            print(
                f"round {round_}: pytest {ours:.1f} s (load avg {before}; generation "
                f"{metrics['generation_s']:.1f} s, padding share {metrics['padding_share']}), "
                f"lm-eval {theirs:.1f} s (load avg {middle} -> {after}): "
                f"project/lm-eval items/s {theirs / ours:.3f}",
                flush=True,
            )
        print(
            f"total: pytest {ours_total:.1f} s, lm-eval {theirs_total:.1f} s: project/lm-eval "
            f"items/s {theirs_total / ours_total:.3f} (target >= 1.10); identical generations: "
            f"{args.items - len(differ)}/{args.items}"
        )
        for key in sorted(differ)[:3]:
            print(textwrap.shorten(f"differs {key}: {our_texts[key]!r}", 200))
            print(textwrap.shorten(f"   lm-eval {key}: {their_texts.get(key)!r}", 200))


if __name__ == "__main__":
    main()
