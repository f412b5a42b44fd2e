"""Human-readable summaries of a run: summary.md, the terminal table and the agreement table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from tabulate import tabulate

from pytest_llmeval.analyze.gates import GateResult
from pytest_llmeval.analyze.metrics import Metrics
from pytest_llmeval.report.baseline_summary import baseline_legend, baseline_table
from pytest_llmeval.report.compare_summary import comparison_table, flip_lines, legend
from pytest_llmeval.report.envelope import RunReport
from pytest_llmeval.report.sampling_summary import sampling_legend, sampling_table
from pytest_llmeval.report.score_breakdown import (
    breakdown_table,
    composite_legend,
    label_sections,
)

_VERDICT = {True: "ok", False: "FAIL", None: "not evaluated"}


def summary_markdown(
    report: RunReport,
    summaries: Mapping[tuple[str, str], Metrics],
    gate_results: Sequence[GateResult],
) -> str:
    """summary.md: the run, then per task x model tables of quality, speed and cost."""
    machine = report.machine
    gpus = machine.gpus
    lines = [
        f"# llmeval run {report.run_id}",
        "",
        f"- started {report.started}, finished {report.finished}",
        f"- command: `{' '.join(report.argv)}`",
        f"- machine: {machine.cpu} x{machine.cpu_count}, GPUs: "
        + (", ".join(gpus.names) or f"none ({gpus.reason})"),
        f"- exit status {report.exit_status}",
        "",
        "## Quality",
        "",
    ]
    quality = [
        [task, model, f"{m.n}/{m.task_rows}" + (" partial" if m.partial else ""),
         _fmt(m.accuracy, "{:.3f}"), _ci(m.accuracy_ci95),
         _fmt(m.accuracy_answered, "{:.3f}"), _fmt(m.accuracy_strict, "{:.3f}"),
         _fmt(m.mean_score, "{:.3f}"), _fmt(m.parse_rate, "{:.3f}"), m.n_errors,
         "; ".join(f"{g.gate.text} {_VERDICT[g.passed]}"
                   for g in gate_results if g.task == task and g.model == model) or "-"]
        for (task, model), m in summaries.items()
    ]  # fmt: skip
    headers = ["task", "model", "n", "accuracy", "95% CI", "answered acc.", "strict acc.",
               "mean score", "parse rate", "errors", "gates"]  # fmt: skip
    lines += [
        # keep "0.800" as written: fixed decimals line up
        tabulate(quality, headers, "github", disable_numparse=True),
        "",
        "accuracy: share of all selected items that passed (an error counts as not passed); "
        "answered acc.: the same over items without error; strict acc.: only `#### n` "
        "answers count; mean score: mean of the item scores (partial credit).",
    ]
    own = breakdown_table(summaries)
    if own:
        lines += ["", "## Components, task metrics, composites", "", own]
        formulas = composite_legend(report)
        lines += ["", "Composites:", *formulas] if formulas else []
        lines += ["", "Each interval: 95% percentile bootstrap over items (2,000 resamples, "
                  "seed 0); gate any of them by name, e.g. `--gate task:name>=0.5`."]  # fmt: skip
    labelled = label_sections(summaries)
    if labelled:
        lines += ["", "## Labels", *labelled]
    cost: list[list[object]] = [
        [task, model, _fmt(m.latency_p50, "{:.2f}"), _fmt(m.latency_p95, "{:.2f}"),
         _fmt(m.tokens_per_s, "{:.1f}"), _fmt(m.items_per_min, "{:.1f}"),
         _fmt(m.tokens_in, "{}"), _fmt(m.tokens_out, "{}"), _energy(m),
         _fmt(m.j_per_token, "{:.3f}"),
         _fmt(m.avg_power_w, "{:.0f}"), _fmt(m.peak_power_w, "{:.0f}"),
         _fmt(m.peak_vram_gb, "{:.2f}"), _fmt(m.load_time_s, "{:.1f}"),
         _fmt(m.cost_usd, "{:.4f}")]
        for (task, model), m in summaries.items()
    ]  # fmt: skip
    # Agreement runs: the reference backend's own figures, on a row of their own.
    cost += [
        _reference_cost_row(task, model, m)
        for (task, model), m in summaries.items()
        if m.reference_model is not None
    ]
    headers = ["task", "model", "p50 s", "p95 s", "tok/s", "items/min", "tokens in",
               "tokens out", "energy Wh", "J/token", "avg W", "peak W", "peak VRAM GB",
               "load s", "cost USD"]  # fmt: skip
    lines += [
        "",
        "## Latency, throughput, energy, cost",
        "",
        tabulate(cost, headers, "github", disable_numparse=True),
    ]
    lines += ["", "Speed, energy and cost cover the items generated in this run; cached "
              "items cost nothing now and are counted apart."]  # fmt: skip
    cached = [f"{task} [{model}] {m.cached}" for (task, model), m in summaries.items() if m.cached]
    if cached:
        lines += ["", "Cached items: " + ", ".join(cached)]
    speeds = sorted({str(m.speed_reason) for m in summaries.values() if m.speed_reason})
    if speeds:
        lines += ["", "No throughput: " + "; ".join(speeds)]
    reasons = sorted({str(m.energy_reason) for m in summaries.values() if m.energy_reason})
    if reasons:
        lines += ["", "Energy not measured: " + "; ".join(reasons)]
    against = baseline_table(summaries, "github")
    if against:
        saved = next(m.baseline_run for m in summaries.values() if m.baseline_run)
        lines += ["", "## Against the saved run", "", against, "", baseline_legend(str(saved))]
    sampled = sampling_table(summaries, "github")
    if sampled:
        lines += ["", "## Sampled candidates", "", sampled, "", sampling_legend()]
        if "samples" in report.files:
            lines += ["", f"Every candidate: {report.files['samples']}"]
    compared = [(key, m) for key, m in summaries.items() if m.agreement is not None]
    if compared:
        lines += ["", "## Backend agreement", "", agreement_table(compared, "github")]
    if report.comparisons:
        lines += ["", "## Arm comparisons", "", comparison_table(report.comparisons, "github")]
        lines += ["", legend(), "", *flip_lines(report.comparisons)]
        if "comparison" in report.files:
            lines += ["", f"Every item pair, side by side: {report.files['comparison']}"]
    return "\n".join(lines) + "\n"


def _reference_cost_row(task: str, model: str, m: Metrics) -> list[object]:
    """The speed columns of the cost table for an agreement run's reference backend."""
    row: list[object] = [
        task, f"{m.reference_model} (reference of {model})",
        _fmt(m.reference_latency_p50, "{:.2f}"), _fmt(m.reference_latency_p95, "{:.2f}"),
        _fmt(m.reference_tokens_per_s, "{:.1f}"), "-", _fmt(m.reference_tokens_in, "{}"),
        _fmt(m.reference_tokens_out, "{}"),
    ]  # fmt: skip
    return row + ["-"] * 7


def _energy(metrics: Metrics) -> str:
    return _fmt(metrics.energy_wh, "{:.4f}")


def _ci(interval: Sequence[float] | None) -> str:
    return "-" if not interval else f"{interval[0]:.3f}-{interval[1]:.3f}"


def summary_table(
    summaries: Mapping[tuple[str, str], Metrics], gate_results: Sequence[GateResult]
) -> str:
    """The tabulate table printed at the end of the session, one row per task x model."""
    rows = []
    for (task, model), metrics in summaries.items():
        gates = [g for g in gate_results if g.task == task and g.model == model]
        accuracy = metrics.accuracy
        ci = metrics.accuracy_ci95
        rows.append(
            [
                task,
                model,
                f"{metrics.n}/{metrics.task_rows}" + (" (partial)" if metrics.partial else ""),
                "-" if accuracy is None else f"{accuracy:.3f}",
                "-" if not ci else f"{ci[0]:.3f}-{ci[1]:.3f}",
                metrics.n_errors,
                _fmt(metrics.latency_p50, "{:.2f}s"),
                _fmt(metrics.latency_p95, "{:.2f}s"),
                _fmt(metrics.tokens_per_s, "{:.1f}"),
                ", ".join(f"{g.gate.text} {_VERDICT[g.passed]}" for g in gates) or "-",
            ]
        )
    headers = ["task", "model", "n", "accuracy", "95% CI", "errors", "p50", "p95", "tok/s", "gates"]
    table = tabulate(rows, headers=headers, tablefmt="simple")
    compared = [(key, m) for key, m in summaries.items() if m.agreement is not None]
    if compared:
        table += "\n\n" + agreement_table(compared)
    return table


def agreement_table(
    compared: Sequence[tuple[tuple[str, str], Metrics]], tablefmt: str = "simple"
) -> str:
    """Backend agreement per task: rates, kappa, similarity, each side's accuracy and errors,
    the assessment."""
    rows = []
    for (task, model), m in compared:
        ci = m.agreement_ci95 or [0.0, 0.0]
        rows.append(
            [
                task,
                f"{model} vs {m.reference_model}",
                f"{_fmt(m.agreement, '{:.3f}')} ({ci[0]:.3f}-{ci[1]:.3f})",
                _fmt(m.kappa, "{:.3f}") + f" (n={m.kappa_n})",
                _fmt(m.finegrain_agreement, "{:.3f}"),
                _fmt(m.finegrain_kappa, "{:.3f}"),
                _fmt(m.both_parse_rate, "{:.3f}"),
                _fmt(m.response_indel_similarity, "{:.3f}"),
                _fmt(m.reasoning_indel_similarity, "{:.3f}")
                + f" (n={m.reasoning_indel_similarity_n})",
                f"{_fmt(m.accuracy, '{:.3f}')} / {_fmt(m.reference_accuracy, '{:.3f}')}",
                f"{m.n_errors} / {m.reference_errors}",
                m.assessment.overall if m.assessment else "NO DATA",
            ]
        )
    headers = ["task", "backends", "agreement (95% CI)", "kappa", "fine-grained",
               "fine kappa", "both parsed", "resp. indel sim.", "reas. indel sim.", "accuracy",
               "errors", "assessment"]  # fmt: skip
    return tabulate(rows, headers=headers, tablefmt=tablefmt, disable_numparse=True)


def _fmt(value: float | int | None, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)
