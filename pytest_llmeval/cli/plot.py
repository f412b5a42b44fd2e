"""`pytest-llmeval plot RUN... --out DIR`: figures of saved runs (PNG and SVG, matplotlib).

Score against model size, mean latency, energy per item and cost per item; a bubble chart
(size x score x cost); the overall ranking; a score breakdown per model; the per-task summary
(the headline of a single run). Every figure is drawn from the rows of `plot_data.plot_rows`,
written beside the figures as plot_data.csv. A point whose fact is unknown is left out of
that figure and named in its footnote and on stdout; a figure no point has data for is not
drawn. matplotlib is imported only here, inside `_run`: the command line stays cheap.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from pytest_llmeval.cli.plot_data import (
    PlotRow,
    breakdown,
    fit_footnote,
    left_out,
    per_task,
    plot_rows,
    ranking,
    write_table,
)
from pytest_llmeval.cli.runs import RunError, load_runs

WIDTH_IN, HEIGHT_IN, DPI = 8.0, 5.0, 100
"""Every figure is 800 x 500 pixels as PNG."""

SCATTERS: dict[str, tuple[str, str, str]] = {
    # name: (row attribute, axis label, what is missing when it is None)
    "score_vs_size": ("parameters", "model size (parameters, log scale)", "parameters"),
    "score_vs_latency": ("latency_mean_s", "mean latency per item (s)", "latency"),
    "score_vs_energy": ("energy_wh_per_item", "GPU energy per generated item (Wh)", "energy"),
    "score_vs_cost": ("cost_usd_per_item", "API cost per generated item (USD)", "cost"),
}


def add_parser(subparsers: Any) -> None:
    """`plot RUN... --out DIR [--metric M] [--format png|svg|both]`."""
    parser = subparsers.add_parser(
        "plot", help="figures of saved runs: score vs size, latency, energy, cost; ranking"
    )
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run folders, report.json or globs")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for the figures")
    parser.add_argument(
        "--metric", default="accuracy",
        help="the score: a report metric; its <metric>_ci95 gives the error bars "
        "(default accuracy)",
    )  # fmt: skip
    parser.add_argument(
        "--format", choices=("png", "svg", "both"), default="both",
        help="file types written (default both)",
    )  # fmt: skip
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    runs = load_runs(args.runs)
    rows = plot_rows(runs, args.metric)
    if not rows:
        raise RunError(f"{' '.join(args.runs)}: no task ran any item; nothing to plot")
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunError(f"--out {out}: cannot create the folder ({exc.strerror})") from None
    suffixes = ("png", "svg") if args.format == "both" else (args.format,)
    write_table(rows, out / "plot_data.csv")
    print(f"plot_data.csv: {len(rows)} rows (run x task x arm)")
    for name, note in draw_all(runs, rows, out, suffixes):
        print(f"{name}: {note}")
    return 0


def draw_all(
    runs: Sequence[Any], rows: Sequence[PlotRow], out: Path, suffixes: Sequence[str]
) -> list[tuple[str, str]]:
    """Draw every figure into `out`; (figure name, what was written or why not) each."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display, whatever the user's backend
    from matplotlib import pyplot as plt

    notes = []
    drawers: list[tuple[str, Callable[[Any], str | None]]] = [
        (name, partial(_scatter, rows=rows, spec=spec)) for name, spec in SCATTERS.items()
    ]
    drawers += [
        ("bubble_size_score_cost", partial(_bubble, rows=rows)),
        ("ranking", partial(_ranking, rows=rows)),
        ("breakdown", partial(_breakdown, rows=rows, table=breakdown(runs, rows))),
        ("tasks", partial(_tasks, rows=rows)),
    ]
    for name, draw in drawers:
        fig, ax = plt.subplots(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI)
        try:
            footnote = draw(ax)
        except _NothingToDraw as exc:
            plt.close(fig)
            notes.append((name, f"not drawn: {exc}"))
            continue
        # The ranking's labels are on the y axis: give them room.
        left = 0.3 if name == "ranking" else 0.1
        fig.subplots_adjust(left=left, right=0.97, top=0.9, bottom=0.22 if footnote else 0.12)
        if footnote:
            fig.text(0.01, 0.01, fit_footnote(footnote), fontsize=7, va="bottom")
        for suffix in suffixes:
            fig.savefig(out / f"{name}.{suffix}", dpi=DPI)
        plt.close(fig)
        written = ", ".join(f"{name}.{s}" for s in suffixes)
        notes.append((name, written + (f" ({footnote})" if footnote else "")))
    return notes


class _NothingToDraw(Exception):
    """No row has what the figure plots; the message says why."""


def _metric_label(rows: Sequence[PlotRow]) -> str:
    metric = rows[0].metric
    has_ci = any(r.score_low is not None for r in rows)
    return f"{metric} (0-1)" + (", bars: 95% interval" if has_ci else "")


def _marker(row: PlotRow) -> str:
    return "s" if row.local else "o"


def _scatter(ax: Any, rows: Sequence[PlotRow], spec: tuple[str, str, str]) -> str | None:
    attr, xlabel, key = spec
    shown = [r for r in rows if getattr(r, attr) is not None and r.score is not None]
    if not shown:
        raise _NothingToDraw(left_out(rows, key) or f"no {key} in any run")
    tasks = list(dict.fromkeys(r.task for r in rows))
    colors = {task: f"C{i % 10}" for i, task in enumerate(tasks)}
    for row in shown:
        x = float(getattr(row, attr))
        ax.errorbar(x, row.score, yerr=_yerr(row), fmt=_marker(row), color=colors[row.task],
                    markersize=8, capsize=3)  # fmt: skip
        ax.annotate(row.label, (x, row.score), textcoords="offset points", xytext=(6, 4),
                    fontsize=8)  # fmt: skip
    ax.margins(x=0.15)  # room for the point labels at either end
    ax.set_ylim(-0.03, 1.05)  # a share of items: the whole scale, not a zoom on the points
    values = [float(getattr(r, attr)) for r in shown]
    if attr == "parameters" or (min(values) > 0 and max(values) / min(values) > 20):
        ax.set_xscale("log")
    if attr == "parameters":
        _parameter_ticks(ax)
    log = "log" not in xlabel and ax.get_xscale() == "log"
    ax.set_xlabel(xlabel + (" (log scale)" if log else ""))
    ax.set_ylabel(_metric_label(rows))
    ax.set_title(f"{rows[0].metric} vs {xlabel.split(' (')[0]}")
    _legend(ax, shown, colors)
    return left_out(rows, key)


def _parameter_ticks(ax: Any) -> None:
    """Parameter counts as people write them: 135M, 7B."""
    from matplotlib.ticker import FuncFormatter

    def text(value: float, _: object) -> str:
        return f"{value / 1e9:g}B" if value >= 1e9 else f"{value / 1e6:g}M"

    ax.xaxis.set_major_formatter(FuncFormatter(text))


def _spread(cell: tuple[float | None, float | None, float | None]) -> list[float]:
    """[below, above] the score to the interval's ends; no bar without an interval."""
    score, low, high = cell
    if score is None or low is None or high is None:
        return [0.0, 0.0]
    return [score - low, high - score]


def _yerr(row: PlotRow) -> Any:
    if row.score is None or row.score_low is None or row.score_high is None:
        return None
    return [[row.score - row.score_low], [row.score_high - row.score]]


def _legend(ax: Any, shown: Sequence[PlotRow], colors: dict[str, str]) -> None:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles: list[Any] = [
        Line2D([], [], marker=m, ls="", color="gray", label=text)
        for m, text, present in (("s", "local model", True), ("o", "API / callable", False))
        if any(r.local is present for r in shown)
    ]
    tasks = list(dict.fromkeys(r.task for r in shown))
    if len(colors) > 1:
        handles += [Patch(color=colors[t], label=f"task {t}") for t in tasks]
    ax.legend(handles=handles, fontsize=8, loc="best")


def _bubble(ax: Any, rows: Sequence[PlotRow]) -> str | None:
    shown = [
        r for r in rows
        if r.parameters is not None and r.cost_usd_per_item is not None and r.score is not None
    ]  # fmt: skip
    footnote = left_out(rows, "parameters", "cost")
    if not shown:
        raise _NothingToDraw(footnote or "no run has both parameters and cost")
    top = max(float(r.cost_usd_per_item or 0.0) for r in shown) or 1.0
    for row in shown:
        area = 50 + 1500 * float(row.cost_usd_per_item or 0.0) / top
        ax.scatter(row.parameters, row.score, s=area, marker=_marker(row), alpha=0.5)
        ax.annotate(f"{row.label}\n${row.cost_usd_per_item:.2g}/item", (row.parameters, row.score),
                    fontsize=8, ha="center", va="center")  # fmt: skip
    ax.set_xscale("log")
    ax.margins(x=0.2)
    ax.set_ylim(-0.03, 1.05)
    _parameter_ticks(ax)
    ax.set_xlabel("model size (parameters, log scale)")
    ax.set_ylabel(f"{rows[0].metric} (0-1)")
    ax.set_title(f"{rows[0].metric} vs size; bubble area: API cost per item (USD)")
    return footnote


def _ranking(ax: Any, rows: Sequence[PlotRow]) -> str | None:
    ranked = [r for r in ranking(rows) if r.score is not None]
    if not ranked:
        raise _NothingToDraw(f"no arm has {rows[0].metric}")
    ranked.reverse()  # barh draws bottom-up: best on top
    ys = range(len(ranked))
    errors = [
        [r.score - r.low if r.low is not None and r.score is not None else 0.0 for r in ranked],
        [r.high - r.score if r.high is not None and r.score is not None else 0.0 for r in ranked],
    ]
    colors = ["C0" if r.local else "C1" for r in ranked]
    ax.barh(list(ys), [r.score for r in ranked], xerr=errors, color=colors, capsize=3)
    ax.set_yticks(list(ys), [f"{r.label} ({r.tasks} tasks)" if r.tasks > 1 else r.label
                             for r in ranked], fontsize=8)  # fmt: skip
    ax.set_xlabel(_metric_label(rows) + (" ; several tasks: item-weighted" if
                  any(r.tasks > 1 for r in ranked) else ""))  # fmt: skip
    ax.set_title(f"Overall ranking by {rows[0].metric}")
    from matplotlib.patches import Patch

    ax.legend(handles=[Patch(color="C0", label="local model"),
                       Patch(color="C1", label="API / callable")], fontsize=8)  # fmt: skip
    unscored = [r.label for r in ranking(rows) if r.score is None]
    return f"no {rows[0].metric} for: " + ", ".join(unscored) if unscored else None


def _grouped(ax: Any, groups: Sequence[str], series: dict[str, list[float | None]],
             errors: dict[str, list[Any]] | None = None) -> None:  # fmt: skip
    """Bars: one group per `groups` entry, one bar per series (None: no bar)."""
    width = 0.8 / max(len(series), 1)
    for i, (name, values) in enumerate(series.items()):
        xs = [g + (i - (len(series) - 1) / 2) * width for g in range(len(groups))]
        keep = [j for j, v in enumerate(values) if v is not None]
        err = None
        if errors is not None:
            low = [errors[name][j][0] for j in keep]
            high = [errors[name][j][1] for j in keep]
            err = [low, high]
        ax.bar([xs[j] for j in keep], [values[j] for j in keep], width, label=name,
               yerr=err, capsize=2)  # fmt: skip
    ax.set_xticks(range(len(groups)), groups, fontsize=8, rotation=15 if len(groups) > 4 else 0)
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8)


def _breakdown(
    ax: Any, rows: Sequence[PlotRow], table: dict[str, list[float | None]]
) -> str | None:
    if not table:
        raise _NothingToDraw("no breakdown metric in any run")
    several = len({r.task for r in rows}) > 1
    groups = [f"{r.label} [{r.task}]" if several else r.label for r in rows]
    _grouped(ax, groups, table)
    ax.set_ylabel("share of items (0-1)")
    ax.set_title("Score breakdown per model")
    return None


def _tasks(ax: Any, rows: Sequence[PlotRow]) -> str | None:
    table = per_task(rows)
    labels = list(dict.fromkeys(r.label for r in rows))
    series: dict[str, list[float | None]] = {}
    errors: dict[str, list[Any]] = {}
    for label in labels:
        cells = [table[task].get(label, (None, None, None)) for task in table]
        series[label] = [score for score, _, _ in cells]
        errors[label] = [_spread(cell) for cell in cells]
    if all(v is None for values in series.values() for v in values):
        raise _NothingToDraw(f"no task has {rows[0].metric}")
    _grouped(ax, list(table), series, errors)
    ax.set_ylabel(_metric_label(rows))
    ax.set_title(f"{rows[0].metric} per task" + (" and model" if len(labels) > 1 else ""))
    return None
