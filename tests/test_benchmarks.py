"""The benchmarks cannot rot: the micro suite runs once (small sizes, timing off), the plugin's
own test run never collects it, and the one-command runner picks the scripts it documents."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType

from conftest import REPO_ROOT

BENCHMARKS = REPO_ROOT / "benchmarks"
MICRO = BENCHMARKS / "micro"


def load_runner() -> ModuleType:
    """benchmarks/run_all.py as a module (registered first: its dataclass needs that)."""
    name = "llmeval_benchmarks_run_all"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, BENCHMARKS / "run_all.py")
        assert spec is not None and spec.loader is not None
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


def test_micro_suite_runs_with_benchmarks_disabled(tmp_path: Path) -> None:
    report = tmp_path / "micro.json"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", str(MICRO), "-q", "--benchmark-disable",
         "--micro-quick", f"--benchmark-json={report}"],
        cwd=REPO_ROOT, capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert " passed" in done.stdout and "skipped" not in done.stdout, done.stdout[-1000:]
    names = {path.stem for path in MICRO.glob("micro_*.py")}
    assert names == {
        "micro_aggregate",
        "micro_cache",
        "micro_collect",
        "micro_extraction",
        "micro_similarity",
    }


def test_plugin_test_run_does_not_collect_the_benchmarks() -> None:
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    assert pyproject["tool"]["pytest"]["ini_options"]["testpaths"] == ["tests"]
    # Even `pytest benchmarks` with the default file pattern (test_*.py) finds nothing.
    assert not list(BENCHMARKS.rglob("test_*.py"))


def test_every_micro_benchmark_has_a_stored_baseline() -> None:
    saved = sorted((BENCHMARKS / "baselines").glob("*/*.json"))
    assert saved, "no baseline under benchmarks/baselines/"
    names = {bench["name"] for bench in json.loads(saved[-1].read_text())["benchmarks"]}
    defined = {
        line.split("(")[0].removeprefix("def ")
        for path in MICRO.glob("micro_*.py")
        for line in path.read_text().splitlines()
        if line.startswith("def bench_")
    }
    assert names == defined


def test_runner_plans_listed_scripts_then_those_offering_quick(tmp_path: Path) -> None:
    runner = load_runner()
    (tmp_path / "bench_collect.py").write_text("print('listed')\n")
    (tmp_path / "bench_newer.py").write_text('parser.add_argument("--quick")\n')
    (tmp_path / "bench_gpu_only.py").write_text("print('no small mode')\n")
    (tmp_path / "helper.py").write_text('"--quick"\n')
    planned = runner.plan(tmp_path, full=False)
    assert [(p.name, p.args, p.left_out) for p in planned] == [
        ("bench_collect.py", runner.SCRIPTS["bench_collect.py"], None),
        ("bench_gpu_only.py", [], "offers no --quick and is not in SCRIPTS"),
        ("bench_newer.py", ["--quick"], None),
    ]
    full = runner.plan(tmp_path, full=True)
    assert [(p.name, p.args) for p in full if not p.left_out] == [
        ("bench_collect.py", []),
        ("bench_newer.py", []),
    ]


def test_runner_lists_only_scripts_that_exist() -> None:
    runner = load_runner()
    assert all((BENCHMARKS / name).exists() for name in runner.SCRIPTS)


def test_runner_records_a_skipping_script_as_skipped(tmp_path: Path) -> None:
    runner = load_runner()
    script = tmp_path / "bench_gpu.py"
    script.write_text("import sys\nprint('no GPU here')\nsys.exit(77)\n")
    step = runner.run_step("bench_gpu.py", [sys.executable, str(script)], 60, {})
    assert (step["outcome"], step["returncode"], step["stdout"]) == ("skipped", 77, ["no GPU here"])
    assert len(step["load_before"]) == 3 and len(step["load_after"]) == 3
    assert isinstance(step["provisional"], bool)


def test_machine_info_names_cpu_cores_versions_and_load() -> None:
    info = load_runner().machine_info()
    assert info["cpu_count"] >= 1 and info["cpu"]
    assert set(info["versions"]) >= {"torch", "transformers"}
    assert info["versions"]["pytest"]
    assert len(info["load_average"]) == 3


def test_a_step_started_on_a_busy_machine_is_provisional() -> None:
    busy = load_runner().busy
    # 2 usable cores: one of them busy with other work is enough to distort a figure.
    assert (busy([0.4, 1.0, 1.0], 2), busy([1.0, 0.2, 0.2], 2), busy([1.9, 0, 0], 4)) == (
        False,
        True,
        False,
    )
