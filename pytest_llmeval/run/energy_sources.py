"""What an energy meter reads: NVML and RAPL detection, and the scope of a backend's devices.

A backend's `energy_devices()` names the CUDA ordinals its model occupies, "cpu", or None (a
remote backend: nothing local is its energy). `scope_of` turns that and the worker's
environment into an `EnergyScope`: which GPUs to read, and how many workers share each device
(`LLMEVAL_GPU_SHARED_BY`, set in a pinned worker's spec; the CPU package is shared by every
worker of the host, `PYTEST_XDIST_WORKER_COUNT`). Detection maps CUDA ordinals to NVML indices
through CUDA_VISIBLE_DEVICES (NVML ignores the variable) and never raises: what cannot be read
becomes an `EnergyReading` with a reason. Imports neither torch nor pynvml at module level.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pytest_llmeval.run.gpus import SHARED_VARIABLE


@dataclass(frozen=True)
class EnergyReading:
    """Energy of one measured window for one source.

    `source` is "nvml-energy-counter", "nvml-power-sampling" or "rapl" ("nvml" / "rapl" in
    `EnergyMeter.unavailable()`); `device` e.g. "gpu0" (NVML index) or "package-0". When
    `energy_j` is None, `reason` says why. `peak_w` comes from power sampling only. For a
    device shared by several workers, `energy_j` and `avg_w` are this worker's equal share.
    """

    source: str
    energy_j: float | None
    reason: str | None
    seconds: float
    avg_w: float | None
    peak_w: float | None
    device: str


class EnergySource(Protocol):
    """A device: `read()` gives joules (kind "counter") or watts (kind "power").

    `wrap_j` is a counter's range (None: no wrap); `source`, `name` label its readings."""

    @property
    def name(self) -> str:
        """The device, e.g. `gpu0` or `package-0`."""
        ...

    @property
    def kind(self) -> str:
        """`counter` (joules) or `power` (watts)."""
        ...

    @property
    def source(self) -> str:
        """What is read: `nvml-energy-counter`, `nvml-power-sampling` or `rapl`."""
        ...

    @property
    def wrap_j(self) -> float | None:
        """A counter's range in joules before it wraps (None: no wrap)."""
        ...

    def read(self) -> float:
        """The current reading (joules or watts, by `kind`)."""
        ...


@dataclass(frozen=True)
class Source:
    """A detected device; `read` gives joules (counter) or watts (power)."""

    name: str
    kind: str
    source: str
    read: Callable[[], float]
    wrap_j: float | None = None


@dataclass(frozen=True)
class EnergyScope:
    """The devices one backend's model uses, as this worker meters them.

    `cuda_ordinals`: CUDA device ordinals of this process (() for a model on the CPU; None when
    the backend does not say, then every GPU the process sees). `gpu_shared_by`: workers
    sharing those GPUs (None: unknown, unpinned xdist workers may all use them);
    `cpu_shared_by`: workers on this host, all sharing the CPU package."""

    cuda_ordinals: tuple[int, ...] | None
    gpu_shared_by: int | None = 1
    cpu_shared_by: int = 1

    @property
    def declared(self) -> bool:
        """Whether the backend named its devices."""
        return self.cuda_ordinals is not None


def scope_of(backend: Any, environ: Mapping[str, str] | None = None) -> EnergyScope | None:
    """The energy scope of `backend` in this worker; None for a remote backend.

    A backend without `energy_devices()` (a user's, from `pytest_llmeval_make_backend`) is
    metered on every GPU this process sees, and the method says so."""
    environ = os.environ if environ is None else environ
    declare = getattr(backend, "energy_devices", None)
    ordinals: tuple[int, ...] | None = None
    if callable(declare):
        devices = declare()
        if devices is None:
            return None
        ordinals = () if devices == "cpu" else tuple(int(d) for d in devices)
    workers = _positive(environ.get("PYTEST_XDIST_WORKER_COUNT")) or 1
    shared = _positive(environ.get(SHARED_VARIABLE))
    # Without the pinning's count, a lone process owns its GPUs; xdist workers may share them.
    gpu_shared_by = shared if shared else (1 if workers == 1 else None)
    return EnergyScope(ordinals, gpu_shared_by, workers)


def _positive(value: str | None) -> int | None:
    try:
        number = int(value or "")
    except ValueError:
        return None
    return number if number > 0 else None


def nvml_indices_for_visible(env_value: str | None, uuids_by_index: Mapping[int, str]) -> list[int]:
    """NVML indices of the GPUs a CUDA_VISIBLE_DEVICES value lets this process use, in CUDA order.

    None (unset) means all devices; "" means none. Entries are indices or UUIDs ("GPU-..."; a
    unique prefix is enough, as for CUDA). Like CUDA, parsing stops at the first entry that names
    no device. MIG entries stop it too: NVML measures energy per whole GPU only.
    """
    if env_value is None:
        return sorted(uuids_by_index)
    found: list[int] = []
    for raw in env_value.split(","):
        entry = raw.strip()
        if entry.isdigit() and int(entry) in uuids_by_index:
            index: int | None = int(entry)
        elif entry.startswith("GPU-"):
            matches = [i for i, uuid in uuids_by_index.items() if uuid.startswith(entry)]
            index = matches[0] if len(matches) == 1 else None
        else:
            index = None
        if index is None:
            break
        if index not in found:
            found.append(index)
    return found


def read_or_error(src: EnergySource) -> float | str:
    """The source's reading, or why it failed."""
    try:
        return float(src.read())
    except Exception as exc:  # noqa: BLE001 - a failed read becomes the reading's reason
        return f"{src.source} read failed: {exc}"


def nvml_shutdown() -> None:
    """Release NVML (reference-counted by nvmlInit)."""
    try:
        import pynvml

        pynvml.nvmlShutdown()
    except Exception:  # noqa: BLE001 - shutting down a library that is gone is moot
        pass


def _missing(reason: str, device: str = "gpu") -> EnergyReading:
    return EnergyReading("nvml", None, reason, 0.0, None, None, device)


def detect_nvml(
    gpu_indices: Sequence[int] | None, cuda_ordinals: Sequence[int] | None = None
) -> tuple[list[EnergySource], list[EnergySource], list[EnergyReading]]:
    """(sources, checks, problems) for the GPUs to meter.

    `gpu_indices` are NVML indices; None means the GPUs at `cuda_ordinals` of this process
    (every GPU CUDA_VISIBLE_DEVICES lets it use when that is None too). Per GPU the source is
    its energy counter (Volta+), else power sampling; `checks` samples the power of each GPU
    whose counter is the source, over the same windows, to compare the two."""
    if cuda_ordinals == ():
        return [], [], [_missing("model on the CPU: no GPU energy (see cpu_energy_j)")]
    if gpu_indices is not None and not gpu_indices:
        return [], [], [_missing("no GPUs to meter")]
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception as exc:  # noqa: BLE001 - no pynvml, no library, no driver: all mean no NVML
        return [], [], [_missing(f"no NVML ({exc})")]
    sources: list[EnergySource] = []
    checks: list[EnergySource] = []
    problems: list[EnergyReading] = []
    try:
        count = pynvml.nvmlDeviceGetCount()
        handles = {i: pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)}
        if gpu_indices is None:
            uuids = {i: str(pynvml.nvmlDeviceGetUUID(h)) for i, h in handles.items()}
            visible = nvml_indices_for_visible(os.environ.get("CUDA_VISIBLE_DEVICES"), uuids)
            gpu_indices = visible if cuda_ordinals is None else []
            for ordinal in cuda_ordinals or ():
                if ordinal < len(visible):
                    gpu_indices.append(visible[ordinal])
                else:
                    problems.append(
                        _missing(f"cuda:{ordinal} is not one of the {len(visible)} visible GPUs")
                    )
        for index in gpu_indices:
            device = f"gpu{index}"
            if index not in handles:
                problems.append(_missing(f"no NVML device with index {index}", device))
                continue
            energy = _nvml_reader(pynvml.nvmlDeviceGetTotalEnergyConsumption, handles[index])
            counter = Source(device, "counter", "nvml-energy-counter", energy)
            watts = _nvml_reader(pynvml.nvmlDeviceGetPowerUsage, handles[index])
            power = Source(device, "power", "nvml-power-sampling", watts)
            power_works = not isinstance(read_or_error(power), str)
            # The counter needs Volta or later (NotSupported before): power is the fallback.
            if not isinstance(read_or_error(counter), str):
                sources.append(counter)
                if power_works:
                    checks.append(power)
            elif power_works:
                sources.append(power)
            else:
                problems.append(_missing(str(read_or_error(power)), device))
        if not gpu_indices and not problems:
            problems.append(_missing("no NVML devices visible to this process"))
    except Exception as exc:  # noqa: BLE001 - detection must not raise
        problems.append(_missing(f"NVML query failed: {exc}"))
    if not sources:
        nvml_shutdown()
        checks = []
    return sources, checks, problems


def detect_rapl(root: Path) -> tuple[list[EnergySource], list[EnergyReading]]:
    """(sources, problems) for the CPU packages' RAPL counters under `root`."""
    sources: list[EnergySource] = []
    why = f"no package domains under {root}"
    # Top-level zones are intel-rapl:N (packages, or psys); intel-rapl:N:M are sub-domains.
    for zone in sorted(root.glob("intel-rapl:*")):
        if zone.name.count(":") != 1:
            continue
        try:
            name = (zone / "name").read_text().strip()
            if not name.startswith("package"):
                continue
            reader = _rapl_reader(zone / "energy_uj")
            reader()
            wrap_j = int((zone / "max_energy_range_uj").read_text()) / 1e6
        except (OSError, ValueError) as exc:
            # Kernels since 2020 make energy_uj root-only (the PLATYPUS side channel).
            why = str(exc)
            continue
        sources.append(Source(name, "counter", "rapl", reader, wrap_j))
    if sources:
        return sources, []
    return [], [EnergyReading("rapl", None, f"RAPL not readable ({why})", 0.0, None, None, "cpu")]


def _nvml_reader(function: Callable[[Any], int], handle: Any) -> Callable[[], float]:
    # NVML reports millijoules and milliwatts.
    return lambda: function(handle) / 1000.0


def _rapl_reader(path: Path) -> Callable[[], float]:
    return lambda: int(path.read_text()) / 1e6  # microjoules
