"""Energy of a generation batch: NVML energy counters, NVML power sampling, RAPL.

`EnergyMeter.detect()` finds, per GPU this process may use, NVML's total-energy counter (Volta+)
or else a thread sampling NVML power (integrated by the trapezoidal rule), and per CPU package the
RAPL counter when readable. `start()` / `stop()` around a batch give one `EnergyReading` per
source. What cannot be measured is None with a reason, never a guess or 0 (no NVML, RAPL not
readable, a window too short for the counter). Imports neither torch nor pynvml.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any, Protocol

ATTRIBUTION_METHOD = "generated-token share of the batch's measured energy"
# NVML's energy counter and power readings refresh roughly every 100 ms: shorter windows can
# read 0 or one tick's worth, which is noise rather than a measurement.
MIN_WINDOW_S = 0.25
POWERCAP_ROOT = Path("/sys/class/powercap")
_LABELS = {
    "nvml-energy-counter": "the NVML energy counter",
    "nvml-power-sampling": "NVML power sampling",
    "rapl": "the RAPL energy counter",
}

Sample = tuple[float, float]


@dataclass(frozen=True)
class EnergyReading:
    """Energy of one measured window for one source.

    `source` is "nvml-energy-counter", "nvml-power-sampling" or "rapl" ("nvml" / "rapl" in
    `EnergyMeter.unavailable()`); `device` e.g. "gpu0" (NVML index) or "package-0". When
    `energy_j` is None, `reason` says why. `peak_w` comes from power sampling only.
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


def trapezoid_energy(samples: Sequence[Sample]) -> tuple[float | None, float | None, float | None]:
    """(joules, average watts, peak watts) from (time_s, watts) samples by the trapezoidal rule.

    Fewer than 2 samples, or samples spanning no time, give (None, None, peak or None).
    """
    ordered = sorted(samples)
    peak = max((watts for _, watts in ordered), default=None)
    if len(ordered) < 2 or ordered[-1][0] <= ordered[0][0]:
        return None, None, peak
    joules = sum((t1 - t0) * (w0 + w1) / 2 for (t0, w0), (t1, w1) in pairwise(ordered))
    return joules, joules / (ordered[-1][0] - ordered[0][0]), peak


def attribute_by_tokens(total_j: float | None, tokens: Sequence[int]) -> list[float | None]:
    """Split a batch's energy over its items by generated-token share.

    An item with 0 tokens gets 0 when the total is known; total None gives all None; all tokens
    0 gives an equal split. The shares sum to `total_j` (floating error aside).
    """
    if any(count < 0 for count in tokens):
        raise ValueError(f"negative token count in {list(tokens)}")
    if total_j is None or not tokens:
        return [None] * len(tokens)
    whole = sum(tokens)
    if whole == 0:
        return [total_j / len(tokens)] * len(tokens)
    return [total_j * count / whole for count in tokens]


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


class PowerSampler:
    """A background thread sampling `read_watts()` every `interval_s` between start() and stop().

    start() and stop() each sample too, so the samples span the window. stop() joins the thread
    (it exits within one interval of stop) and returns (perf_counter s, watts) samples. A read
    that raises ends sampling and sets `error`: a gap would under-count the energy.
    """

    def __init__(self, read_watts: Callable[[], float], interval_s: float = 0.05) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        self.read_watts = read_watts
        self.interval_s = interval_s
        self.error: str | None = None
        self._samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Begin a fresh window (earlier samples and errors are dropped)."""
        if self._thread is not None:
            raise RuntimeError("PowerSampler already started")
        self._samples, self.error = [], None
        self._stop.clear()
        self._sample()
        # Daemon: a hung driver call must not keep the interpreter from exiting.
        self._thread = threading.Thread(target=self._run, name="power-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> list[Sample]:
        """End the window: join the thread and return its samples."""
        if self._thread is None:
            raise RuntimeError("PowerSampler.stop() without start()")
        self._stop.set()
        self._thread.join(timeout=max(1.0, 10 * self.interval_s))
        if self._thread.is_alive():
            self.error = self.error or "power sampler thread did not stop (a read hung)"
        self._thread = None
        self._sample()
        return list(self._samples)

    def _run(self) -> None:
        # Event.wait returns as soon as stop() sets it, which bounds the exit delay.
        while not self._stop.wait(self.interval_s) and self.error is None:
            self._sample()

    def _sample(self) -> None:
        if self.error is not None:
            return
        try:
            watts = float(self.read_watts())
        except Exception as exc:  # noqa: BLE001 - any driver failure ends the sampling honestly
            self.error = f"power read failed: {exc}"
            return
        self._samples.append((time.perf_counter(), watts))


@dataclass(frozen=True)
class _Source:
    """A detected device; `read` gives joules (counter) or watts (power)."""

    name: str
    kind: str
    source: str
    read: Callable[[], float]
    wrap_j: float | None = None


def _nvml_reader(function: Callable[[Any], int], handle: Any) -> Callable[[], float]:
    # NVML reports millijoules and milliwatts.
    return lambda: function(handle) / 1000.0


def _rapl_reader(path: Path) -> Callable[[], float]:
    return lambda: int(path.read_text()) / 1e6  # microjoules


class EnergyMeter:
    """Measures windows on the devices this process may use.

    Build with `detect()` (or from sources, in tests); `start()` / `stop()` bracket one window
    at a time; `unavailable()` says why a kind of device is not measured."""

    def __init__(
        self,
        sources: Sequence[EnergySource] = (),
        unavailable: Sequence[EnergyReading] = (),
        *,
        sample_interval_s: float = 0.05,
        min_window_s: float = MIN_WINDOW_S,
    ) -> None:
        for src in sources:
            if src.kind not in ("counter", "power"):
                raise ValueError(f"source {src.name}: kind must be counter or power: {src.kind}")
        self.sources = list(sources)
        self.sample_interval_s = sample_interval_s
        self.min_window_s = min_window_s
        self._unavailable = list(unavailable)
        self._started: float | None = None
        self._begin: dict[int, float | str] = {}
        self._samplers: dict[int, PowerSampler] = {}
        self._nvml_open = False  # set by detect() when it leaves NVML initialised

    @classmethod
    def detect(
        cls, gpu_indices: Sequence[int] | None = None, *, powercap_root: Path = POWERCAP_ROOT
    ) -> EnergyMeter:
        """A meter on whatever this process can measure; never raises.

        `gpu_indices` are NVML indices; None means the GPUs CUDA_VISIBLE_DEVICES lets this
        process use (all when unset), mapped to NVML indices since NVML ignores the variable.
        """
        gpu_sources, gpu_missing = _detect_nvml(gpu_indices)
        cpu_sources, cpu_missing = _detect_rapl(powercap_root)
        meter = cls([*gpu_sources, *cpu_sources], [*gpu_missing, *cpu_missing])
        meter._nvml_open = bool(gpu_sources)
        return meter

    def start(self) -> None:
        """Begin a window: read the counters, start a sampler per power source."""
        if self._started is not None:
            raise RuntimeError("EnergyMeter window already started")
        self._begin, self._samplers = {}, {}
        for i, src in enumerate(self.sources):
            if src.kind == "power":
                self._samplers[i] = PowerSampler(src.read, self.sample_interval_s)
                self._samplers[i].start()
            else:
                self._begin[i] = _read_or_error(src)
        self._started = time.perf_counter()

    def stop(self) -> list[EnergyReading]:
        """End the window: one reading per source, in source order."""
        if self._started is None:
            raise RuntimeError("EnergyMeter.stop() without start()")
        seconds = time.perf_counter() - self._started
        self._started = None
        return [self._reading(i, src, seconds) for i, src in enumerate(self.sources)]

    def unavailable(self) -> list[EnergyReading]:
        """Why devices are not measured (no NVML, RAPL not readable, a failing GPU)."""
        return list(self._unavailable)

    def describe(self) -> dict[str, Any]:
        """Plain-JSON description: sources in use and the reasons for what is missing."""
        return {
            "sources": [{"source": s.source, "device": s.name} for s in self.sources],
            "unavailable": [
                {"source": r.source, "device": r.device, "reason": r.reason}
                for r in self._unavailable
            ],
            "min_window_s": self.min_window_s,
            "sample_interval_s": self.sample_interval_s,
            "attribution": ATTRIBUTION_METHOD,
        }

    def close(self) -> None:
        """Release NVML when detect() initialised it (NVML reference-counts nvmlInit)."""
        if self._nvml_open:
            self._nvml_open = False
            _nvml_shutdown()

    def _reading(self, i: int, src: EnergySource, seconds: float) -> EnergyReading:
        label = _LABELS.get(src.source, f"the {src.source} source")
        too_short = f"window too short for {label} ({seconds:.2f} s"
        peak_w: float | None = None
        if src.kind == "power":
            samples = self._samplers[i].stop()
            joules, avg_w, peak_w = trapezoid_energy(samples)
            reason = self._samplers[i].error
            if reason is None and (joules is None or seconds < self.min_window_s):
                reason = f"{too_short}; {len(samples)} samples)"
            if reason is None:
                return EnergyReading(src.source, joules, None, seconds, avg_w, peak_w, src.name)
        else:
            begin, end = self._begin[i], _read_or_error(src)
            if isinstance(begin, str) or isinstance(end, str):
                reason = begin if isinstance(begin, str) else str(end)
            elif seconds < self.min_window_s:
                reason = f"{too_short})"
            elif end < begin and src.wrap_j is None:
                reason = f"counter went backwards ({begin} J -> {end} J)"
            else:
                # Only one wrap is detectable; RAPL's range lasts minutes even at full power.
                delta = end - begin + ((src.wrap_j or 0.0) if end < begin else 0.0)
                if delta > 0:
                    return EnergyReading(
                        src.source, delta, None, seconds, delta / seconds, None, src.name
                    )
                reason = f"{too_short}; the counter did not tick)"
        return EnergyReading(src.source, None, reason, seconds, None, peak_w, src.name)


def _read_or_error(src: EnergySource) -> float | str:
    try:
        return float(src.read())
    except Exception as exc:  # noqa: BLE001 - a failed read becomes the reading's reason
        return f"{src.source} read failed: {exc}"


def _nvml_shutdown() -> None:
    try:
        import pynvml

        pynvml.nvmlShutdown()
    except Exception:  # noqa: BLE001 - shutting down a library that is gone is moot
        pass


def _detect_nvml(
    gpu_indices: Sequence[int] | None,
) -> tuple[list[EnergySource], list[EnergyReading]]:
    def missing(reason: str, device: str = "gpu") -> EnergyReading:
        return EnergyReading("nvml", None, reason, 0.0, None, None, device)

    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception as exc:  # noqa: BLE001 - no pynvml, no library, no driver: all mean no NVML
        return [], [missing(f"no NVML ({exc})")]
    sources: list[EnergySource] = []
    problems: list[EnergyReading] = []
    try:
        handles = {
            i: pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())
        }
        if gpu_indices is None:
            uuids = {i: str(pynvml.nvmlDeviceGetUUID(h)) for i, h in handles.items()}
            gpu_indices = nvml_indices_for_visible(os.environ.get("CUDA_VISIBLE_DEVICES"), uuids)
        for index in gpu_indices:
            device = f"gpu{index}"
            if index not in handles:
                problems.append(missing(f"no NVML device with index {index}", device))
                continue
            energy = _nvml_reader(pynvml.nvmlDeviceGetTotalEnergyConsumption, handles[index])
            counter = _Source(device, "counter", "nvml-energy-counter", energy)
            watts = _nvml_reader(pynvml.nvmlDeviceGetPowerUsage, handles[index])
            power = _Source(device, "power", "nvml-power-sampling", watts)
            # The counter needs Volta or later (NotSupported before): power is the fallback.
            if not isinstance(_read_or_error(counter), str):
                sources.append(counter)
            elif isinstance(failed := _read_or_error(power), str):
                problems.append(missing(failed, device))
            else:
                sources.append(power)
        if not gpu_indices:
            problems.append(missing("no NVML devices visible to this process"))
    except Exception as exc:  # noqa: BLE001 - detect() must not raise
        problems.append(missing(f"NVML query failed: {exc}"))
    if not sources:
        _nvml_shutdown()
    return sources, problems


def _detect_rapl(root: Path) -> tuple[list[EnergySource], list[EnergyReading]]:
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
        sources.append(_Source(name, "counter", "rapl", reader, wrap_j))
    if sources:
        return sources, []
    return [], [EnergyReading("rapl", None, f"RAPL not readable ({why})", 0.0, None, None, "cpu")]
