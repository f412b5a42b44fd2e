"""Pinning xdist workers to GPUs through `CUDA_VISIBLE_DEVICES` in each worker's spec.

The variable is set in the xdist spec (`//env:CUDA_VISIBLE_DEVICES=<gpu>`), so it is in the
worker's environment before the worker imports anything, and a replacement for a crashed
worker, started from the same spec, keeps its GPU. Next to it, `LLMEVAL_GPU_SHARED_BY` says
how many workers got that GPU, for the energy meters. GPUs are the entries of an outer
`CUDA_VISIBLE_DEVICES` when the user set one (indices or UUIDs), else the devices NVML sees.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping

VARIABLE = "CUDA_VISIBLE_DEVICES"
# How many workers were pinned to the same GPU, in each pinned worker's spec: their meters
# split that GPU's energy instead of each counting all of it.
SHARED_VARIABLE = "LLMEVAL_GPU_SHARED_BY"


class GpuPinningWarning(UserWarning):
    """More workers than GPUs: some GPUs serve several workers."""


def visible_gpus(environ: Mapping[str, str] | None = None) -> list[str]:
    """The GPUs workers may use: the outer CUDA_VISIBLE_DEVICES entries, else NVML's indices."""
    environ = os.environ if environ is None else environ
    if VARIABLE in environ:
        return [entry.strip() for entry in environ[VARIABLE].split(",") if entry.strip()]
    return [str(index) for index in range(_nvml_count())]


def _nvml_count() -> int:
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001 - no library, no driver, no GPU: all mean "none"
        return 0
    try:
        return int(pynvml.nvmlDeviceGetCount())
    finally:
        pynvml.nvmlShutdown()


def assign_gpus(workers: int, gpus: list[str]) -> list[str | None]:
    """GPU for each worker, round-robin; None for all when there are no GPUs."""
    if not gpus:
        return [None] * workers
    if workers > len(gpus):
        warnings.warn(
            f"{workers} xdist workers but {len(gpus)} GPU(s) ({','.join(gpus)}): "
            f"workers share GPUs round-robin; use -n {len(gpus)} for one GPU each",
            GpuPinningWarning,
            stacklevel=2,
        )
    return [gpus[index % len(gpus)] for index in range(workers)]


def sharing(assigned: list[str | None]) -> list[int]:
    """For each worker, how many workers were assigned its GPU (1 without a GPU)."""
    return [1 if gpu is None else assigned.count(gpu) for gpu in assigned]
