"""Throughput cost of the batch-invariant mode (`--llmeval-batch-invariant`) on the CPU.

The same task is run by the harness in this process, cache off, alternating ordinary
batching (A) and batch-invariant batching (B) as A B A B, so that a slow spell of a shared
machine falls on both. Throughput is generated tokens per second of generation wall time
(`tokens_out / generation_s` from the report: model loading excluded). The invariant mode
batches only prompts of one token length, so its cost depends on how many prompts share a
length: `arithmetic` (templated word problems) shares many, GSM8K few. Also printed: the
mean batch size of each mode and whether the texts of A and B differ.

    python benchmarks/bench_invariance.py --data arithmetic --items 40 --max-new-tokens 64
    python benchmarks/bench_invariance.py --data gsm8k --items 32 --max-new-tokens 64
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

import pytest
from common import REPO, write_gsm8k_task


def write_arithmetic_task(directory: Path, n: int, max_new_tokens: int) -> None:
    """The embedded arithmetic suite's first `n` problems, renamed `bench`."""
    (directory / "arithmetic_problems.py").write_text(
        (REPO / "evals" / "arithmetic_problems.py").read_text()
    )
    source = (REPO / "evals" / "test_arithmetic.py").read_text()
    source = source.replace('name="arithmetic"', 'name="bench"')
    source = source.replace("generate=problems", f"generate=lambda: problems({n})")
    source = source.replace("max_new_tokens=96", f"max_new_tokens={max_new_tokens}")
    (directory / "test_bench_arithmetic.py").write_text(source)
    (directory / "pytest.ini").write_text("[pytest]\n")


def run_once(directory: Path, run: int, batch_size: int, invariant: bool) -> dict[str, Any]:
    """One harness run over the task in `directory` (written once: pytest keeps the task
    module imported between runs in this process); its report under `out<run>/`."""
    out = directory / f"out{run}"
    args = [str(directory), "-q", "-p", "no:cacheprovider", "--llmeval-cache", "off",
            "--llmeval-batch-size", str(batch_size), "--llmeval-report", str(out / "report.json"),
            "--rootdir", str(directory)]  # fmt: skip
    if invariant:
        args.append("--llmeval-batch-invariant")
    pytest.main(args)
    report = json.loads((out / "report.json").read_text())
    figures = report["tasks"]["bench"]["models"]["smollm2-135m"]["metrics"]
    items = [json.loads(line) for line in (out / "items.jsonl").read_text().splitlines()]
    return {
        "tok_s": figures["tokens_out"] / figures["generation_s"],
        "tokens": figures["tokens_out"],
        "seconds": figures["generation_s"],
        "mean_batch": statistics.mean(r["batch_size"] for r in items),
        "texts": {r["id"]: r["response"] for r in items},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=["arithmetic", "gsm8k"], default="arithmetic")
    parser.add_argument("--items", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2, help="A B pairs")
    args = parser.parse_args()
    runs: dict[bool, list[dict[str, Any]]] = {False: [], True: []}
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        if args.data == "gsm8k":
            write_gsm8k_task(directory, args.items, args.max_new_tokens)
        else:
            write_arithmetic_task(directory, args.items, args.max_new_tokens)
        for round_ in range(args.rounds):
            for invariant in (False, True):
                run = 2 * round_ + int(invariant)
                runs[invariant].append(run_once(directory, run, args.batch_size, invariant))
    for invariant, name in ((False, "ordinary "), (True, "invariant")):
        done = runs[invariant]
        rates = ", ".join(f"{r['tok_s']:.1f}" for r in done)
        print(
            f"{name}: tok/s {rates}  ({done[0]['tokens']} tokens, mean batch size "
            f"{done[0]['mean_batch']:.2f})"
        )
    ratios = [b["tok_s"] / a["tok_s"] for a, b in zip(runs[False], runs[True], strict=True)]
    print(f"ratio invariant/ordinary per pair: {', '.join(f'{r:.3f}' for r in ratios)}")
    changed = sum(
        runs[False][0]["texts"][key] != text for key, text in runs[True][0]["texts"].items()
    )
    print(f"texts that differ between the modes: {changed} of {args.items}")


if __name__ == "__main__":
    main()
