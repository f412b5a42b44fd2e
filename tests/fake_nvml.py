"""A stand-in for the `pynvml` module (no GPU on the test machines): per-GPU constant power,
an energy counter that follows the real clock, and a count of the reads of each GPU.

Install with `monkeypatch.setitem(sys.modules, "pynvml", FakeNvml(...))`; the meters import
pynvml lazily, so they pick it up.
"""

from __future__ import annotations

import time
import types
from collections import Counter
from collections.abc import Sequence
from types import SimpleNamespace


class FakeNvml(types.ModuleType):
    """`count` GPUs; GPU i draws `watts[i]` W and its counter reads `counter_factor` times the
    energy actually drawn (1.0: counter and power sampling agree); `free_bytes[i]` is its free
    memory (`nvmlDeviceGetMemoryInfo`; none given: 80 GB each)."""

    def __init__(
        self,
        watts: Sequence[float],
        counter_factor: float = 1.0,
        free_bytes: Sequence[float] | None = None,
    ) -> None:
        super().__init__("pynvml")
        self.watts = list(watts)
        self.free_bytes = list(free_bytes) if free_bytes is not None else [80e9] * len(watts)
        self.counter_factor = counter_factor
        self.t0 = time.perf_counter()
        self.counter_reads: Counter[int] = Counter()
        self.power_reads: Counter[int] = Counter()

    def nvmlInit(self) -> None:  # noqa: N802 - pynvml's names
        pass

    def nvmlShutdown(self) -> None:  # noqa: N802
        pass

    def nvmlDeviceGetCount(self) -> int:  # noqa: N802
        return len(self.watts)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:  # noqa: N802
        return index

    def nvmlDeviceGetUUID(self, handle: int) -> str:  # noqa: N802
        return f"GPU-{handle:04d}-fake"

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: int) -> int:  # noqa: N802
        self.counter_reads[handle] += 1
        joules = self.watts[handle] * (time.perf_counter() - self.t0) * self.counter_factor
        return int(joules * 1000)  # millijoules

    def nvmlDeviceGetPowerUsage(self, handle: int) -> int:  # noqa: N802
        self.power_reads[handle] += 1
        return int(self.watts[handle] * 1000)  # milliwatts

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> SimpleNamespace:  # noqa: N802
        free = int(self.free_bytes[handle])
        return SimpleNamespace(total=free * 2, free=free, used=free)

    def nvmlDeviceGetName(self, handle: int) -> str:  # noqa: N802
        return "Fake GPU"

    def nvmlSystemGetDriverVersion(self) -> str:  # noqa: N802
        return "0.0-fake"
