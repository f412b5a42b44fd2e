"""Where a local transformers model runs, and the facts about it that change its numbers,
decided without importing torch.

A rerun served entirely from the cache must not pay for importing torch (about a second) just
to compute the cache key, so the device and its identity come from files and the driver:
torch's build (`torch/version.py`: its version and the CUDA it was built for, read as text),
the visible devices (`CUDA_VISIBLE_DEVICES`) and NVML (the GPUs and their names). The same
rules run in the run that generates and in the rerun that reads, so both compute one key.

Where these sources cannot answer for sure (a ROCm build, MIG slices, GPUs of different
models, no `torch/version.py`), torch is asked, as before: correct, only slower.
"""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_llmeval.backends import BackendError

DEFAULT_MATMUL_PRECISION = "highest"  # torch's default until someone sets it


@dataclass(frozen=True)
class TorchBuild:
    """What `torch/version.py` says: the version and the CUDA / HIP it was built for."""

    version: str
    cuda: str | None
    hip: str | None


@dataclass(frozen=True)
class LocalDevice:
    """The device a model runs on, and its part of the cache key."""

    device: str  # "cpu", "cuda", "cuda:1", "mps", ...
    name: str  # the GPU model for CUDA, else the device type
    cuda: str | None  # the CUDA version torch was built for (None off CUDA)
    compute_major: int | None = None  # CUDA compute capability (None: unknown or off CUDA)


def torch_build() -> TorchBuild | None:
    """torch's version facts read from its `version.py` without importing it; None when
    torch is missing or the file is not in the expected form."""
    if "torch" in sys.modules:  # imported already: ask it, nothing to save
        import torch

        return TorchBuild(str(torch.__version__), torch.version.cuda, torch.version.hip)
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "version.py"
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return None
    values: dict[str, Any] = {}
    for node in tree.body:
        target = node.targets[0] if isinstance(node, ast.Assign) else getattr(node, "target", None)
        value = getattr(node, "value", None)
        if isinstance(target, ast.Name) and isinstance(value, ast.Constant):
            values[target.id] = value.value
    version = values.get("__version__")
    if not isinstance(version, str):
        return None
    return TorchBuild(version, _text(values.get("cuda")), _text(values.get("hip")))


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def visible_count(environ: dict[str, str] | None = None) -> int | None:
    """How many GPUs `CUDA_VISIBLE_DEVICES` lets CUDA see (CUDA stops at the first invalid
    entry; "" or "-1" hides all); None when the variable is unset (all of them)."""
    environ = dict(os.environ) if environ is None else environ
    if "CUDA_VISIBLE_DEVICES" not in environ:
        return None
    count = 0
    for entry in environ["CUDA_VISIBLE_DEVICES"].split(","):
        entry = entry.strip()
        if not entry or entry.startswith("-"):
            break
        count += 1
    return count


def nvml_gpus() -> list[tuple[str, int | None]] | None:
    """(name, compute capability major) of every GPU the driver sees; [] when there is no
    NVIDIA driver (hence no CUDA device at all); None when NVML cannot be asked."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001 - no library or no driver: no NVIDIA GPU here
        return []
    try:
        gpus = []
        for index in range(int(pynvml.nvmlDeviceGetCount())):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            name = pynvml.nvmlDeviceGetName(handle)
            name = name.decode() if isinstance(name, bytes) else str(name)
            try:
                major = int(pynvml.nvmlDeviceGetCudaComputeCapability(handle)[0])
            except Exception:  # noqa: BLE001 - an old driver: unknown
                major = None
            gpus.append((name, major))
        return gpus
    except Exception:  # noqa: BLE001 - a driver that answers nothing useful
        return None
    finally:
        with contextlib.suppress(Exception):  # shutting down is best effort
            pynvml.nvmlShutdown()


def decide_device(requested: str | None) -> LocalDevice:
    """The device for `requested` ("cpu", "cuda", "cuda:1", None or "auto": CUDA when torch
    can use a GPU, else the CPU) and its identity facts, without importing torch where the
    build file, CUDA_VISIBLE_DEVICES and NVML answer for sure; raises BackendError for a
    CUDA device that cannot be used."""
    kind = (requested or "auto").split(":")[0]
    if kind not in ("auto", "cuda"):
        return LocalDevice(requested or "cpu", kind, None)
    build = torch_build()
    if build is None or build.hip or _mig():
        return _asked_torch(requested)  # no rule of ours is sure there
    if build.cuda is None:
        if kind == "cuda":
            raise BackendError(
                f"device {requested!r} is not usable: torch {build.version} is built without CUDA"
            )
        return LocalDevice("cpu", "cpu", None)
    gpus = nvml_gpus()
    if gpus is None:
        return _asked_torch(requested)
    visible = visible_count()
    count = len(gpus) if visible is None else min(visible, len(gpus))
    if count == 0:
        if kind == "cuda":
            raise BackendError(f"device {requested!r} is not usable: no NVIDIA GPU is visible")
        return LocalDevice("cpu", "cpu", None)
    if len(set(gpus)) > 1:
        return _asked_torch(requested)  # GPU models differ: which one is cuda:N is torch's call
    name, major = gpus[0]
    device = "cuda" if kind == "auto" else str(requested)
    return LocalDevice(device, name, build.cuda, major)


def _mig() -> bool:
    return "MIG-" in os.environ.get("CUDA_VISIBLE_DEVICES", "")


def _asked_torch(requested: str | None) -> LocalDevice:
    """The old way: torch decides and names the device (imports torch)."""
    import torch

    device = requested if requested and requested != "auto" else None
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if not device.startswith("cuda"):
        return LocalDevice(device, device.split(":")[0], None)
    try:
        name = torch.cuda.get_device_name(torch.device(device))
        major = int(torch.cuda.get_device_properties(torch.device(device)).major)
    except (AssertionError, RuntimeError) as exc:  # no CUDA build, driver or device
        raise BackendError(f"device {device!r} is not usable: {exc}") from exc
    return LocalDevice(device, str(name), torch.version.cuda, major)


def auto_dtype(device: LocalDevice) -> str:
    """The dtype for "auto": bfloat16 on CUDA GPUs with native bfloat16 (compute capability
    8.0 and newer), float16 on older ones (bfloat16 is emulated there), float32 elsewhere."""
    if not device.device.startswith("cuda"):
        return "float32"
    return "bfloat16" if (device.compute_major or 0) >= 8 else "float16"


def matmul_precision() -> str:
    """torch's float32 matmul precision: asked when torch is imported (only code that imported
    it can have changed it), else its default."""
    torch = sys.modules.get("torch")
    if torch is None:
        return DEFAULT_MATMUL_PRECISION
    return str(torch.get_float32_matmul_precision())
