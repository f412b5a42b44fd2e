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
    """Loads of the weights in this process (0: everything came from the cache, or an API; 2+:
    a model unloaded in a sweep and needed again, see `residency`)."""
    load_time_s: float | None
    """Seconds to load the weights (and build the engine, capture CUDA graphs), as the backend
    timed it (else the engine's load window), summed over this process's loads; None when
    never loaded."""
    model_size_bytes: int | None = None
    """Bytes of the weight files on disk; None for API backends."""
    peak_vram_bytes: int | None = None
    """Peak GPU memory allocated by this process since the model's load
    (torch.cuda.max_memory_allocated; the transformers backend resets the peak statistics at
    each load with no other model resident on its device, so with one model resident at a
    time it is that model's own; with others resident the running maximum is kept, shared,
    and `backend_info.peak_vram_shared_with` names them; the largest over its loads); None
    on the CPU and for backends that do not report it (vLLM)."""
    parameters: int | None = None
    """Parameter count of the model: of the loaded model, else read from its checkpoint's
    files without loading it (`parameters_source` says which); None for API backends or
    files that do not say."""
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
    residency: list[dict[str, Any]] = field(default_factory=list)
    """Each time the model was resident in this process, in order: `loaded` and `unloaded`
    (event numbers from one counter per worker for all its models, so model a's `unloaded`
    below model b's `loaded` means a was released before b loaded; `unloaded` None: resident
    until session end), `freed` (after an unload, whether the backend's model object was
    garbage-collected: True/False; None when not checked), `load_time_s` and
    `peak_vram_bytes` (bytes, None on the CPU) of that stay. Empty when never loaded."""
    backend_info: dict[str, Any] = field(default_factory=dict)
    """Everything else the backend reports: identity (model id, revision or weights hash,
    dtype, chat template hash), device, and backend-specific settings."""
    parameters_source: str | None = None
    """Where `parameters` came from: "loaded model" (the loaded weights' `numel` sum),
    "safetensors header" (the tensor shapes in the checkpoint's safetensors headers: exact,
    read without loading), "config estimate" (computed from config.json for llama, mistral,
    qwen2 and qwen3 layouts); None when unknown."""
    vram_check: str | None = None
    """The VRAM fit check of this model (`--llmeval-vram-check`, on by default), on one line:
    "fits: needs ~X GB (how), cuda:N has Y GB free", the skip reason, or "not checked: ..."
    (a CPU or remote model, nothing to estimate from, no free-memory reading); None when the
    check was off. GB are 1e9 bytes."""
    skipped_reason: str | None = None
    """Why this model's items were skipped without loading it: its estimated memory exceeds
    the free memory of its GPU (both numbers named); None when it was not skipped."""
    items_skipped: int = 0
    """Items of this model on this worker skipped because of `skipped_reason`."""
    smoke_items: int = 0
    """Items of this model tried on this worker as its smoke run (`--llmeval-smoke`: the
    first item of each task, before any full batch, and the task's next ones, up to 3, while
    an item fails with its own error such as a prompt too long); 0 without a smoke run."""
    smoke_failure: str | None = None
    """Why this model failed its smoke run (it could not load, every smoke request errored,
    or no smoke output could be parsed); its remaining items errored at once (counted in
    `items_errored`). None when it passed or had no smoke run."""

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
    `model X did not load (N items errored): <error>` (distinct errors of one model joined);
    one per model stopped by its smoke run: `model X failed the smoke run (N items errored):
    <reason>`."""
    errors: dict[tuple[str, str], dict[str, None]] = {}
    items: dict[tuple[str, str], int] = {}
    for load in loads:
        for what, text in (
            ("did not load", load.error),
            ("failed the smoke run", load.smoke_failure),
        ):
            if text is not None:
                key = (load.model, what)
                errors.setdefault(key, {})[text] = None
                items[key] = items.get(key, 0) + load.items_errored
    lines = []
    for (model, what), texts in errors.items():
        count = items[(model, what)]
        lines.append(
            f"model {model} {what} ({count} item{'' if count == 1 else 's'} errored): "
            + "; ".join(texts)
        )
    return lines


def load_skips(loads: Sequence[ModelLoad]) -> list[str]:
    """One line per model whose items were skipped because it does not fit its GPU:
    `<reason> (N items skipped)`."""
    reasons: dict[str, str] = {}
    items: dict[str, int] = {}
    for load in loads:
        if load.skipped_reason is not None:
            reasons.setdefault(load.model, load.skipped_reason)
            items[load.model] = items.get(load.model, 0) + load.items_skipped
    return [
        f"{reason} ({items[model]} item{'' if items[model] == 1 else 's'} skipped)"
        for model, reason in reasons.items()
    ]


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
