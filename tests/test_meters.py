"""Energy measurement: integration, attribution, sampling thread, meter windows, detection.

There is no GPU on the test machine, so the meter's window logic runs on fake counter and power
sources; detection runs for real and must report why nothing is measured.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pytest_llmeval.run.meters import (
    ATTRIBUTION_METHOD,
    EnergyMeter,
    PowerSampler,
    attribute_by_tokens,
    nvml_indices_for_visible,
    trapezoid_energy,
)


@dataclass
class FakeSource:
    """Returns its values in turn: joules for a counter, watts for a power source."""

    values: list[float]
    kind: str = "counter"
    source: str = "nvml-energy-counter"
    name: str = "gpu0"
    wrap_j: float | None = None
    _it: Iterator[float] = field(init=False)

    def __post_init__(self) -> None:
        self._it = iter(self.values)

    def read(self) -> float:
        return next(self._it)


# --- trapezoid_energy -------------------------------------------------------------------------


def test_trapezoid_constant_power() -> None:
    assert trapezoid_energy([(0.0, 100.0), (1.0, 100.0), (2.0, 100.0)]) == (200.0, 100.0, 100.0)


def test_trapezoid_ramp() -> None:
    samples = [(i / 10, 10.0 * i) for i in range(11)]  # 0 -> 100 W over 1 s
    joules, avg, peak = trapezoid_energy(samples)
    assert joules == pytest.approx(50.0)
    assert avg == pytest.approx(50.0)
    assert peak == 100.0


def test_trapezoid_uneven_spacing() -> None:
    # 0-0.1 s at 10 W, then 0.1-1.0 s from 10 to 30 W: 1 J + 18 J.
    joules, avg, peak = trapezoid_energy([(0.0, 10.0), (0.1, 10.0), (1.0, 30.0)])
    assert joules == pytest.approx(19.0)
    assert avg == pytest.approx(19.0)
    assert peak == 30.0


def test_trapezoid_too_few_samples() -> None:
    assert trapezoid_energy([]) == (None, None, None)
    assert trapezoid_energy([(0.0, 42.0)]) == (None, None, 42.0)
    assert trapezoid_energy([(1.0, 5.0), (1.0, 7.0)]) == (None, None, 7.0)


# --- attribute_by_tokens ----------------------------------------------------------------------


def test_attribute_by_token_share() -> None:
    shares = attribute_by_tokens(100.0, [10, 30, 60])
    assert shares == pytest.approx([10.0, 30.0, 60.0])
    assert "token share" in ATTRIBUTION_METHOD


def test_attribute_zero_tokens() -> None:
    assert attribute_by_tokens(90.0, [0, 30, 60]) == pytest.approx([0.0, 30.0, 60.0])
    assert attribute_by_tokens(90.0, [0, 0, 0]) == pytest.approx([30.0, 30.0, 30.0])
    assert attribute_by_tokens(90.0, []) == []


def test_attribute_unknown_total() -> None:
    assert attribute_by_tokens(None, [1, 2]) == [None, None]
    with pytest.raises(ValueError):
        attribute_by_tokens(1.0, [1, -1])


# --- PowerSampler -----------------------------------------------------------------------------


def test_power_sampler_integrates_step_function() -> None:
    t0 = time.perf_counter()

    def watts() -> float:  # 50 W for the first 0.15 s, 150 W after
        return 50.0 if time.perf_counter() - t0 < 0.15 else 150.0

    sampler = PowerSampler(watts, interval_s=0.01)
    sampler.start()
    time.sleep(0.3)
    before = threading.active_count()
    stop_at = time.perf_counter()
    samples = sampler.stop()
    assert time.perf_counter() - stop_at < 0.5
    assert threading.active_count() == before - 1
    joules, avg, peak = trapezoid_energy(samples)
    start, end = samples[0][0] - t0, samples[-1][0] - t0
    exact = 50.0 * (0.15 - start) + 150.0 * (end - 0.15)
    assert joules == pytest.approx(exact, rel=0.15)
    assert peak == 150.0 and avg is not None and 50.0 < avg < 150.0
    assert sampler.error is None


def test_power_sampler_read_failure_is_reported() -> None:
    calls = iter([10.0])

    sampler = PowerSampler(lambda: next(calls), interval_s=0.01)
    sampler.start()
    time.sleep(0.05)
    assert len(sampler.stop()) == 1
    assert sampler.error is not None and "power read failed" in sampler.error


# --- EnergyMeter windows ----------------------------------------------------------------------


def test_counter_reading_over_a_window() -> None:
    meter = EnergyMeter([FakeSource([1000.0, 1150.0])], min_window_s=0.0)
    meter.start()
    time.sleep(0.01)
    (reading,) = meter.stop()
    assert reading.source == "nvml-energy-counter" and reading.device == "gpu0"
    assert reading.energy_j == pytest.approx(150.0) and reading.reason is None
    assert reading.avg_w == pytest.approx(150.0 / reading.seconds)
    assert reading.peak_w is None


def test_rapl_counter_wraps_around() -> None:
    src = FakeSource([95.0, 5.0], source="rapl", name="package-0", wrap_j=100.0)
    meter = EnergyMeter([src], min_window_s=0.0)
    meter.start()
    (reading,) = meter.stop()
    assert reading.energy_j == pytest.approx(10.0)


def test_counter_backwards_without_wrap_is_not_a_number() -> None:
    meter = EnergyMeter([FakeSource([95.0, 5.0])], min_window_s=0.0)
    meter.start()
    (reading,) = meter.stop()
    assert reading.energy_j is None and reading.reason is not None
    assert "backwards" in reading.reason


def test_short_window_is_flagged_not_zero() -> None:
    meter = EnergyMeter([FakeSource([1000.0, 1003.0])])  # default 0.25 s minimum
    meter.start()
    (reading,) = meter.stop()
    assert reading.energy_j is None and reading.avg_w is None
    assert reading.reason is not None
    assert reading.reason.startswith("window too short for the NVML energy counter (0.")


def test_counter_that_did_not_tick_is_flagged() -> None:
    meter = EnergyMeter([FakeSource([1000.0, 1000.0])], min_window_s=0.0)
    meter.start()
    (reading,) = meter.stop()
    assert reading.energy_j is None
    assert reading.reason is not None and "did not tick" in reading.reason


def test_counter_read_failure_becomes_reason() -> None:
    meter = EnergyMeter([FakeSource([1.0])], min_window_s=0.0)  # second read raises
    meter.start()
    (reading,) = meter.stop()
    assert reading.energy_j is None
    assert reading.reason is not None and "read failed" in reading.reason


def test_power_source_sampling_path() -> None:
    src = FakeSource([80.0, 120.0] * 100, kind="power", source="nvml-power-sampling")
    meter = EnergyMeter([src], sample_interval_s=0.01, min_window_s=0.05)
    meter.start()
    time.sleep(0.1)
    (reading,) = meter.stop()
    assert reading.source == "nvml-power-sampling" and reading.reason is None
    assert reading.peak_w == 120.0
    assert reading.avg_w is not None and 80.0 <= reading.avg_w <= 120.0
    assert reading.energy_j == pytest.approx(reading.avg_w * reading.seconds, rel=0.25)


def test_power_sampling_short_window_is_flagged() -> None:
    src = FakeSource([100.0] * 10, kind="power", source="nvml-power-sampling")
    meter = EnergyMeter([src], sample_interval_s=0.01)  # default 0.25 s minimum
    meter.start()
    (reading,) = meter.stop()
    assert reading.energy_j is None and reading.avg_w is None and reading.peak_w == 100.0
    assert reading.reason is not None
    assert reading.reason.startswith("window too short for NVML power sampling")


def test_meter_window_misuse() -> None:
    meter = EnergyMeter([])
    with pytest.raises(RuntimeError):
        meter.stop()
    meter.start()
    with pytest.raises(RuntimeError):
        meter.start()
    assert meter.stop() == []
    with pytest.raises(ValueError):
        EnergyMeter([FakeSource([], kind="volts")])


# --- detection --------------------------------------------------------------------------------


def test_detect_on_this_machine_gives_sources_or_reasons() -> None:
    meter = EnergyMeter.detect()
    try:
        kinds = {s.source for s in meter.sources}
        reasons = {r.source: r.reason or "" for r in meter.unavailable()}
        if not any(k.startswith("nvml") for k in kinds):
            assert "NVML" in reasons["nvml"]
        if "rapl" not in kinds:
            assert reasons["rapl"].startswith("RAPL not readable")
        for reading in meter.unavailable():
            assert reading.energy_j is None and reading.reason
        description = meter.describe()
        assert json.loads(json.dumps(description)) == description
        assert len(description["sources"]) + len(description["unavailable"]) >= 2
    finally:
        meter.close()


def _zone(root: Path, zone: str, name: str, energy_uj: str = "5000000") -> Path:
    (root / zone).mkdir()
    (root / zone / "name").write_text(name + "\n")
    (root / zone / "energy_uj").write_text(energy_uj + "\n")
    (root / zone / "max_energy_range_uj").write_text("262143328850\n")
    return root / zone


def test_rapl_detection_on_a_fake_powercap_tree(tmp_path: Path) -> None:
    _zone(tmp_path, "intel-rapl:0", "package-0")
    _zone(tmp_path, "intel-rapl:0:0", "core")  # a sub-domain: inside package-0 already
    _zone(tmp_path, "intel-rapl:1", "psys")  # platform, not a package
    meter = EnergyMeter.detect(gpu_indices=[], powercap_root=tmp_path)
    rapl = [s for s in meter.sources if s.source == "rapl"]
    assert [s.name for s in rapl] == ["package-0"]
    assert rapl[0].wrap_j == pytest.approx(262143.32885)
    assert rapl[0].read() == pytest.approx(5.0)
    assert not [r for r in meter.unavailable() if r.source == "rapl"]


def test_rapl_unreadable_or_missing_gives_reason(tmp_path: Path) -> None:
    zone = _zone(tmp_path, "intel-rapl:0", "package-0")
    (zone / "energy_uj").unlink()
    (zone / "energy_uj").mkdir()  # unreadable even for root, unlike chmod 000
    for root in (tmp_path, tmp_path / "missing"):
        meter = EnergyMeter.detect(gpu_indices=[], powercap_root=root)
        assert not [s for s in meter.sources if s.source == "rapl"]
        (reason,) = [r.reason for r in meter.unavailable() if r.source == "rapl"]
        assert reason is not None and reason.startswith("RAPL not readable")


def test_importing_meters_imports_neither_torch_nor_pynvml() -> None:
    code = (
        "import sys, pytest_llmeval.run.meters; "
        "assert 'torch' not in sys.modules and 'pynvml' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --- nvml_indices_for_visible -----------------------------------------------------------------

UUIDS = {0: "GPU-aaa", 1: "GPU-bbb", 2: "GPU-ccc"}


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ("0,2", [0, 2]),
        ("GPU-bbb", [1]),
        ("GPU-c", [2]),  # a unique UUID prefix, as CUDA accepts
        (None, [0, 1, 2]),
        ("", []),
        ("2, 0", [2, 0]),
        ("1,7,0", [1]),  # CUDA stops at the first entry naming no device
        ("-1", []),
        ("GPU-", []),  # ambiguous prefix
    ],
)
def test_nvml_indices_for_visible(env: str | None, expected: list[int]) -> None:
    assert nvml_indices_for_visible(env, UUIDS) == expected


# --- NVML detection on a fake pynvml: both readings, their ratio, scope -----------------------


def _fake_nvml(monkeypatch: pytest.MonkeyPatch, watts: list[float], factor: float = 1.0) -> None:
    from fake_nvml import FakeNvml

    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml(watts, counter_factor=factor))


@pytest.mark.parametrize("factor", [1.0, 2.0])
def test_counter_and_power_sampling_over_the_same_windows(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, factor: float
) -> None:
    # factor 1: the counter and the sampled power agree; 2: the counter reads twice the energy.
    _fake_nvml(monkeypatch, [100.0], factor)
    meter = EnergyMeter.detect(gpu_indices=[0], powercap_root=tmp_path)
    assert [(s.source, s.name) for s in meter.sources] == [("nvml-energy-counter", "gpu0")]
    for _ in range(2):
        meter.start()
        time.sleep(0.3)
        (reading,) = meter.stop()  # the counter is the measurement; sampling only checks it
        assert reading.energy_j == pytest.approx(30.0 * factor, rel=0.2)
    check = meter.describe()["counter_vs_sampling"]["gpu0"]
    assert check["windows"] == 2
    assert check["ratio"] == pytest.approx(factor, rel=0.1)
    assert check["counter_j"] == pytest.approx(check["ratio"] * check["sampled_j"], rel=1e-3)


def test_without_a_counter_power_sampling_measures_and_there_is_no_ratio(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _fake_nvml(monkeypatch, [100.0])

    def unsupported(handle: int) -> int:
        raise RuntimeError("Not Supported")  # pre-Volta GPUs have no energy counter

    monkeypatch.setattr(sys.modules["pynvml"], "nvmlDeviceGetTotalEnergyConsumption", unsupported)
    meter = EnergyMeter.detect(gpu_indices=[0], powercap_root=tmp_path)
    assert [s.source for s in meter.sources] == ["nvml-power-sampling"]
    meter.start()
    time.sleep(0.3)
    (reading,) = meter.stop()
    assert reading.energy_j == pytest.approx(30.0, rel=0.2)
    assert meter.describe()["counter_vs_sampling"] == {}


def test_a_shared_cpu_package_is_split_between_the_workers() -> None:
    src = FakeSource([10.0, 30.0], source="rapl", name="package-0")
    meter = EnergyMeter([src], min_window_s=0.0, shared_by={"package-0": 4})
    meter.start()
    (reading,) = meter.stop()
    assert reading.energy_j == pytest.approx(5.0)  # a quarter of the package's 20 J
    assert "package-0 shared by 4 workers" in " ".join(meter.notes())
