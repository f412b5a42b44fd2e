"""Collection of 10,000 eval items: `pytest --collect-only -q` in a fresh process on a task
of 10,000 generated rows (the task of benchmarks/bench_collect.py), with the plugin loaded.

The figure includes the interpreter's and pytest's start-up (what a user waits for);
bench_collect.py gives the ratio to 10,000 plain parametrized tests.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from bench_collect import EVAL_TASK

ITEMS = 10_000


def collect(directory: Path, expected: int) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
         str(directory), "--rootdir", str(directory)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if f"{expected} tests collected" not in done.stdout:
        raise AssertionError(f"unexpected collection:\n{done.stdout[-500:]}{done.stderr[-500:]}")


def bench_collect_10k_items(benchmark: Any, tmp_path: Path, scale: int) -> None:
    items = ITEMS // scale
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_many.py").write_text(textwrap.dedent(EVAL_TASK.format(n=items)))
    benchmark.pedantic(collect, args=(tmp_path, items), rounds=3, iterations=1)
