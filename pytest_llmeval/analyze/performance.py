"""Speed, energy and token figures of one task x model, from the work done in this run.

Only items generated in this run count (`cached is False`): an item served from the
generation cache cost no model time, energy or money now, and the figures its first run
measured describe another run (and another batch). Cached items are counted apart
(`Metrics.cached`); a run that generated nothing has null speed and energy with a reason.

Throughput divides generated tokens by the summed wall time of the distinct batches that
produced them, so the items of one batch are not counted N times. A backend that cannot
count tokens leaves them None: then the token totals and tok/s are null, never a guess.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pytest_llmeval.analyze.cost import NO_TOKEN_COUNTS
from pytest_llmeval.analyze.record import ItemRecord
from pytest_llmeval.analyze.stats import percentile

ALL_CACHED = "all items cached: no generation this run"
BATCH_WALL_PREFIX = "batch wall time"
"""How a backend's `latency_method` starts when it could only give an item its batch's wall
time (vLLM versions without per-request metrics): not the item's own latency."""
NOTHING_GENERATED = "no items generated"


def generated(records: Sequence[ItemRecord]) -> list[ItemRecord]:
    """The records whose generation was made in this run."""
    return [r for r in records if r.cached is False]


def token_totals(records: Sequence[ItemRecord]) -> tuple[int | None, int | None]:
    """Input and output tokens of the items generated in this run (0 when none was); None
    when any of them has no count (a backend that cannot count tokens)."""
    made = generated(records)
    return total_tokens([r.tokens_in for r in made]), total_tokens([r.tokens_out for r in made])


def total_tokens(counts: Sequence[int | None]) -> int | None:
    """The sum of token counts; None when any is unknown."""
    if any(count is None for count in counts):
        return None
    return sum(int(count or 0) for count in counts)


def _nothing_generated(records: Sequence[ItemRecord]) -> str:
    return ALL_CACHED if any(r.cached is True for r in records) else NOTHING_GENERATED


def speed(records: Sequence[ItemRecord]) -> dict[str, Any]:
    """The latency, token and throughput fields of `Metrics`."""
    made = generated(records)
    timed_items = [r for r in made if r.latency_s is not None]
    own = [r for r in timed_items if not (r.latency_method or "").startswith(BATCH_WALL_PREFIX)]
    latencies = [float(r.latency_s) for r in own if r.latency_s is not None]
    tokens_in, tokens_out = token_totals(records)
    batch_walls = {b: float(wall or 0.0) for b, (wall, _, _) in batches_of(made).items()}
    generation_s = sum(batch_walls.values())
    reason = None
    if not made:
        reason = _nothing_generated(records)
    elif tokens_out is None:
        reason = NO_TOKEN_COUNTS
    timed = generation_s > 0
    return {
        "latency_p50": percentile(latencies, 50),
        "latency_p95": percentile(latencies, 95),
        "latency_method": _latency_method(own, len(timed_items) - len(own), made),
        "tokens_in": tokens_in,
        "tokens_out": tokens_out,
        "padding_share": padding_share(made),
        "generation_s": round(generation_s, 4),
        "batches": len(batch_walls),
        "tokens_per_s": tokens_out / generation_s if timed and tokens_out is not None else None,
        "items_per_min": round(len(made) * 60 / generation_s, 3) if timed else None,
        "speed_reason": reason,
        "cached": sum(1 for r in records if r.cached is True),
        "generated": len(made),
    }


Batch = tuple[float | None, float | None, float | None]
"""A generation batch's wall seconds, GPU joules and peak watts."""


def batches_of(made: Sequence[ItemRecord]) -> dict[str, Batch]:
    """The distinct batches of these records, by id: each item's, and each of a sampled
    item's candidates' (its candidates may span several batches)."""
    found: dict[str, Batch] = {}
    for r in made:
        if r.batch_id:
            found[r.batch_id] = (r.batch_wall_s, r.batch_energy_j, r.batch_peak_w)
        for s in r.samples or ():
            if s.batch_id:
                found[s.batch_id] = (s.batch_wall_s, s.batch_energy_j, s.batch_peak_w)
    return found


def padding_share(records: Sequence[ItemRecord]) -> float | None:
    """Pad tokens over all prompt tokens fed to the model (padding included), over the records
    whose backend counted both; None when there is none (nothing padded was generated)."""
    padded = [r for r in records if r.pad_tokens is not None and r.tokens_in is not None]
    pads = sum(int(r.pad_tokens or 0) for r in padded)
    fed = pads + sum(int(r.tokens_in or 0) for r in padded)
    return round(pads / fed, 6) if fed else None


def _latency_method(
    own: Sequence[ItemRecord], copied: int, made: Sequence[ItemRecord]
) -> str | None:
    """The method of the percentiles: the per-item one, saying how many items had only their
    batch's wall time (left out: a copy is not an item's latency); with no per-item latency
    at all, the batch-wall method itself (the percentiles are then None)."""
    method = next((r.latency_method for r in own if r.latency_method), None)
    if method is None:
        return next((r.latency_method for r in made if r.latency_method), None)
    if copied:
        return f"{method}; {copied} items with only their batch's wall time left out"
    return method


def energy(records: Sequence[ItemRecord]) -> dict[str, Any]:
    """The energy fields of `Metrics`, over the distinct batches of this run (None with a
    reason when unmeasured or when nothing was generated)."""
    made = generated(records)
    _, tokens_out = token_totals(records)
    batches = batches_of(made)
    generation_s = sum(float(wall or 0.0) for wall, _, _ in batches.values())
    values = [joules for _, joules, _ in batches.values()]
    known = bool(values) and all(v is not None for v in values)
    energy_j = sum(float(v) for v in values if v is not None) if known else None
    reason = None
    if not made:
        reason = _nothing_generated(records)
    elif energy_j is None:
        reason = next((r.energy_reason for r in made if r.energy_reason), None)
        reason = reason or ("no generation batches" if not batches else "energy not measured")
    peaks = [float(peak) for _, _, peak in batches.values() if peak]
    cpu = [r.cpu_energy_j for r in made if r.batch_id]
    cpu_known = bool(cpu) and all(v is not None for v in cpu)
    return {
        "energy_wh": None if energy_j is None else round(energy_j / 3600, 6),
        "energy_reason": reason,
        "energy_method": next((r.energy_method for r in made if r.energy_method), None),
        "j_per_token": None if energy_j is None or not tokens_out else energy_j / tokens_out,
        "avg_power_w": None if energy_j is None or generation_s <= 0 else energy_j / generation_s,
        "peak_power_w": max(peaks) if peaks else None,
        "cpu_energy_wh": round(sum(float(v or 0) for v in cpu) / 3600, 6) if cpu_known else None,
    }
