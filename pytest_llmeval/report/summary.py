"""Human-readable summaries of a run: summary.md, the terminal table and the agreement table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tabulate import tabulate

from pytest_llmeval.analyze.gates import GateResult


def summary_markdown(
    envelope: Mapping[str, Any],
    summaries: Mapping[tuple[str, str], Mapping[str, Any]],
    gate_results: Sequence[GateResult],
) -> str:
    """summary.md: the run, then per task x model tables of quality, speed and cost."""
    machine = envelope.get("machine", {})
    gpus = machine.get("gpus", {})
    lines = [
        f"# llmeval run {envelope.get('run_id')}",
        "",
        f"- started {envelope.get('started')}, finished {envelope.get('finished')}",
        f"- command: `{' '.join(envelope.get('argv', []))}`",
        f"- machine: {machine.get('cpu')} x{machine.get('cpu_count')}, GPUs: "
        + (", ".join(gpus.get("names", [])) or f"none ({gpus.get('reason')})"),
        f"- exit status {envelope.get('exit_status')}",
        "",
        "## Quality",
        "",
    ]
    quality = [
        [task, model, f"{m['n']}/{m['task_rows']}" + (" partial" if m["partial"] else ""),
         _fmt(m.get("accuracy"), "{:.3f}"), _ci(m.get("accuracy_ci95")),
         _fmt(m.get("parse_rate"), "{:.3f}"), m["n_errors"],
         "; ".join(f"{g.gate.text} {'ok' if g.passed else 'FAIL'}"
                   for g in gate_results if g.task == task and g.model == model) or "-"]
        for (task, model), m in summaries.items()
    ]  # fmt: skip
    lines.append(
        tabulate(
            quality,
            headers=["task", "model", "n", "accuracy", "95% CI", "parse rate", "errors", "gates"],
            tablefmt="github",
            disable_numparse=True,  # keep "0.800" as written: fixed decimals line up
        )
    )
    cost = [
        [task, model, _fmt(m.get("latency_p50"), "{:.2f}"), _fmt(m.get("latency_p95"), "{:.2f}"),
         _fmt(m.get("tokens_per_s"), "{:.1f}"), _fmt(m.get("items_per_min"), "{:.1f}"),
         m["tokens_in"], m["tokens_out"], _energy(m), _fmt(m.get("j_per_token"), "{:.3f}"),
         _fmt(m.get("avg_power_w"), "{:.0f}"), _fmt(m.get("peak_power_w"), "{:.0f}"),
         _fmt(m.get("peak_vram_gb"), "{:.2f}"), _fmt(m.get("load_time_s"), "{:.1f}"),
         _fmt(m.get("cost_usd"), "{:.4f}")]
        for (task, model), m in summaries.items()
    ]  # fmt: skip
    headers = ["task", "model", "p50 s", "p95 s", "tok/s", "items/min", "tokens in",
               "tokens out", "energy Wh", "J/token", "avg W", "peak W", "peak VRAM GB",
               "load s", "cost USD"]  # fmt: skip
    lines += [
        "",
        "## Latency, throughput, energy, cost",
        "",
        tabulate(cost, headers, "github", disable_numparse=True),
    ]
    reasons = sorted(
        {str(m["energy_reason"]) for m in summaries.values() if m.get("energy_reason")}
    )
    if reasons:
        lines += ["", "Energy not measured: " + "; ".join(reasons)]
    compared = [(key, m) for key, m in summaries.items() if m.get("agreement") is not None]
    if compared:
        lines += ["", "## Backend agreement", "", agreement_table(compared, "github")]
    return "\n".join(lines) + "\n"


def _energy(metrics: Mapping[str, Any]) -> str:
    return _fmt(metrics.get("energy_wh"), "{:.4f}")


def _ci(interval: Sequence[float] | None) -> str:
    return "-" if not interval else f"{interval[0]:.3f}-{interval[1]:.3f}"


def summary_table(
    summaries: Mapping[tuple[str, str], Mapping[str, Any]], gate_results: Sequence[GateResult]
) -> str:
    """The tabulate table printed at the end of the session, one row per task x model."""
    rows = []
    for (task, model), metrics in summaries.items():
        gates = [g for g in gate_results if g.task == task and g.model == model]
        accuracy = metrics.get("accuracy")
        ci = metrics.get("accuracy_ci95")
        rows.append(
            [
                task,
                model,
                f"{metrics['n']}/{metrics['task_rows']}"
                + (" (partial)" if metrics["partial"] else ""),
                "-" if accuracy is None else f"{accuracy:.3f}",
                "-" if not ci else f"{ci[0]:.3f}-{ci[1]:.3f}",
                metrics["n_errors"],
                _fmt(metrics.get("latency_p50"), "{:.2f}s"),
                _fmt(metrics.get("latency_p95"), "{:.2f}s"),
                _fmt(metrics.get("tokens_per_s"), "{:.1f}"),
                ", ".join(f"{g.gate.text} {'ok' if g.passed else 'FAIL'}" for g in gates) or "-",
            ]
        )
    headers = ["task", "model", "n", "accuracy", "95% CI", "errors", "p50", "p95", "tok/s", "gates"]
    table = tabulate(rows, headers=headers, tablefmt="simple")
    compared = [(key, m) for key, m in summaries.items() if m.get("agreement") is not None]
    if compared:
        table += "\n\n" + agreement_table(compared)
    return table


def agreement_table(
    compared: Sequence[tuple[tuple[str, str], Mapping[str, Any]]], tablefmt: str = "simple"
) -> str:
    """Backend agreement per task: rates, similarity, each side's accuracy, the assessment."""
    rows = []
    for (task, model), m in compared:
        ci = m.get("agreement_ci95") or [0.0, 0.0]
        rows.append(
            [
                task,
                f"{model} vs {m['reference_model']}",
                f"{m['agreement']:.3f} ({ci[0]:.3f}-{ci[1]:.3f})",
                _fmt(m.get("finegrain_agreement"), "{:.3f}"),
                _fmt(m.get("both_parse_rate"), "{:.3f}"),
                _fmt(m.get("response_similarity"), "{:.3f}"),
                _fmt(m.get("reasoning_similarity"), "{:.3f}"),
                " / ".join(_fmt(m.get(k), "{:.3f}") for k in ("accuracy", "reference_accuracy")),
                m["assessment"]["overall"],
            ]
        )
    headers = ["task", "backends", "agreement (95% CI)", "fine-grained", "both parsed",
               "resp. sim.", "reas. sim.", "accuracy", "assessment"]  # fmt: skip
    return tabulate(rows, headers=headers, tablefmt=tablefmt, disable_numparse=True)


def _fmt(value: float | None, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)
