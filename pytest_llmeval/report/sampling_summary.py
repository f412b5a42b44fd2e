"""Sampled tasks for people: random / majority / reranked / oracle side by side per task x
model, and samples.parquet (one row per item x candidate). Controller only; pure but for the
writer's pandas import."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tabulate import tabulate

from pytest_llmeval.analyze.metrics import Metrics
from pytest_llmeval.analyze.record import ItemRecord

SAMPLE_COLUMNS = [
    "task", "id", "arm", "model", "variant", "sample", "seed", "target", "response",
    "extracted", "score", "correct", "tokens_out", "latency_s", "mean_logprob", "cached",
    "error", "majority", "selected", "followed",
]  # fmt: skip


def sampling_table(summaries: Mapping[tuple[str, str], Metrics], tablefmt: str = "simple") -> str:
    """Per sampled task x model: n, random (`mean@n`), majority, reranked and oracle, each
    with its 95% interval, pass@k and self-consistency; empty when nothing was sampled."""
    rows = [
        [task, model, m.samples_n, _with_ci(m.mean_at_n, m.mean_at_n_ci95),
         _with_ci(m.maj_at_n, m.maj_at_n_ci95), _with_ci(m.rerank_at_n, m.rerank_at_n_ci95),
         _with_ci(m.oracle_at_n, m.oracle_at_n_ci95),
         ", ".join(f"{k}: {v:.3f}" for k, v in (m.pass_at_k or {}).items()),
         "-" if m.self_consistency is None else f"{m.self_consistency:.3f}"]
        for (task, model), m in summaries.items()
        if m.samples_n is not None
    ]  # fmt: skip
    if not rows:
        return ""
    headers = ["task", "model", "n", "random (mean@n)", "majority (maj@n)", "reranked",
               "oracle (pass@n)", "pass@k", "self-consistency"]  # fmt: skip
    return tabulate(rows, headers, tablefmt, disable_numparse=True)


def sampling_legend() -> str:
    """How to read the sampling table (one paragraph)."""
    return (
        "random: the expected accuracy of one random candidate (cluster-robust 95% interval, "
        "items as clusters); majority: the majority answer of the n candidates (ties to the "
        "answer voted first); reranked: the task selector's pick; oracle: any candidate "
        "right; pass@k: unbiased estimator (Chen et al. 2021); intervals of the others: "
        "bootstrap over items. An errored item counts as n wrong candidates."
    )


def sample_rows(records: Sequence[ItemRecord]) -> list[dict[str, Any]]:
    """One row per candidate of every sampled item."""
    rows = []
    for r in records:
        if not r.samples or r.votes is None:
            continue
        followed = _followed_index(r)
        for s in r.samples:
            rows.append(
                {
                    "task": r.task, "id": r.id, "arm": r.arm or r.model, "model": r.model,
                    "variant": r.variant, "sample": s.index, "seed": s.seed,
                    "target": r.target, "response": s.response, "extracted": s.extracted,
                    "score": s.score, "correct": s.correct, "tokens_out": s.tokens_out,
                    "latency_s": s.latency_s, "mean_logprob": s.mean_logprob,
                    "cached": s.cached, "error": s.error,
                    "majority": r.votes.majority is not None and s.extracted == r.votes.majority,
                    "selected": r.votes.selected == s.index, "followed": followed == s.index,
                }
            )  # fmt: skip
    return rows


def _followed_index(record: ItemRecord) -> int | None:
    """The candidate whose text is the item's response (the one its verdict follows)."""
    for s in record.samples or ():
        if s.response == record.response and s.extracted == record.extracted:
            return s.index
    return None


def write_samples_parquet(records: Sequence[ItemRecord], path: Path) -> bool:
    """Write samples.parquet when some item drew several candidates; returns whether it did."""
    rows = sample_rows(records)
    if not rows:
        return False
    import pandas as pd  # controller only, at the end of a sampled run

    pd.DataFrame(rows, columns=SAMPLE_COLUMNS).to_parquet(path, index=False)
    return True


def _with_ci(value: float | None, interval: Sequence[float] | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" + (f" [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else "")
