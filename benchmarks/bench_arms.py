"""What a 2-arm comparison costs against one arm (issue 13: at most 2 x + 5%).

The same N GSM8K test rows run through the embedded model as one arm (the shipped prompt)
and as two arms (the shipped prompt and a terse variant, `Task(variants=...)`, compared by
the plugin). Both are whole `pytest` processes with the generation cache off, taken in turn
(one, two, one, two ...), so start-up, loading and the comparison itself are all counted;
each round prints two-arm time / one-arm time.

    python benchmarks/bench_arms.py --items 16 --max-new-tokens 64 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import DATA_DIR, REPO, write_gsm8k_task

TERSE = "{question}\nEnd with a line '#### <number>'."


def project(directory: Path, items: int, max_new_tokens: int, arms: int) -> Path:
    """The benchmark task, with the shipped prompt alone or with a terse variant beside it."""
    module = write_gsm8k_task(directory, items, max_new_tokens)
    if arms == 2:
        source = module.read_text()
        single = "prompt=ChatPrompt(user=PROMPT),"
        assert single in source
        terse = f"ChatPrompt(user={TERSE!r})"
        variants = f"variants={{'shipped': ChatPrompt(user=PROMPT), 'terse': {terse}}},"
        module.write_text(source.replace(single, variants))
    return directory


def run(directory: Path, items: int) -> float:
    command = [
        sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider",
        "--llmeval-cache", "off", "--limit", str(items), f"--llmeval-data-dir={DATA_DIR}",
        "--llmeval-report", str(directory / "out" / "report.json"),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    started = time.perf_counter()
    done = subprocess.run(command, cwd=directory, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - started
    if done.returncode not in (0, 1):  # 1: items or gates failed, which the weak model does
        raise SystemExit(f"pytest exited {done.returncode}:\n{done.stdout[-3000:]}")
    report = json.loads((directory / "out" / "report.json").read_text())
    generated = sum(1 for _ in (directory / "out" / "items.jsonl").open())
    compared = [c["n"] for c in report.get("comparisons", [])]
    print(f"  {directory.name}: {generated} items, comparisons over {compared} items", flush=True)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as one_dir, tempfile.TemporaryDirectory() as two_dir:
        one = project(Path(one_dir), args.items, args.max_new_tokens, arms=1)
        two = project(Path(two_dir), args.items, args.max_new_tokens, arms=2)
        ratios = []
        for round_ in range(1, args.rounds + 1):
            load = " ".join(f"{x:.2f}" for x in os.getloadavg())
            single = run(one, args.items)
            double = run(two, args.items)
            ratios.append(double / single)
            print(
                f"round {round_}: one arm {single:.1f} s, two arms {double:.1f} s, "
                f"ratio {double / single:.3f} (target <= 2.05; load avg {load})",
                flush=True,
            )
        print(f"median ratio {sorted(ratios)[len(ratios) // 2]:.3f}")


if __name__ == "__main__":
    main()
