"""Energy of one generation batch, from an EnergyMeter window, attributed to its items; and
the energy of a model load, from its own window.

GPU energy (NVML counter or power sampling) and CPU package energy (RAPL) are kept apart.
A batch's energy is split over its items by generated-token share; when a device kind is not
measurable the item's value is None and `energy_reason` says why (never a guessed 0). A remote
backend's items get no energy at all: "remote backend".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from pytest_llmeval.backends import GenerationResult
from pytest_llmeval.run.meters import ATTRIBUTION_METHOD, EnergyReading, attribute_by_tokens


def _total(readings: Sequence[EnergyReading]) -> tuple[float | None, str | None]:
    """Sum over devices; None with the first reason when any device has no value."""
    if not readings:
        return None, None
    missing = [r for r in readings if r.energy_j is None]
    if missing:
        return None, f"{missing[0].device}: {missing[0].reason}"
    return sum(float(r.energy_j or 0.0) for r in readings), None


def with_energy(
    results: Sequence[GenerationResult],
    readings: Sequence[EnergyReading],
    unavailable: Sequence[EnergyReading],
    notes: Sequence[str] = (),
) -> list[GenerationResult]:
    """`results` with per-item energy attributed from one batch's readings; `notes` (shared
    or undeclared devices, from the meter) are added to the method."""
    gpu = [r for r in readings if r.device.startswith("gpu")]
    cpu = [r for r in readings if not r.device.startswith("gpu")]
    gpu_j, gpu_reason = _total(gpu)
    cpu_j, _ = _total(cpu)
    if not gpu:
        missing = [r for r in unavailable if r.device.startswith("gpu")]
        gpu_reason = missing[0].reason if missing else "no GPU energy source"
    counts = [result.tokens_out for result in results]
    # Without token counts (a callable that reports none) no share is known: split equally.
    tokens = [0 if count is None else count for count in counts]
    if any(count is None for count in counts):
        tokens = [0] * len(counts)
    gpu_shares = attribute_by_tokens(gpu_j, tokens)
    cpu_shares = attribute_by_tokens(cpu_j, tokens)
    avg = [r.avg_w for r in gpu if r.avg_w is not None]
    peak = [r.peak_w for r in gpu if r.peak_w is not None]
    sources = sorted({r.source for r in readings if r.energy_j is not None})
    method = f"{ATTRIBUTION_METHOD} ({', '.join(sources)})" if sources else None
    if method and any(count is None for count in counts):
        method = f"equal split over the batch, tokens not counted ({', '.join(sources)})"
    if method and notes:
        method = f"{method}; {'; '.join(notes)}"
    return [
        replace(
            result,
            energy_j=None if share is None else round(share, 6),
            cpu_energy_j=None if cpu_share is None else round(cpu_share, 6),
            energy_reason=gpu_reason,
            energy_method=method,
            batch_energy_j=None if gpu_j is None else round(gpu_j, 6),
            batch_avg_w=round(sum(avg), 3) if avg else _average_w(gpu_j, result.batch_wall_s),
            batch_peak_w=round(sum(peak), 3) if peak else None,
        )
        for result, share, cpu_share in zip(results, gpu_shares, cpu_shares, strict=True)
    ]


def _average_w(joules: float | None, seconds: float) -> float | None:
    if joules is None or seconds <= 0:
        return None
    return round(joules / seconds, 3)


REMOTE = "remote backend"
NO_LOAD = "the backend has no load(): its model, if any, loads inside the first batch"


def remote(results: Sequence[GenerationResult]) -> list[GenerationResult]:
    """`results` of a remote backend (an API, a callable): no local energy is theirs."""
    return [
        replace(
            result,
            energy_j=None,
            cpu_energy_j=None,
            energy_reason=REMOTE,
            energy_method=None,
            batch_energy_j=None,
            batch_avg_w=None,
            batch_peak_w=None,
        )
        for result in results
    ]


def load_energy(
    readings: Sequence[EnergyReading], unavailable: Sequence[EnergyReading]
) -> dict[str, Any]:
    """The `ModelLoad` energy fields of a load window's readings."""
    gpu = [r for r in readings if r.device.startswith("gpu")]
    gpu_j, reason = _total(gpu)
    cpu_j, _ = _total([r for r in readings if not r.device.startswith("gpu")])
    if not gpu:
        missing = [r for r in unavailable if r.device.startswith("gpu")]
        reason = missing[0].reason if missing else "no GPU energy source"
    return {
        "load_energy_j": None if gpu_j is None else round(gpu_j, 6),
        "load_cpu_energy_j": None if cpu_j is None else round(cpu_j, 6),
        "load_energy_reason": reason,
    }
