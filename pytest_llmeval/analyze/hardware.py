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
    """Why the backend could not be created; its items are errors with this message."""
    model_loads: int
    """Loads of the weights in this process (0: everything came from the cache, or an API)."""
    load_time_s: float | None
    """Seconds to load the weights (and build the engine); None when never loaded."""
    model_size_bytes: int | None = None
    """Bytes of the weight files on disk; None for API backends."""
    peak_vram_bytes: int | None = None
    """Peak GPU memory allocated by this process (torch.cuda.max_memory_allocated);
    None on the CPU."""
    parameters: int | None = None
    """Parameter count of the loaded model; None for API backends."""
    energy: dict[str, Any] | None = None
    """The worker's energy meter: sources in use and why others are unavailable."""
    backend_info: dict[str, Any] = field(default_factory=dict)
    """Everything else the backend reports: identity (model id, revision or weights hash,
    dtype, chat template hash), device, and backend-specific settings."""

    @classmethod
    def from_info(
        cls, worker: str, model: str, info: Mapping[str, Any], energy: dict[str, Any] | None
    ) -> ModelLoad:
        """A load record from a backend's `info()` (its typed keys lifted out)."""
        rest = {k: v for k, v in info.items() if k not in _TYPED}
        return cls(
            worker=worker,
            model=model,
            error=None,
            model_loads=int(info.get("model_loads") or 0),
            load_time_s=info.get("load_time_s"),
            model_size_bytes=info.get("model_size_bytes"),
            peak_vram_bytes=info.get("peak_vram_bytes"),
            parameters=info.get("parameters"),
            energy=energy,
            backend_info=rest,
        )


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
