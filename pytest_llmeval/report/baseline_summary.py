"""This run against a saved run (`--llmeval-baseline`), per task x arm, for people: the
terminal and summary.md show the same table."""

from __future__ import annotations

from collections.abc import Mapping

from tabulate import tabulate

from pytest_llmeval.analyze.metrics import Metrics


def baseline_table(summaries: Mapping[tuple[str, str], Metrics], tablefmt: str = "simple") -> str:
    """One row per task x arm compared with the saved run; empty without one."""
    rows: list[list[object]] = []
    for (task, arm), m in summaries.items():
        if m.baseline_run is None:
            continue
        if m.baseline_n is None:
            rows.append([task, arm, "-", "-", "-", "-", "-", "-", "-", m.baseline_reason or "-"])
            continue
        ci = m.baseline_delta_ci95
        delta = "-" if m.baseline_delta is None else f"{m.baseline_delta:+.3f}"
        rows.append(
            [task, arm, f"{m.baseline_arm}", m.baseline_n,
             f"{m.baseline_lacks} / {m.baseline_only}", _f(m.baseline_accuracy),
             delta + (f" [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else ""), _f(m.regression),
             _f(m.baseline_p_value, "{:.3g}"), f"{m.baseline_wins}/{m.baseline_losses}"]
        )  # fmt: skip
    if not rows:
        return ""
    headers = ["task", "arm", "saved arm", "paired", "only here / only saved", "saved acc.",
               "delta [95% CI]", "regression", "p McNemar", "W/L"]  # fmt: skip
    return tabulate(rows, headers, tablefmt, disable_numparse=True)


def baseline_legend(run: str) -> str:
    """How to read the table (one paragraph)."""
    return (
        f"Against the saved run {run}, on the items both ran: delta = this run's accuracy "
        "minus the saved run's, with Newcombe's paired 95% interval; regression = the largest "
        "drop that interval allows (gate: regression<=0.02); items only one side ran are "
        "counted apart, not paired."
    )


def _f(value: float | None, pattern: str = "{:.3f}") -> str:
    return "-" if value is None else pattern.format(value)
