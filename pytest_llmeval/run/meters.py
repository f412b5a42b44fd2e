"""Energy of a generation batch (or a model load): NVML energy counters, NVML power sampling, RAPL.

`EnergyMeter.detect(scope=...)` finds, per GPU of a backend's scope, NVML's total-energy counter
(Volta+) or else a thread sampling NVML power (integrated by the trapezoidal rule), and per CPU
package the RAPL counter when readable. `start()` / `stop()` around a window give one
`EnergyReading` per source; a device shared by several workers gives this worker's equal share.
Where a GPU has both a counter and power readings, the power is sampled over the same windows
too, and `describe()` reports the counter-to-sampling ratio. What cannot be measured is None
with a reason, never a guess or 0 (no NVML, RAPL not readable, a window too short for the
counter). Imports neither torch nor pynvml.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from itertools import pairwise
from pathlib import Path
from typing import Any

from pytest_llmeval.run.energy_sources import (
    EnergyReading,
    EnergyScope,
    EnergySource,
    detect_nvml,
    detect_rapl,
    nvml_indices_for_visible,
    nvml_shutdown,
    read_or_error,
)

__all__ = [
    "ATTRIBUTION_METHOD",
    "EnergyMeter",
    "EnergyReading",
    "EnergySource",
    "PowerSampler",
    "attribute_by_tokens",
    "nvml_indices_for_visible",
    "trapezoid_energy",
]

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


class EnergyMeter:
    """Measures windows on the devices of one energy scope.

    Build with `detect()` (or from sources, in tests); `start()` / `stop()` bracket one window
    at a time; `unavailable()` says why a kind of device is not measured. `shared_by` maps a
    device to the number of workers sharing it (None: unknown, counted whole and flagged);
    `checks` are power sources sampled beside the counters of the same devices."""

    def __init__(
        self,
        sources: Sequence[EnergySource] = (),
        unavailable: Sequence[EnergyReading] = (),
        *,
        sample_interval_s: float = 0.05,
        min_window_s: float = MIN_WINDOW_S,
        shared_by: Mapping[str, int | None] | None = None,
        checks: Sequence[EnergySource] = (),
        scope_note: str | None = None,
    ) -> None:
        for src in [*sources, *checks]:
            if src.kind not in ("counter", "power"):
                raise ValueError(f"source {src.name}: kind must be counter or power: {src.kind}")
        self.sources = list(sources)
        self.checks = [c for c in checks if c.kind == "power"]
        self.sample_interval_s = sample_interval_s
        self.min_window_s = min_window_s
        self.shared_by = dict(shared_by or {})
        self.scope_note = scope_note
        self._unavailable = list(unavailable)
        self._started: float | None = None
        self._begin: dict[int, float | str] = {}
        self._samplers: dict[int, PowerSampler] = {}
        self._check_samplers: dict[str, PowerSampler] = {}
        # Per checked device: [counter J, sampled J, windows] over windows where both read.
        self._compared: dict[str, list[float]] = {c.name: [0.0, 0.0, 0] for c in self.checks}
        self._nvml_open = False  # set by detect() when it leaves NVML initialised

    @classmethod
    def detect(
        cls,
        gpu_indices: Sequence[int] | None = None,
        *,
        scope: EnergyScope | None = None,
        powercap_root: Path | None = None,
    ) -> EnergyMeter:
        """A meter on what this process can measure of `scope`; never raises.

        `gpu_indices` are NVML indices; None means the GPUs at the scope's CUDA ordinals, mapped
        to NVML indices through CUDA_VISIBLE_DEVICES (NVML ignores the variable); every GPU the
        process may use when there is no scope or it names no devices.
        """
        scope = scope or EnergyScope(None)
        gpu_sources, checks, gpu_missing = detect_nvml(gpu_indices, scope.cuda_ordinals)
        cpu_sources, cpu_missing = detect_rapl(powercap_root or POWERCAP_ROOT)
        shared: dict[str, int | None] = {s.name: scope.gpu_shared_by for s in gpu_sources}
        shared.update({s.name: scope.cpu_shared_by for s in cpu_sources})
        note = None
        if not scope.declared and gpu_sources:
            note = "devices not declared by the backend (no energy_devices()): every GPU seen"
        meter = cls(
            [*gpu_sources, *cpu_sources],
            [*gpu_missing, *cpu_missing],
            shared_by=shared,
            checks=checks,
            scope_note=note,
        )
        meter._nvml_open = bool(gpu_sources)
        return meter

    def start(self) -> None:
        """Begin a window: read the counters, start a sampler per power source and check."""
        if self._started is not None:
            raise RuntimeError("EnergyMeter window already started")
        self._begin, self._samplers = {}, {}
        for i, src in enumerate(self.sources):
            if src.kind == "power":
                self._samplers[i] = PowerSampler(src.read, self.sample_interval_s)
                self._samplers[i].start()
            else:
                self._begin[i] = read_or_error(src)
        self._check_samplers = {
            c.name: PowerSampler(c.read, self.sample_interval_s) for c in self.checks
        }
        for sampler in self._check_samplers.values():
            sampler.start()
        self._started = time.perf_counter()

    def stop(self) -> list[EnergyReading]:
        """End the window: one reading per source, in source order."""
        if self._started is None:
            raise RuntimeError("EnergyMeter.stop() without start()")
        seconds = time.perf_counter() - self._started
        self._started = None
        whole = [self._reading(i, src, seconds) for i, src in enumerate(self.sources)]
        self._compare(whole, seconds)
        return [self._share(reading) for reading in whole]

    def unavailable(self) -> list[EnergyReading]:
        """Why devices are not measured (no NVML, RAPL not readable, a failing GPU)."""
        return list(self._unavailable)

    def notes(self) -> list[str]:
        """What the method must say about the scope: shared devices, undeclared devices."""
        notes = [self.scope_note] if self.scope_note else []
        for src in self.sources:
            count = self.shared_by.get(src.name, 1)
            if count is None:
                notes.append(
                    f"{src.name} not pinned to this worker: other workers may use it too "
                    "(each counts its whole energy)"
                )
            elif count > 1:
                notes.append(f"{src.name} shared by {count} workers: its energy split equally")
        return notes

    def counter_vs_sampling(self) -> dict[str, dict[str, Any]]:
        """Per GPU with both readings: counter and sampled joules summed over the windows
        where both read, their ratio (counter / sampled) and the number of such windows."""
        compared = {}
        for device, (counter_j, sampled_j, windows) in self._compared.items():
            ratio = counter_j / sampled_j if sampled_j > 0 else None
            compared[device] = {
                "counter_j": round(counter_j, 6),
                "sampled_j": round(sampled_j, 6),
                "ratio": None if ratio is None else round(ratio, 4),
                "windows": int(windows),
            }
        return compared

    def describe(self) -> dict[str, Any]:
        """Plain-JSON description: sources in use, the reasons for what is missing, notes on
        shared devices, and the counter-to-sampling comparison."""
        return {
            "sources": [
                {"source": s.source, "device": s.name, "shared_by": self.shared_by.get(s.name, 1)}
                for s in self.sources
            ],
            "unavailable": [
                {"source": r.source, "device": r.device, "reason": r.reason}
                for r in self._unavailable
            ],
            "notes": self.notes(),
            "counter_vs_sampling": self.counter_vs_sampling(),
            "min_window_s": self.min_window_s,
            "sample_interval_s": self.sample_interval_s,
            "attribution": ATTRIBUTION_METHOD,
        }

    def close(self) -> None:
        """Release NVML when detect() initialised it (NVML reference-counts nvmlInit)."""
        if self._nvml_open:
            self._nvml_open = False
            nvml_shutdown()

    def _share(self, reading: EnergyReading) -> EnergyReading:
        count = self.shared_by.get(reading.device, 1) or 1
        if count == 1 or reading.energy_j is None:
            return reading
        avg_w = None if reading.avg_w is None else reading.avg_w / count
        return replace(reading, energy_j=reading.energy_j / count, avg_w=avg_w)

    def _compare(self, readings: Sequence[EnergyReading], seconds: float) -> None:
        for device, sampler in self._check_samplers.items():
            sampled_j, _, _ = trapezoid_energy(sampler.stop())
            counter = next((r for r in readings if r.device == device), None)
            if sampler.error or sampled_j is None or seconds < self.min_window_s:
                continue
            if counter is None or counter.energy_j is None:
                continue
            totals = self._compared[device]
            totals[0] += counter.energy_j
            totals[1] += sampled_j
            totals[2] += 1
        self._check_samplers = {}

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
            begin, end = self._begin[i], read_or_error(src)
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
