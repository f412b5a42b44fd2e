"""Arm comparisons for people: the table per task, the flipped items side by side, and
comparison.parquet (one row per item x arm pair). Controller only; pure but for the writer's
pandas import."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tabulate import tabulate

from pytest_llmeval.analyze.compare import ArmComparison, ArmFailures, Pair, is_right

FLIPS_SHOWN = 10
"""Flipped items listed in the terminal (all of them are in comparison.parquet)."""


def comparison_table(comparisons: Sequence[ArmComparison], tablefmt: str = "simple") -> str:
    """Per task: the baseline row, then one row per candidate arm against it."""
    rows: list[list[object]] = []
    done: set[str] = set()
    for c in comparisons:
        if c.task not in done:
            done.add(c.task)
            rows.append(
                [c.task, f"{c.baseline} (baseline)", c.n, _fmt(c.baseline_accuracy, "{:.3f}"),
                 "-", "-", "-", "-", _failures(c.baseline_failures)]
            )  # fmt: skip
        unpaired = c.baseline_only + c.candidate_only
        p_values = _fmt(c.p_value_mcnemar, "{:.3g}")
        if c.p_value != c.p_value_mcnemar:
            p_values += f" / {_fmt(c.p_value, '{:.3g}')}"
        rows.append(
            [c.task, c.candidate, f"{c.n}" + (f" (+{unpaired} unpaired)" if unpaired else ""),
             _fmt(c.candidate_accuracy, "{:.3f}"), _delta(c.delta, c.delta_ci95), p_values,
             f"{c.wins}/{c.losses}/{c.ties}", _fmt(c.latency_delta_p50, "{:+.3f}s"),
             _failures(c.candidate_failures)]
        )  # fmt: skip
    headers = ["task", "arm", "n", "accuracy", "delta [95% CI]", "p McNemar / Holm",
               "W/L/T", "p50 latency diff", "failures"]  # fmt: skip
    table = tabulate(rows, headers, tablefmt, disable_numparse=True)
    scored = [c for c in comparisons if c.continuous]
    if scored:
        score_rows = [
            [c.task, f"{c.candidate} vs {c.baseline}", c.score_n,
             _delta(c.score_delta, c.score_delta_ci95), _fmt(c.score_p_value, "{:.3g}")]
            for c in scored
        ]  # fmt: skip
        headers = ["task", "arms", "n", "mean score delta [95% bootstrap CI]", "p Wilcoxon"]
        table += "\n\n" + tabulate(score_rows, headers, tablefmt, disable_numparse=True)
    return table


def flip_lines(comparisons: Sequence[ArmComparison], limit: int = 20) -> list[str]:
    """One line per comparison with flips: the ids won and lost (the first `limit` each)."""
    lines = []
    for c in comparisons:
        if c.won or c.lost:
            won = ", ".join(c.won[:limit]) + (" ..." if len(c.won) > limit else "")
            lost = ", ".join(c.lost[:limit]) + (" ..." if len(c.lost) > limit else "")
            lines.append(
                f"- {c.task}: {c.candidate} vs {c.baseline}: won {len(c.won)} ({won or '-'}); "
                f"lost {len(c.lost)} ({lost or '-'})"
            )
    return lines


def terminal_section(
    comparisons: Sequence[ArmComparison],
    pairs: Mapping[tuple[str, str], Sequence[Pair]],
    table_path: Path,
) -> list[str]:
    """The lines of the llmeval summary about arms: the table, then the flipped items."""
    if not comparisons:
        return []
    lines = ["", "Arms compared with the baseline arm (paired by item):"]
    lines += [comparison_table(comparisons), legend()]
    flips, total = flipped_table(pairs)
    if total:
        shown = f"first {FLIPS_SHOWN} of {total}" if total > FLIPS_SHOWN else f"all {total}"
        lines += ["", f"Flipped items ({shown}):", flips]
    lines.append(f"every item pair side by side: {table_path} (df[df.flipped])")
    return lines


def legend() -> str:
    """How to read the comparison table (one paragraph)."""
    return (
        "delta: candidate accuracy minus baseline accuracy on the paired items (items both "
        "arms ran), with Newcombe's paired 95% interval; p: exact McNemar on the items that "
        "flipped, Holm-adjusted when a task compares several arms; W/L/T: items the candidate "
        "won/lost/tied; p50 latency diff: median paired latency difference (items generated in "
        "this run); failures: errors (timeouts) / unparsed answers."
    )


def flipped_table(
    pairs: Mapping[tuple[str, str], Sequence[Pair]],
    limit: int = FLIPS_SHOWN,
    width: int = 48,
    tablefmt: str = "simple",
) -> tuple[str, int]:
    """The first `limit` flipped items side by side (responses cut to `width` characters, on
    one line) and how many flipped items there are in all."""
    flips = [
        (task, arm, b, c)
        for (task, arm), items in pairs.items()
        for b, c in items
        if is_right(b) != is_right(c)
    ]
    rows = [
        [b.id, f"{arm} {'won' if is_right(c) else 'lost'}", _cut(b.target, 12),
         _cut(b.response, width), _cut(c.response, width)]
        for task, arm, b, c in flips[:limit]
    ]  # fmt: skip
    headers = ["item", "candidate", "target", "baseline response", "candidate response"]
    return tabulate(rows, headers, tablefmt, disable_numparse=True), len(flips)


COMPARISON_COLUMNS = [
    "task", "id", "baseline_arm", "candidate_arm", "target",
    "baseline_score", "candidate_score", "baseline_correct", "candidate_correct",
    "baseline_outcome", "candidate_outcome", "baseline_extracted", "candidate_extracted",
    "baseline_response", "candidate_response", "baseline_latency_s", "candidate_latency_s",
    "flipped", "flip",
]  # fmt: skip


def comparison_rows(pairs: Mapping[tuple[str, str], Sequence[Pair]]) -> list[dict[str, Any]]:
    """One row per paired item and candidate arm (`flip`: `won`, `lost` or None)."""
    rows = []
    for (task, arm), items in pairs.items():
        for b, c in items:
            flipped = is_right(b) != is_right(c)
            rows.append(
                {
                    "task": task, "id": b.id, "baseline_arm": b.model, "candidate_arm": arm,
                    "target": b.target,
                    "baseline_score": b.score, "candidate_score": c.score,
                    "baseline_correct": is_right(b), "candidate_correct": is_right(c),
                    "baseline_outcome": b.outcome, "candidate_outcome": c.outcome,
                    "baseline_extracted": b.extracted, "candidate_extracted": c.extracted,
                    "baseline_response": b.response, "candidate_response": c.response,
                    "baseline_latency_s": b.latency_s, "candidate_latency_s": c.latency_s,
                    "flipped": flipped,
                    "flip": ("won" if is_right(c) else "lost") if flipped else None,
                }
            )  # fmt: skip
    return rows


def write_comparison_table(pairs: Mapping[tuple[str, str], Sequence[Pair]], path: Path) -> bool:
    """Write comparison.parquet when some task ran two arms; returns whether it did, so that
    `df[df.flipped]` lists the items where the arms differ."""
    rows = comparison_rows(pairs)
    if not rows:
        return False
    import pandas as pd  # controller only, at the end of a run with arms

    pd.DataFrame(rows, columns=COMPARISON_COLUMNS).to_parquet(path, index=False)
    return True


def _failures(f: ArmFailures) -> str:
    timeouts = f" ({f.timeouts} timeouts)" if f.timeouts else ""
    return f"{f.errors} err{timeouts} / {f.unparsed} unparsed"


def _delta(value: float | None, interval: Sequence[float] | None) -> str:
    if value is None:
        return "-"
    ci = f" [{interval[0]:+.3f}, {interval[1]:+.3f}]" if interval else ""
    return f"{value:+.3f}{ci}"


def _cut(text: str | None, width: int) -> str:
    if text is None:
        return "-"
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."


def _fmt(value: float | int | None, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)
