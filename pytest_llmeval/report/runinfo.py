"""Run metadata for the report envelope: versions, git commit, machine.

Versions come from package metadata (nothing is imported), the GPU from NVML when present, so
the controller, which never runs a model, can describe the machine without importing torch.
"""

from __future__ import annotations

import os
import platform
import secrets
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from pytest_llmeval.analyze.record import SCHEMA_CONFIG
from pytest_llmeval.declare.redact import redact_argv

DISTRIBUTION = "pytest-llmeval-harness"
_PACKAGES = ("torch", "transformers", "datasets", "pytest", "pytest-xdist", DISTRIBUTION)


@dataclass
class GitInfo:
    """The checkout a run came from."""

    __pydantic_config__ = SCHEMA_CONFIG

    commit: str
    """Full hash of the checked-out commit (`git rev-parse HEAD`)."""
    dirty: bool
    """Whether tracked files had uncommitted changes."""


@dataclass
class GpuInfo:
    """The GPUs NVML sees; `reason` says why there are none."""

    __pydantic_config__ = SCHEMA_CONFIG

    count: int
    """GPUs NVML reports (0 without NVML or a GPU)."""
    names: list[str]
    """Each GPU's product name, in NVML index order."""
    driver: str | None
    """NVIDIA driver version; None without NVML."""
    reason: str | None
    """Why no GPU is listed (NVML missing, no device); None when GPUs were found."""


@dataclass
class MachineInfo:
    """Machine facts in the spirit of pytest-benchmark's `machine_info`, plus GPUs and memory,
    so that runs on different machines can be told apart."""

    __pydantic_config__ = SCHEMA_CONFIG

    node: str
    """Host name (`platform.node()`)."""
    system: str
    """Operating system (`platform.system()`: Linux, Darwin, Windows)."""
    release: str
    """Kernel or OS release (`platform.release()`)."""
    machine: str
    """Machine architecture (`platform.machine()`: x86_64, arm64)."""
    processor: str
    """`platform.processor()` (often empty on Linux; see `cpu`)."""
    cpu: str
    """CPU model name (from /proc/cpuinfo where available)."""
    cpu_count: int | None
    """Logical CPUs (`os.cpu_count()`)."""
    memory_gb: float | None
    """Physical memory in GB (10^9 bytes); None where it cannot be read."""
    python_implementation: str
    """CPython, PyPy, ..."""
    python_version: str
    """Python version (`3.11.9`)."""
    python_compiler: str
    """Compiler Python was built with."""
    python_build: list[str]
    """Python build number and date."""
    gpus: GpuInfo
    """The GPUs NVML sees."""


def new_run_id() -> str:
    """A run id that sorts by start time: `20261124-101500-1a2b`."""
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)


def now_iso() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def versions() -> dict[str, str | None]:
    """Versions of Python and the packages that decide results, from package metadata."""
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            found["plugin" if name == DISTRIBUTION else name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found["plugin" if name == DISTRIBUTION else name] = None
    return found


def git_commit(directory: Path) -> GitInfo | None:
    """HEAD commit and whether the tree is dirty, or None outside a git checkout."""
    try:
        commit = _git(directory, "rev-parse", "HEAD")
        dirty = bool(_git(directory, "status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None
    return GitInfo(commit=commit, dirty=dirty)


def _git(directory: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=directory, capture_output=True, text=True, timeout=10, check=True
    )
    return done.stdout.strip()


def machine() -> MachineInfo:
    """This machine's facts (see MachineInfo)."""
    return MachineInfo(
        node=platform.node(),
        system=platform.system(),
        release=platform.release(),
        machine=platform.machine(),
        processor=platform.processor(),
        cpu=_cpu_model(),
        cpu_count=os.cpu_count(),
        memory_gb=_memory_gb(),
        python_implementation=platform.python_implementation(),
        python_version=platform.python_version(),
        python_compiler=platform.python_compiler(),
        python_build=list(platform.python_build()),
        gpus=gpus(),
    )


def _memory_gb() -> float | None:
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
    return round(pages * size / 1e9, 1)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def gpus() -> GpuInfo:
    """GPU names and driver through NVML; count 0 with the reason when there are none."""
    try:
        import pynvml
    except ImportError:
        return GpuInfo(count=0, names=[], driver=None, reason="nvidia-ml-py not installed")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return GpuInfo(count=0, names=[], driver=None, reason=f"no NVML ({exc})")
    try:
        count = pynvml.nvmlDeviceGetCount()
        names = [
            _text(pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i)))
            for i in range(count)
        ]
        driver = _text(pynvml.nvmlSystemGetDriverVersion())
    finally:
        pynvml.nvmlShutdown()
    return GpuInfo(count=count, names=names, driver=driver, reason=None)


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def argv() -> list[str]:
    """The command line of this process, key-like values masked (`declare/redact.py`)."""
    return redact_argv(sys.argv)
