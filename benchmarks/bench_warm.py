"""A fully cached rerun on the default model vs the same items through a trivial callable.

Issue 12, target 1: a rerun whose every GSM8K item is in the cache imports neither torch nor
transformers and takes at most 1.3x the time of the same items through a trivial `callable:`
backend (the harness's overhead floor). Both sides are fully cached runs of one task (the
first `--items` GSM8K test rows, shipped prompt and scorer), each `pytest` in a fresh process,
alternated A B A B.

The cache of the default model is filled first by a real generation of `--fill-tokens` new
tokens per item (8 by default: 1319 items at 256 tokens take hours on a 2-core CPU); what a
cached rerun costs does not depend on how long the stored answers are.

    python benchmarks/bench_warm.py --items 1319 --rounds 2
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

from common import DATA_DIR, write_gsm8k_task

TRIVIAL = 'def reply(messages, settings):\n    return "#### 0"\n'
SPY = """
import json, sys

def pytest_sessionfinish(session):
    with open("modules.json", "w") as handle:
        json.dump(sorted(sys.modules), handle)
"""


def run(directory: Path, model: str, name: str) -> tuple[float, dict[str, int], list[str]]:
    """One pytest session: wall seconds, generated/cached counts, torch/transformers loaded."""
    command = [
        sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
        "--model", model, f"--llmeval-data-dir={DATA_DIR}",
        f"--llmeval-report={name}/report.json", "--llmeval-progress=0",
    ]  # fmt: skip
    path = os.pathsep.join(filter(None, [str(directory), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    started = time.perf_counter()
    done = subprocess.run(command, cwd=directory, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - started
    if done.returncode not in (0, 1):
        raise SystemExit(f"{model}: exit {done.returncode}\n{done.stdout[-2000:]}{done.stderr}")
    report = json.loads((directory / name / "report.json").read_text())
    metrics = report["tasks"]["bench"]["models"]
    (figures,) = metrics.values()
    counts = {key: figures["metrics"][key] for key in ("generated", "cached")}
    modules = json.loads((directory / "modules.json").read_text())
    heavy = sorted({m.split(".")[0] for m in modules} & {"torch", "transformers"})
    return seconds, counts, heavy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1319)
    parser.add_argument("--fill-tokens", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--keep", type=Path, help="work here (keeps the filled cache)")
    args = parser.parse_args()
    directory = args.keep or Path(tempfile.mkdtemp(prefix="bench-warm-"))
    directory.mkdir(parents=True, exist_ok=True)
    write_gsm8k_task(directory, args.items, args.fill_tokens)
    (directory / "trivial.py").write_text(TRIVIAL)
    (directory / "conftest.py").write_text(SPY)
    local, floor = args.model, "callable:trivial:reply"
    for model, name in ((local, "fill-local"), (floor, "fill-callable")):
        seconds, counts, _ = run(directory, model, name)
        print(f"fill {model}: {seconds:.1f} s, {counts}", flush=True)
    times: dict[str, list[float]] = {local: [], floor: []}
    for round_ in range(args.rounds):
        for model in (local, floor):
            seconds, counts, heavy = run(directory, model, f"warm-{round_}-{model[:8]}")
            if counts["generated"] or heavy:
                raise SystemExit(f"{model} was not fully cached: {counts}, imported {heavy}")
            times[model].append(seconds)
            print(f"round {round_ + 1} {model}: {seconds:.2f} s {counts}", flush=True)
    ratios = [a / b for a, b in zip(times[local], times[floor], strict=True)]
    print(f"load average: {os.getloadavg()}")
    print(
        f"cached {local} / cached callable, per round: {', '.join(f'{r:.3f}' for r in ratios)}; "
        f"best times {min(times[local]):.2f} s / {min(times[floor]):.2f} s = "
        f"{min(times[local]) / min(times[floor]):.3f}  (target <= 1.3)"
    )


if __name__ == "__main__":
    main()
