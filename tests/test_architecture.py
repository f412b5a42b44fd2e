"""The package's shape: a pure core that needs no pytest, and imports that follow the layers."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "pytest_llmeval"

# Lowest first: a module may import from its own folder and the folders before it.
LAYERS = ["score", "analyze", "declare", "report", "backends", "run", "top"]
PURE = {"score", "analyze", "declare", "report"}
# Never imported at module level by the pure folders (pydantic: only inside report.schema's
# functions; pandas/datasets: inside the functions that read or write tables).
HEAVY = {"pytest", "_pytest", "xdist", "execnet", "torch", "transformers", "vllm", "pydantic"}
HEAVY |= {"pandas", "datasets", "pyarrow"}


def _layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) >= 2 and parts[1] in LAYERS:
        return parts[1]
    return "top"


def _module_level_imports(path: Path) -> list[str]:
    """Modules imported at module level (not inside functions or `if TYPE_CHECKING:`)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "pytest_llmeval":
                found += [f"pytest_llmeval.{alias.name}" for alias in node.names]
            else:
                found.append(node.module)
    return found


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return modules


def test_imports_only_go_down_the_layers() -> None:
    wrong = []
    for name, path in _modules().items():
        mine = LAYERS.index(_layer(name))
        for imported in _module_level_imports(path):
            if imported.startswith("pytest_llmeval.") and LAYERS.index(_layer(imported)) > mine:
                wrong.append(f"{name} imports {imported}")
    assert wrong == []


def test_pure_folders_import_no_pytest_torch_or_pydantic_at_module_level() -> None:
    wrong = []
    for name, path in _modules().items():
        if _layer(name) in PURE:
            heavy = [m for m in _module_level_imports(path) if m.split(".")[0] in HEAVY]
            wrong += [f"{name} imports {m}" for m in heavy]
    assert wrong == []


def test_the_layer_check_sees_a_wrong_import(tmp_path: Path) -> None:
    # The checker itself: a pure module importing pytest and a higher layer is caught.
    bad = tmp_path / "bad.py"
    bad.write_text("import pytest\nfrom pytest_llmeval.run.engine import Engine\n")
    imports = _module_level_imports(bad)
    assert imports == ["pytest", "pytest_llmeval.run.engine"]
    assert LAYERS.index(_layer(imports[1])) > LAYERS.index("analyze")


PURE_RUN = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from pytest_llmeval.analyze import aggregate, gates, stats, record, metrics, agreement
    from pytest_llmeval.report import envelope, writers, summary, html, runinfo, progress, junit
    from pytest_llmeval.report import schema
    from pytest_llmeval.declare import ids, settings, models, task, data, sampling
    from pytest_llmeval.score import scorers, numbers, labels, text, reasoning, agreement as a

    # A run aggregated, gated and reported from records alone, as the saved-runs command will.
    spec = models.resolve_model("callable:m:f")
    run = settings.Settings(
        models=[spec], limit=None, seed=0, data_dir=None, batch_size=None, device=None,
        dtype=None, gates=[gates.parse_gate("t:accuracy>=0.5", "cli")],
    )
    made = [
        record.ItemRecord(
            id=ids.item_id("t", "test", i), nodeid=f"x.py::{ids.item_id('t', 'test', i)}",
            task="t", model=spec.name, split="test", row_index=i, source="task",
            outcome="pass" if i % 4 else "fail", score=float(bool(i % 4)), extracted=str(i),
            correct=bool(i % 4),
        )
        for i in range(8)
    ]
    info = {"t": record.TaskInfo("t", "generated", "test", 8, ["parse_rate>=0.9"])}
    summaries = aggregate.summarize_run(made, info)
    checked = gates.check_run(summaries, {"t": info["t"].gates}, run.gates)
    facts = envelope.RunFacts("run", "now", 0.0, run, made, info, [], {}, summaries, checked)
    out = Path(sys.argv[1]) / "report.json"
    writer = writers.ReportWriter(out)
    for item in made:
        writer.append_item(item)
    writer.write_report(envelope.build_report(facts, 0, Path(sys.argv[1])))
    heavy = sorted(
        m for m in ("pytest", "_pytest", "torch", "transformers", "xdist", "pydantic", "pandas")
        if m in sys.modules
    )
    print(json.dumps({"heavy": heavy, "accuracy": summaries[("t", spec.name)].accuracy,
                      "gates": [(g.gate.text, g.passed) for g in checked]}))
    """
)


def test_the_core_aggregates_gates_and_reports_without_pytest_or_torch(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", PURE_RUN, str(tmp_path)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["heavy"] == []
    assert result["accuracy"] == 0.75
    assert result["gates"] == [["parse_rate>=0.9", True], ["accuracy>=0.5", True]]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["totals"] == {
        "items": 8, "passed": 6, "failed": 2, "errors": 0, "gates_failed": 0
    }  # fmt: skip
    assert len((tmp_path / "items.jsonl").read_text().splitlines()) == 8
