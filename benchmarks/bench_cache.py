"""Warm-cache rerun vs cold run of the same GSM8K items (embedded model, CPU), as users run it:
two `pytest` processes, wall time each, the second served from the generation cache.

    python benchmarks/bench_cache.py --items 64 --max-new-tokens 256
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import write_gsm8k_task


def timed_run(directory: Path, name: str, batch_size: int) -> tuple[float, dict[str, object]]:
    report = directory / name / "report.json"
    command = [
        sys.executable,
        "-m",
        "pytest",
        str(directory),
        "-q",
        "-p",
        "no:cacheprovider",
        "--llmeval-cache-dir",
        str(directory / "cache"),
        "--llmeval-report",
        str(report),
        "--llmeval-batch-size",
        str(batch_size),
        "--rootdir",
        str(directory),
    ]
    started = time.perf_counter()
    subprocess.run(command, check=False, capture_output=True)
    wall = time.perf_counter() - started
    return wall, json.loads(report.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        write_gsm8k_task(directory, args.items, args.max_new_tokens)
        cold, cold_report = timed_run(directory, "cold", args.batch_size)
        warm, warm_report = timed_run(directory, "warm", args.batch_size)
    for name, wall, report in (("cold", cold, cold_report), ("warm", warm, warm_report)):
        metrics = report["tasks"]["bench"]["models"]["smollm2-135m"]["metrics"]  # type: ignore[index]
        loads = [entry["model_loads"] for entry in report["model_loads"]]  # type: ignore[index]
        print(
            f"{name}: {wall:7.1f} s  generated={metrics['generated']} cached={metrics['cached']} "
            f"model loads={sum(loads)}"
        )
    print(f"speed-up warm vs cold: {cold / warm:.1f}x  (target >= 20x)")


if __name__ == "__main__":
    main()
