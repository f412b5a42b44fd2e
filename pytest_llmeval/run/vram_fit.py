"""Will a local GPU model fit? Decided before its weights load (`--llmeval-vram-check`).

A model that does not fit would fail (CUDA out of memory) after minutes of loading, or
worse, start and then fail batch by batch; its items left to generate are skipped instead,
with one reason naming both numbers (checked right before the load: items served from the
generation cache never need the model to fit). The estimate, in GB (1e9 bytes, as the
report's `peak_vram_gb`):

- the alias's `vram_gb` when it has one (the user's own figure wins), else
- parameters (`backends/param_count.py`: safetensors headers, else the config) x bytes per
  parameter of the dtype the backend will load (float32 4, bfloat16 / float16 2, int8 / fp8 1,
  4-bit quantization 0.5; a pre-quantized checkpoint, AWQ/GPTQ/bitsandbytes, its
  config.json `quantization_config` bits / 8, whatever dtype it computes in) x `OVERHEAD` =
  1.2: the weights plus a fifth for what else a generating model holds: the CUDA context
  and allocator slack (about 0.3-0.5 GB), the KV cache and activations of a batch (tens of
  percent of a small model's weights, a few percent of a large one's at modest batch
  sizes). It is meant to catch a model that cannot fit (2x too large), not to shave the
  last gigabyte: a model near the line may still run out of memory, and
  `--llmeval-vram-check off` loads it anyway.

The free memory of each GPU the model occupies (`energy_devices()`: CUDA ordinals of this
process, mapped through CUDA_VISIBLE_DEVICES to NVML's indices) comes from NVML
(`nvmlDeviceGetMemoryInfo`), else from `torch.cuda.mem_get_info` when torch is already
imported. A tensor-parallel model's estimate is split evenly over its GPUs. Models on the CPU
and remote backends (API servers, callables) are not checked; neither is a GPU whose free
memory nothing can read (the model's `vram_check` note in the report says which).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pytest_llmeval.backends import Backend
from pytest_llmeval.backends.param_count import ParameterCount, count_parameters
from pytest_llmeval.run.energy_sources import nvml_indices_for_visible

OVERHEAD = 1.2
GB = 1e9
BYTES_PER_PARAMETER = {
    "float32": 4.0,
    "float16": 2.0,
    "bfloat16": 2.0,
    "int8": 1.0,
    "fp8": 1.0,
    "int4": 0.5,
    "awq": 0.5,
    "gptq": 0.5,
}
_SHORT = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}


@dataclass(frozen=True)
class Estimate:
    """The memory a model needs, in bytes, and how it was reckoned (for the reason)."""

    bytes: float
    how: str


@dataclass(frozen=True)
class FitCheck:
    """The check's outcome for one model: `skip` is the reason its items are skipped (None:
    it runs); `note` the one line the report keeps either way."""

    skip: str | None
    note: str


def gpu_devices(backend: Backend) -> tuple[int, ...] | None:
    """The CUDA ordinals `backend`'s model occupies; None for a CPU model or a remote one."""
    devices = getattr(backend, "energy_devices", None)
    where = devices() if callable(devices) else None
    return where if isinstance(where, tuple) and where else None


def load_dtype(backend: Backend, weights: Path | None) -> str:
    """The dtype the backend will load: its quantization (vLLM `quantization` option), else
    a pre-quantized checkpoint's (`checkpoint_quantization`: "awq 4-bit"), else its `dtype`;
    "auto" or None: the checkpoint's own half precision, or bfloat16 for a float32
    checkpoint (what vLLM's auto picks on a GPU)."""
    options = getattr(backend, "options", None)
    quantization = getattr(options, "quantization", None)
    if isinstance(quantization, str) and quantization:
        return quantization
    config: dict[str, Any] = {}
    if weights is not None:
        with contextlib.suppress(OSError, ValueError):
            config = json.loads((weights / "config.json").read_text(encoding="utf-8"))
    # Before the backend's dtype: an AWQ/GPTQ checkpoint says float16 (its compute dtype,
    # which the backend picks too) but its weights stay packed at their bits.
    if not isinstance(config, dict):
        config = {}
    quantized = checkpoint_quantization(config)
    if quantized is not None:
        return quantized
    dtype = getattr(backend, "dtype", None)
    if isinstance(dtype, str) and dtype not in ("", "auto"):
        return dtype
    stored = config.get("torch_dtype") or config.get("dtype")
    return stored if stored in ("float16", "bfloat16") else "bfloat16"


def checkpoint_quantization(config: dict[str, Any]) -> str | None:
    """A pre-quantized checkpoint's weights as `<method> <bits>-bit` (what the estimate
    reckons at bits / 8 bytes per parameter), from config.json's `quantization_config`:
    `bits` (GPTQ, AWQ; AutoAWQ's older `w_bit`), bitsandbytes' `load_in_4bit` /
    `load_in_8bit`; None when it has none or does not say its bits."""
    quant = config.get("quantization_config")
    if not isinstance(quant, dict):
        return None
    method = str(quant.get("quant_method") or "quantized")
    bits = quant.get("bits", quant.get("w_bit"))
    if quant.get("load_in_4bit") or quant.get("_load_in_4bit"):
        bits = 4
    elif quant.get("load_in_8bit") or quant.get("_load_in_8bit"):
        bits = 8
    if isinstance(bits, int) and not isinstance(bits, bool) and 0 < bits <= 16:
        return f"{method} {bits}-bit"
    return method if method in BYTES_PER_PARAMETER else None


def bytes_per_parameter(dtype: str) -> float | None:
    """Bytes per parameter of `dtype`: the table, or bits / 8 for `<method> <bits>-bit`."""
    if dtype in BYTES_PER_PARAMETER:
        return BYTES_PER_PARAMETER[dtype]
    bits = dtype.rsplit(" ", 1)[-1].removesuffix("-bit")
    return int(bits) / 8 if dtype.endswith("-bit") and bits.isdigit() else None


def estimate(vram_gb: float | None, count: ParameterCount | None, dtype: str) -> Estimate | None:
    """The estimate (module doc): the alias's `vram_gb`, else parameters x bytes x overhead;
    None when neither is known (or the dtype's size is not)."""
    if vram_gb is not None:
        return Estimate(float(vram_gb) * GB, "the alias's vram_gb")
    size = bytes_per_parameter(dtype)
    if count is None or size is None:
        return None
    # A pre-quantized checkpoint's bits: said to come from its files, not the backend.
    where = " from config.json" if dtype.endswith("-bit") else ""
    how = (
        f"{count.parameters / 1e9:.3g}e9 params x {size:g} B {_SHORT.get(dtype, dtype)}{where} "
        f"x {OVERHEAD:g}"
    )
    return Estimate(count.parameters * size * OVERHEAD, how)


def nvml_free(devices: Sequence[int]) -> list[int] | None:
    """Free bytes of each CUDA ordinal in `devices` from NVML (None: NVML cannot say)."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001 - no library or driver: NVML cannot say
        return None
    try:
        handles = {
            i: pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())
        }
        uuids = {i: str(pynvml.nvmlDeviceGetUUID(h)) for i, h in handles.items()}
        visible = nvml_indices_for_visible(os.environ.get("CUDA_VISIBLE_DEVICES"), uuids)
        if any(ordinal >= len(visible) for ordinal in devices):
            return None
        return [int(pynvml.nvmlDeviceGetMemoryInfo(handles[visible[o]]).free) for o in devices]
    except Exception:  # noqa: BLE001 - a driver that answers nothing useful
        return None
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()


def torch_free(devices: Sequence[int]) -> list[int] | None:
    """Free bytes from `torch.cuda.mem_get_info`, only when torch is imported already (this
    check must not be what imports it)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    try:
        return [int(torch.cuda.mem_get_info(ordinal)[0]) for ordinal in devices]
    except Exception:  # noqa: BLE001 - no CUDA, no device: torch cannot say
        return None


def check_fit(
    backend: Backend,
    parameters: ParameterCount | None,
    free: Callable[[Sequence[int]], list[int] | None] | None = None,
) -> FitCheck:
    """Whether `backend`'s model fits the free memory of its GPUs (`free`: the reading,
    NVML then torch by default; tests pass a fake one)."""
    name = backend.spec.name
    devices = gpu_devices(backend)
    if devices is None:
        return FitCheck(None, "not checked: the model runs on the CPU or on a server")
    weights = getattr(getattr(backend, "weights", None), "path", None)
    dtype = load_dtype(backend, None if weights is None else Path(weights))
    need = estimate(backend.spec.vram_gb, parameters, dtype)
    if need is None:
        return FitCheck(None, "not checked: neither vram_gb nor the parameter count is known")
    readings = (free or _free)(devices)
    if readings is None:
        return FitCheck(None, "not checked: no free-memory reading (NVML, torch) for its GPUs")
    share = need.bytes / len(devices)
    where = ", ".join(f"cuda:{d}" for d in devices)
    least = min(readings)
    per_gpu = "" if len(devices) == 1 else f" ({share / GB:.1f} GB on each of {len(devices)})"
    facts = f"~{need.bytes / GB:.1f} GB ({need.how}){per_gpu}"
    if share > least:
        reason = (
            f"model {name} skipped: needs {facts} but {where} has {least / GB:.1f} GB free; "
            "give it a larger GPU or --llmeval-vram-check off"
        )
        return FitCheck(reason, reason)
    return FitCheck(None, f"fits: needs {facts}, {where} has {least / GB:.1f} GB free")


def _free(devices: Sequence[int]) -> list[int] | None:
    return nvml_free(devices) or torch_free(devices)


def parameters_of(backend: Backend) -> ParameterCount | None:
    """The parameter count of `backend`'s local checkpoint, read from its files (None for a
    remote backend or files that do not say)."""
    weights = getattr(getattr(backend, "weights", None), "path", None)
    return None if weights is None else count_parameters(Path(weights))


ModelSkipped = pytest.skip.Exception
"""What an item of a model kept from loading raises: pytest's own skip (its reason shown as
is); the llmeval summary says it once per model."""


def model_skipped(reason: str) -> BaseException:
    """The skip of one item of a model that does not fit its GPU."""
    return ModelSkipped(reason)
