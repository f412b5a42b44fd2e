"""Facts about the local software and accelerator that change a local backend's numerics.

Part of a local backend's identity (the generation cache key): a new torch, transformers or
vLLM release, another GPU model or a CPU run can change logits enough to flip a greedy token,
so a cached generation is served only to the same stack on the same kind of device.
"""

from __future__ import annotations

import importlib
from importlib import metadata
from typing import Any


def package_version(name: str) -> str | None:
    """The installed version of the importable package `name` (its `__version__`, else its
    distribution's), or None when it is not installed."""
    try:
        module = importlib.import_module(name)
    except ImportError:
        return None
    version = getattr(module, "__version__", None)
    if version is not None:
        return str(version)
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def torch_device() -> tuple[str | None, str | None]:
    """("cuda", name of the first visible GPU) when torch sees one, ("cpu", None) when it sees
    none, (None, None) without torch."""
    try:
        import torch
    except ImportError:
        return None, None
    if not torch.cuda.is_available():
        return "cpu", None
    return "cuda", str(torch.cuda.get_device_name(0))


def vllm_device() -> tuple[str | None, str | None]:
    """The device type and first visible device's name as vLLM's platform layer reports them,
    else as torch does.

    vLLM's platform reads the name through NVML without initialising CUDA in this process;
    torch's `get_device_name` initialises it, after which vLLM must start its workers with
    `spawn` instead of `fork` (it does so, with a warning): so torch is only the fallback.
    """
    try:
        from vllm.platforms import current_platform

        platform: Any = current_platform
        return str(platform.device_type), str(platform.get_device_name(0))
    except Exception:  # noqa: BLE001 - an older vLLM or a platform with no name: ask torch
        return torch_device()
