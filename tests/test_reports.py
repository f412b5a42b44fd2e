"""What people read: JUnit, HTML, summary.md, items.parquet, energy fields, progress, cost."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pandas as pd
import pytest

from conftest import item_record, mini_rows, run_evals
from pytest_llmeval.analyze.aggregate import summarize
from pytest_llmeval.analyze.cost import estimate_cost, load_prices
from pytest_llmeval.backends import GenerationResult
from pytest_llmeval.report.progress import Progress
from pytest_llmeval.run.batch_energy import with_energy
from pytest_llmeval.run.meters import EnergyReading


def result(tokens_out: int, wall: float = 2.0) -> GenerationResult:
    return GenerationResult(
        text="x",
        prompt="p",
        tokens_in=5,
        tokens_out=tokens_out,
        latency_s=1.0,
        finish_reason="stop",
        batch_id="b1",
        batch_size=3,
        batch_wall_s=wall,
        latency_method="m",
    )


def test_batch_energy_is_split_by_generated_tokens() -> None:
    readings = [
        EnergyReading("nvml-energy-counter", 60.0, None, 2.0, 30.0, None, "gpu0"),
        EnergyReading("nvml-energy-counter", 40.0, None, 2.0, 20.0, None, "gpu1"),
        EnergyReading("rapl", 10.0, None, 2.0, 5.0, None, "package-0"),
    ]
    items = with_energy([result(10), result(30), result(60)], readings, [])
    assert [i.energy_j for i in items] == [10.0, 30.0, 60.0]
    assert [i.cpu_energy_j for i in items] == [1.0, 3.0, 6.0]
    assert all(i.batch_energy_j == 100.0 and i.batch_avg_w == 50.0 for i in items)
    assert items[0].energy_reason is None and "token share" in str(items[0].energy_method)


def test_unmeasurable_energy_is_null_with_the_reason() -> None:
    missing = [
        EnergyReading("nvml", None, "no NVML (NVML Shared Library Not Found)", 0, None, None, "gpu")
    ]
    items = with_energy([result(10), result(20)], [], missing)
    assert [i.energy_j for i in items] == [None, None]
    assert items[0].energy_reason == "no NVML (NVML Shared Library Not Found)"
    short = [
        EnergyReading(
            "nvml-energy-counter", None, "window too short (0.08 s)", 0.08, None, None, "gpu0"
        )
    ]
    assert (
        with_energy([result(10)], short, [])[0].energy_reason == "gpu0: window too short (0.08 s)"
    )


def test_task_energy_metrics_count_each_batch_once() -> None:
    records = [
        item_record(
            "pass",
            tokens_out=t,
            tokens_in=1,
            batch_id=b,
            batch_wall_s=2.0,
            batch_energy_j=e,
            batch_peak_w=80.0,
            latency_s=1.0,
            cpu_energy_j=None,
            cached=False,  # generated in this run: only such items have speed and energy
        )
        for t, b, e in ((10, "a", 100.0), (30, "a", 100.0), (60, "b", 260.0))
    ]
    metrics = summarize(records)
    assert metrics.energy_wh == pytest.approx(360 / 3600)
    assert metrics.j_per_token == pytest.approx(3.6)
    assert metrics.avg_power_w == pytest.approx(90.0)  # 360 J over 4 s of batches
    assert metrics.peak_power_w == 80.0 and metrics.items_per_min == pytest.approx(45.0)


def test_progress_lines_come_at_most_once_per_interval() -> None:
    now = [0.0]
    progress = Progress(
        interval_s=30, total=lambda: 100, shares=lambda: {"gw0": 50}, clock=lambda: now[0]
    )
    lines = []
    for step in range(100):
        now[0] = step * 2.0  # an item every 2 s, 200 s in all
        line = progress.add(item_record(worker="gw0" if step % 2 else "gw1", tokens_out=20))
        if line:
            lines.append(line)
    assert len(lines) == 6  # at 30, 60, ... 180 s
    assert lines[0].startswith("llmeval progress 30s: 16/100 items (16%)")
    # Rates per model (every backend of the run), counts per worker with its share.
    assert "m 16 items, 11 tok/s" in lines[0] and lines[0].endswith("; gw0 8/50, gw1 8")
    assert Progress(interval_s=0, total=lambda: 1, shares=dict).add(item_record(worker="w")) is None


def test_price_table_is_extensible(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.llmeval.prices."my-model"]\ninput = 1.0\noutput = 4.0\n'
    )
    prices = load_prices(tmp_path)
    assert "gpt-4o-mini" in prices
    cost = estimate_cost("openai", "my-model@http://127.0.0.1:9/v1", 2_000_000, 500_000, prices)
    assert cost == {"cost_usd": 4.0, "cost_reason": None}
    unknown = estimate_cost("openai", "other@http://x/v1", 1, 1, prices)
    assert unknown["cost_usd"] is None and "tool.llmeval.prices" in unknown["cost_reason"]
    assert estimate_cost("transformers", "org/m", 1, 1, prices)["cost_usd"] is None
    (tmp_path / "pyproject.toml").write_text('[tool.llmeval.prices."bad"]\ninput = 1.0\n')
    with pytest.raises(ValueError, match="needs input"):
        load_prices(tmp_path)


def test_reports_from_a_real_small_run(evalproject: pytest.Pytester) -> None:
    (evalproject.path / "data" / "mini.jsonl").write_text(mini_rows(wrong=2))
    result = run_evals(evalproject, "--junitxml", "out/junit.xml", "--html", "out/report.html")
    assert result.ret == 0
    out = evalproject.path / "out"
    report = json.loads((out / "report.json").read_text())
    metrics = report["tasks"]["mini"]["models"]["callable:answers:reply"]["metrics"]
    # A callable model's energy is not on this machine: null with the reason, never a guess.
    assert metrics["energy_wh"] is None and metrics["energy_reason"] == "remote backend"
    assert metrics["cost_reason"] == "callable pipeline: its cost is not known to the harness"
    assert metrics["items_per_min"] > 0
    assert set(report["files"]) >= {"items", "items_parquet", "summary"}

    junit = ET.parse(out / "junit.xml").getroot()
    cases = junit.findall(".//testcase")
    assert len(cases) == 11
    first = next(c for c in cases if c.get("name") == "mini/test/0000")
    props = {p.get("name"): p.get("value") for p in first.findall("./properties/property")}
    assert props["llmeval.extracted"] == "999" and props["llmeval.target"] == "1"
    assert props["llmeval.score"] == "0.0" and float(props["llmeval.latency_s"]) >= 0
    assert "llmeval.outcome" in props and "llmeval.energy_j" not in props  # null: omitted
    assert "llmeval.tokens_out" not in props  # the callable counts no tokens: null, omitted
    gate = next(c for c in cases if c.get("classname") == "gates.mini")
    gate_props = {p.get("name"): p.get("value") for p in gate.findall("./properties/property")}
    assert gate_props["llmeval.gate.n"] == "10"

    page = (out / "report.html").read_text()
    assert "llmeval gates" in page and "accuracy&gt;=0.5" in page and "llmeval metrics" in page
    assert "Prompt (as rendered)" in page and "q: 0 + 1 WRONG" in page and "#### 999" in page

    summary = (out / "summary.md").read_text()
    assert "## Quality" in summary and "## Latency, throughput, energy, cost" in summary
    assert "0.800" in summary and "accuracy>=0.5 ok" in summary
    assert "Energy not measured: remote backend" in summary

    items = pd.read_parquet(out / "items.parquet")
    assert len(items) == 10
    for column in (
        "id",
        "prompt",
        "response",
        "extracted",
        "target",
        "score",
        "latency_s",
        "tokens_in",
        "tokens_out",
        "energy_j",
        "energy_reason",
    ):
        assert column in items.columns, column
    assert items.loc[items.id == "mini/test/0000", "extracted"].item() == "999"
    assert items.energy_j.isna().all()
