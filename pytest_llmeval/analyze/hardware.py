"""Model loads: what each worker reports about the models it loaded, and the per-model summary
(load time, size on disk, peak VRAM) that joins a task x model's metrics."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_llmeval.analyze.record import SCHEMA_CONFIG

# Keys of a backend's `info()` that have their own field; the rest goes to `backend_info`.
_TYPED = ("model_loads", "load_time_s", "model_size_bytes", "peak_vram_bytes", "parameters")


@dataclass
class ModelLoad:
    """One model on one worker: whether and how long it loaded, or why it could not."""

    __pydantic_config__ = SCHEMA_CONFIG

    worker: str
    """xdist worker id (`gw0`) or `main`."""
    model: str
    """The model's name as given with `--model`."""
    error: str | None
    """Why the backend could not be created or its model could not load (exception type and
    message, on one line); None when it loaded or was never needed. Its items are errors."""
    model_loads: int
    """Loads of the weights in this process (0: everything came from the cache, or an API)."""
    load_time_s: float | None
    """Seconds to load the weights (and build the engine, capture CUDA graphs), as the backend
    timed it (else the engine's load window); None when never loaded."""
    model_size_bytes: int | None = None
    """Bytes of the weight files on disk; None for API backends."""
    peak_vram_bytes: int | None = None
    """Peak GPU memory allocated by this process (torch.cuda.max_memory_allocated);
    None on the CPU."""
    parameters: int | None = None
    """Parameter count of the loaded model; None for API backends."""
    load_energy_j: float | None = None
    """Joules: GPU energy of the model load (the backend's `load()`, metered in its own window
    before the first batch, on the GPUs the model occupies; this worker's share of a shared
    GPU); None with `load_energy_reason`."""
    load_cpu_energy_j: float | None = None
    """Joules: CPU package energy (RAPL, this worker's share) during the model load; None when
    not measured."""
    load_energy_reason: str | None = None
    """Why `load_energy_j` is None: "remote backend", model not loaded in this run, the model
    on the CPU, no GPU energy source, window too short, or a backend without `load()` (its
    load then falls inside its first batch); None when measured."""
    energy: dict[str, Any] | None = None
    """The energy meter of this model's devices (None for a remote backend, or when no batch
    ran): `sources` (source, device, `shared_by`: workers splitting the device, null when
    unknown), `unavailable` (device and reason), `notes` (shared or undeclared devices, as in
    `energy_method`), `counter_vs_sampling` (per GPU with an NVML energy counter and power
    readings: counter J and power-sampled J summed over the same windows, their `ratio`
    counter / sampled, and the number of `windows`), `min_window_s`, `sample_interval_s`,
    `attribution`."""
    items_errored: int = 0
    """Items of this model on this worker that errored because of `error` (the model could
    not be created or loaded); the first item's record carries the whole error, the others a
    short reference. 0 when the model loaded."""
    arm_state: dict[str, Any] | None = None
    """The arm's server state (an alias's `setup` / `teardown` / `patch` keys), None without
    one: `setup` and `teardown` (`module:function`), `patch` (the payload file's absolute
    path), `patch_sha256` (hex SHA-256 of its bytes, as sent to setup and in the cache key),
    `patch_bytes` (its size), `lock` (the lock file held from setup to teardown) and
    `applied_batches` (generations on this worker with the state applied; 0 when every item
    came from the cache)."""
    identity_sha256: str | None = None
    """SHA-256 (hex) of the backend identity this worker's cache keys were made with (what
    changes the outputs: backend, model id, weights, dtype, chat template and tokenizer
    hashes, versions, devices, server facts, the arm state's patch hash and setup source),
    canonical JSON as in the cache key; None when no item of the model reached the cache."""
    backend_info: dict[str, Any] = field(default_factory=dict)
    """Everything else the backend reports: identity (model id, revision or weights hash,
    dtype, chat template hash), device, and backend-specific settings."""

    @classmethod
    def from_info(
        cls,
        worker: str,
        model: str,
        info: Mapping[str, Any],
        energy: dict[str, Any] | None,
        load: Mapping[str, Any] | None = None,
    ) -> ModelLoad:
        """A load record from a backend's `info()` (its typed keys lifted out) and the
        engine's load window (`load_energy_j`, `load_cpu_energy_j`, `load_energy_reason`,
        `load_window_s`)."""
        rest = {k: v for k, v in info.items() if k not in _TYPED}
        load = load or {}
        load_time_s = info.get("load_time_s")
        if load_time_s is None:
            load_time_s = load.get("load_window_s")
        return cls(
            worker=worker,
            model=model,
            error=None,
            model_loads=int(info.get("model_loads") or 0),
            load_time_s=load_time_s,
            load_energy_j=load.get("load_energy_j"),
            load_cpu_energy_j=load.get("load_cpu_energy_j"),
            load_energy_reason=load.get("load_energy_reason"),
            model_size_bytes=info.get("model_size_bytes"),
            peak_vram_bytes=info.get("peak_vram_bytes"),
            parameters=info.get("parameters"),
            energy=energy,
            backend_info=rest,
        )


def load_failures(loads: Sequence[ModelLoad]) -> list[str]:
    """One line per model that did not load, however many workers and items it failed:
    `model X did not load (N items errored): <error>` (distinct errors of one model joined)."""
    errors: dict[str, dict[str, None]] = {}
    items: dict[str, int] = {}
    for load in loads:
        if load.error is not None:
            errors.setdefault(load.model, {})[load.error] = None
            items[load.model] = items.get(load.model, 0) + load.items_errored
    lines = []
    for model, texts in errors.items():
        count = items[model]
        lines.append(
            f"model {model} did not load ({count} item{'' if count == 1 else 's'} errored): "
            + "; ".join(texts)
        )
    return lines


def hardware_summary(model: str, loads: Sequence[ModelLoad]) -> dict[str, Any]:
    """Load time, model loads, size on disk and peak VRAM of `model` across its workers."""
    mine = [load for load in loads if load.model == model]

    def largest(values: list[float | int | None]) -> float | None:
        known = [float(v) for v in values if v is not None]
        return max(known) if known else None

    size = largest([load.model_size_bytes for load in mine])
    vram = largest([load.peak_vram_bytes for load in mine])
    return {
        "load_time_s": largest([load.load_time_s for load in mine]),
        "model_loads": sum(load.model_loads for load in mine),
        "model_size_gb": None if size is None else round(size / 1e9, 3),
        "peak_vram_gb": None if vram is None else round(vram / 1e9, 3),
    }
