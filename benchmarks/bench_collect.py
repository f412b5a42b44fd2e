"""Collecting 10,000 eval items vs collecting 10,000 plain parametrized tests.

Each is `pytest --collect-only -q` in a fresh process (plugin loaded in both), best of 3.

    python benchmarks/bench_collect.py --items 10000
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

EVAL_TASK = """
from pytest_llmeval import ChatPrompt, DataSource, Task, scoring

def rows():
    return [{{"question": f"{{i}} + {{i}}", "answer": str(2 * i)}} for i in range({n})]

many = Task(name="many", data=DataSource(generate=rows), prompt=ChatPrompt(user="{{question}}"),
            target="answer", scorer=scoring.numeric)
"""

PLAIN_TESTS = """
import pytest

@pytest.mark.parametrize("i", range({n}))
def test_many(i):
    assert 2 * i == i + i
"""


def best_collect_time(directory: Path, expected: int, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "--collect-only",
                "-q",
                "-p",
                "no:cacheprovider",
                str(directory),
                "--rootdir",
                str(directory),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        best = min(best, time.perf_counter() - started)
        if f"{expected} tests collected" not in done.stdout:
            raise SystemExit(f"unexpected collection in {directory}:\n{done.stdout[-500:]}")
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        evals, plain = Path(scratch, "evals"), Path(scratch, "plain")
        for directory, source in ((evals, EVAL_TASK), (plain, PLAIN_TESTS)):
            directory.mkdir()
            (directory / "pytest.ini").write_text("[pytest]\n")
            (directory / "test_many.py").write_text(textwrap.dedent(source.format(n=args.items)))
        eval_time = best_collect_time(evals, args.items)
        plain_time = best_collect_time(plain, args.items)
    print(f"eval items:  {eval_time:.2f} s for {args.items}")
    print(f"parametrize: {plain_time:.2f} s for {args.items}")
    print(f"ratio eval/plain: {eval_time / plain_time:.2f}  (target <= 2)")


if __name__ == "__main__":
    main()
