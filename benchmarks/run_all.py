"""Run every benchmark with one command and write the figures and the machine to one JSON file.

    python benchmarks/run_all.py                 # micro suite + the scripts at small sizes
    python benchmarks/run_all.py --full          # the scripts at their own defaults (RESULTS.md)
    python benchmarks/run_all.py --compare       # micro suite against its stored baseline

Steps, in order: the pytest-benchmark microbenchmarks in `benchmarks/micro/` (always at full
size: their baseline is comparable only so), then each script of `SCRIPTS` with its small
arguments, then any other `benchmarks/bench_*.py` whose source offers `--quick` (run with
`--quick`). A script joins by offering `--quick` (a run of a few minutes at most on a 2-core
CPU), or by an entry in `SCRIPTS`. A script that cannot run here (no GPU, a tool not installed)
prints why and exits with `SKIPPED` (77): it is recorded as skipped, not failed.

The output (default `reports/benchmarks/<UTC time>.json`, git-ignored) holds `machine` (CPU,
cores, memory, GPU, versions of torch/transformers/vllm, thread settings), `commit`, the
micro suite's pytest-benchmark JSON envelope under `micro`, and per script its command,
exit status, wall time, printed lines, the load average before and after, and `provisional`:
true when the machine was busy as the step started (`busy`), so its figures are not final.
Exit status: 0 when every step ran or was skipped.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SKIPPED = 77
"""Exit status of a script that cannot run on this machine (as automake's skipped tests)."""

# The existing scripts and their small arguments (a few minutes in all on a 2-core CPU with
# the embedded model). `--full` runs them with no arguments: their own defaults, the sizes
# RESULTS.md reports.
SCRIPTS: dict[str, list[str]] = {
    "bench_collect.py": ["--items", "2000"],
    "similarity.py": ["--pairs", "5"],
    "bench_cache.py": ["--items", "8", "--max-new-tokens", "32"],
    "bench_throughput.py": ["--items", "8", "--batch-size", "4", "--max-new-tokens", "32"],
    "bench_invariance.py": ["--items", "8", "--max-new-tokens", "16", "--rounds", "1"],
    "bench_arms.py": ["--items", "4", "--max-new-tokens", "16", "--rounds", "1"],
}
VERSIONS = ("torch", "transformers", "vllm", "pytest", "pytest-benchmark", "rapidfuzz")


@dataclass(frozen=True)
class Planned:
    """One script to run: its file name and arguments, or why it is left out."""

    name: str
    args: list[str]
    left_out: str | None = None


def plan(directory: Path, full: bool) -> list[Planned]:
    """The scripts of `directory` to run, `SCRIPTS` first, then the other `bench_*.py`."""
    planned = [
        Planned(name, [] if full else args)
        for name, args in SCRIPTS.items()
        if (directory / name).exists()
    ]
    for path in sorted(directory.glob("bench_*.py")):
        if path.name in SCRIPTS:
            continue
        if "--quick" in path.read_text(encoding="utf-8"):
            planned.append(Planned(path.name, [] if full else ["--quick"]))
        else:
            planned.append(Planned(path.name, [], "offers no --quick and is not in SCRIPTS"))
    return planned


def machine_info() -> dict[str, Any]:
    """The machine and software the figures were taken on (no torch import: metadata only)."""
    cpu = platform.processor() or None
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [
            line.split(":", 1)[1].strip()
            for line in cpuinfo.read_text().splitlines()
            if line.startswith("model name")
        ]
        cpu = names[0] if names else cpu
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "cpus_usable": _cpus(),
        "memory_gib": _memory_gib(),
        "gpus": _gpus(),
        "threads_env": {
            key: os.environ[key]
            for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
            if key in os.environ
        },
        "versions": {name: _version(name) for name in VERSIONS},
        "load_average": _load(),
    }


def busy(load_before: list[float], cpus: int) -> bool:
    """Whether other work was running when a step started: a 1-minute load average of half
    the usable CPUs or more (on 2 cores, one busy core). Its figures are then provisional:
    they measure the contention as much as the code."""
    return load_before[0] >= cpus / 2


def _cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _load() -> list[float]:
    """The 1, 5 and 15 minute load averages."""
    return [round(value, 2) for value in os.getloadavg()]


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _memory_gib() -> float | None:
    meminfo = Path("/proc/meminfo")
    if not meminfo.exists():
        return None
    for line in meminfo.read_text().splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 2**20, 1)
    return None


def _gpus() -> list[str]:
    """GPU names and memory from nvidia-smi; empty without one."""
    if shutil.which("nvidia-smi") is None:
        return []
    done = subprocess.run(
        ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return [line.strip() for line in done.stdout.splitlines() if line.strip()]


def commit_info() -> dict[str, Any]:
    """The checkout's commit and whether it has uncommitted changes."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True)
        return done.stdout.strip()

    return {"id": git("rev-parse", "HEAD") or None, "dirty": bool(git("status", "--porcelain"))}


def run_micro(options: argparse.Namespace) -> dict[str, Any]:
    """The micro suite in a fresh process; its pytest-benchmark JSON under `envelope`."""
    with tempfile.TemporaryDirectory() as scratch:
        output = Path(scratch) / "micro.json"
        command = [sys.executable, "-m", "pytest", str(HERE / "micro"), "-q",
                   f"--benchmark-json={output}"]  # fmt: skip
        if options.compare is not None:
            command.append(
                "--benchmark-compare" + (f"={options.compare}" if options.compare else "")
            )
            command.append(f"--benchmark-compare-fail={options.compare_fail}")
        if options.save:
            command.append(f"--benchmark-save={options.save}")
        step = run_step("micro", command, options.timeout, os.environ.copy())
        step["envelope"] = json.loads(output.read_text()) if output.exists() else None
    return step


def run_step(name: str, command: list[str], timeout: float, env: dict[str, str]) -> dict[str, Any]:
    """Run one command; its exit status, wall time, output and the load around it."""
    print(f"== {name}: {' '.join(command[1:])}", flush=True)
    load_before = _load()
    started = time.perf_counter()
    try:
        done = subprocess.run(
            command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
        )
        status, out, err = done.returncode, done.stdout, done.stderr
    except subprocess.TimeoutExpired as exc:
        status, out, err = None, _text(exc.stdout), _text(exc.stderr) + f"\ntimed out ({timeout} s)"
    wall = time.perf_counter() - started
    outcome = (
        {0: "passed", SKIPPED: "skipped"}.get(status, "failed") if status is not None else "timeout"
    )
    lines = out.splitlines()
    print("\n".join(lines[-15:]), f"\n-> {outcome} in {wall:.1f} s", flush=True)
    return {
        "name": name,
        "command": command[1:],
        "outcome": outcome,
        "returncode": status,
        "wall_s": round(wall, 3),
        "load_before": load_before,
        "load_after": _load(),
        "provisional": busy(load_before, _cpus()),
        "stdout": lines[-200:],
        "stderr_tail": err[-2000:] if outcome != "passed" else "",
    }


def _text(value: str | bytes | None) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value or ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, help="JSON file (default reports/benchmarks/<time>.json)"
    )
    parser.add_argument("--full", action="store_true", help="Scripts at their own default sizes")
    parser.add_argument(
        "--only", nargs="+", metavar="NAME", help="Run only these steps (micro, script names)"
    )
    parser.add_argument(
        "--compare",
        nargs="?",
        const="",
        metavar="ID",
        help="Compare the micro suite with a saved baseline (default: the latest)",
    )
    parser.add_argument(
        "--compare-fail",
        default="mean:25%",
        help="Regression that fails the micro suite under --compare (default mean:25%%)",
    )
    parser.add_argument(
        "--save", metavar="NAME", help="Save the micro suite as a new baseline NAME"
    )
    parser.add_argument(
        "--threads", type=int, help="OMP_NUM_THREADS/MKL_NUM_THREADS for every step"
    )
    parser.add_argument("--timeout", type=float, default=1800.0, help="Seconds per step")
    options = parser.parse_args()
    started = dt.datetime.now(dt.UTC)
    out = options.out or REPO / "reports" / "benchmarks" / f"{started:%Y%m%dT%H%M%SZ}.json"
    wanted = set(options.only) if options.only else None
    if options.threads:
        # Set here so that every step inherits it and `machine.threads_env` records it.
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(options.threads)
    env = os.environ.copy()
    result: dict[str, Any] = {
        "datetime": started.isoformat(),
        "machine": machine_info(),
        "commit": commit_info(),
        "mode": "full" if options.full else "quick",
        "micro": None,
        "scripts": [],
    }
    if wanted is None or "micro" in wanted:
        result["micro"] = run_micro(options)
    for planned in plan(HERE, options.full):
        if wanted is not None and planned.name not in wanted:
            continue
        if planned.left_out:
            result["scripts"].append(
                {"name": planned.name, "outcome": "left out", "why": planned.left_out}
            )
            continue
        command = [sys.executable, str(HERE / planned.name), *planned.args]
        result["scripts"].append(run_step(planned.name, command, options.timeout, env))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    steps = [s for s in [result["micro"], *result["scripts"]] if s]
    bad = [s["name"] for s in steps if s["outcome"] in ("failed", "timeout")]
    print(
        f"wrote {out}; " + (f"failed: {', '.join(bad)}" if bad else "every step ran or was skipped")
    )
    shaky = [s["name"] for s in steps if s.get("provisional")]
    if shaky:
        print(f"provisional (the machine was busy as they started): {', '.join(shaky)}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
