"""What the engine meters: the model load apart from the batches, only the devices the model
sits on, a shared device split between its workers, nothing for a remote backend.

No GPU here: a fake `pynvml` (tests/fake_nvml.py) stands in for NVML. Its counters follow the
real clock at a constant power, so a window's joules divided by its seconds is that power
whatever the machine's load; the tests compare energies, never durations.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from engine_items import Item
from fake_nvml import FakeNvml

from pytest_llmeval.backends import GenerationRequest, GenerationResult
from pytest_llmeval.declare.models import ModelSpec
from pytest_llmeval.declare.task import Message
from pytest_llmeval.run.engine import Engine

GENERATE_S = 0.3  # above the meters' 0.25 s minimum window
LOAD_S = 0.6


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("CUDA_VISIBLE_DEVICES", "LLMEVAL_GPU_SHARED_BY", "PYTEST_XDIST_WORKER_COUNT"):
        monkeypatch.delenv(name, raising=False)
    # No RAPL: the CPU package is not what these tests are about.
    monkeypatch.setattr("pytest_llmeval.run.meters.POWERCAP_ROOT", tmp_path / "no-powercap")


def install_nvml(monkeypatch: pytest.MonkeyPatch, watts: Sequence[float], **kw: Any) -> FakeNvml:
    nvml = FakeNvml(watts, **kw)
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    return nvml


class SleepyBackend:
    """A local model that loads lazily on first use, like the transformers and vLLM backends."""

    default_batch_size = 2

    def __init__(self, spec: ModelSpec, devices: Any = (0,)) -> None:
        self.spec = spec
        self.devices = devices
        self.loads = 0

    def load(self) -> None:
        if not self.loads:
            time.sleep(LOAD_S)
            self.loads = 1

    def energy_devices(self) -> Any:
        return self.devices

    def identity(self) -> Mapping[str, Any]:
        return {"backend": "sleepy"}

    def render(self, messages: list[Message]) -> str:
        return messages[-1]["content"]

    def info(self) -> Mapping[str, Any]:
        return {"model_loads": self.loads, "load_time_s": LOAD_S if self.loads else None}

    def generate(
        self, requests: Sequence[GenerationRequest], batch_id: str
    ) -> list[GenerationResult]:
        self.load()  # lazily, as the real local backends do
        return self._made(requests, batch_id)

    def _made(self, requests: Sequence[GenerationRequest], batch_id: str) -> list[GenerationResult]:
        started = time.perf_counter()
        time.sleep(GENERATE_S)
        wall = time.perf_counter() - started
        return [
            GenerationResult(
                text="ok",
                prompt=r.messages[-1]["content"],
                tokens_in=3,
                tokens_out=5,
                latency_s=wall,
                finish_reason="stop",
                batch_id=batch_id,
                batch_size=len(requests),
                batch_wall_s=wall,
                latency_method="test",
            )
            for r in requests
        ]

    def close(self) -> None:
        pass


class LegacyBackend(SleepyBackend):
    """A user's backend from `pytest_llmeval_make_backend` written before `load()` and
    `energy_devices()` existed."""

    load = None  # type: ignore[assignment]
    energy_devices = None  # type: ignore[assignment]

    def generate(
        self, requests: Sequence[GenerationRequest], batch_id: str
    ) -> list[GenerationResult]:
        if not self.loads:
            time.sleep(LOAD_S)
            self.loads = 1
        return self._made(requests, batch_id)


def run(backend: SleepyBackend, items: int = 4) -> tuple[Engine, list[GenerationResult]]:
    engine = Engine(make_backend=lambda spec: backend)
    queue = [Item(f"t::{i}", backend.spec) for i in range(items)]
    results = [engine.result_for(item, queue[i + 1 :]) for i, item in enumerate(queue)]
    return engine, results


def local_spec() -> ModelSpec:
    return ModelSpec("local", "sleepy", "m")


def batch_watts(results: Sequence[GenerationResult]) -> list[float]:
    """Per distinct batch: its GPU joules over its generation wall time."""
    batches = {r.batch_id: r for r in results}
    return [float(r.batch_energy_j or 0) / r.batch_wall_s for r in batches.values()]


# --- point 1: the load is not a batch -------------------------------------------------------


def test_the_load_is_metered_apart_from_the_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    install_nvml(monkeypatch, [100.0])
    engine, results = run(SleepyBackend(local_spec()))
    # Two batches of two, each at the 100 W the GPU draws: the first no longer carries the load.
    assert batch_watts(results) == [pytest.approx(100.0, rel=0.2)] * 2
    (load,) = engine.load_records()
    assert load.load_energy_j == pytest.approx(100.0 * LOAD_S, rel=0.2)
    assert load.load_energy_reason is None
    assert load.model_loads == 1


def test_a_backend_without_load_still_runs_and_says_why_no_load_energy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    install_nvml(monkeypatch, [100.0])
    engine, results = run(LegacyBackend(local_spec()))
    assert [r.text for r in results] == ["ok"] * 4
    (load,) = engine.load_records()
    assert load.load_energy_j is None
    assert load.load_energy_reason is not None and "load()" in load.load_energy_reason
    # It does not say where its model sits: every GPU this process sees, and the method says so.
    assert "energy_devices" in str(results[0].energy_method)


# --- point 2: the devices the model sits on -------------------------------------------------


def test_an_unpinned_model_on_gpu0_of_eight_meters_gpu0_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    nvml = install_nvml(monkeypatch, [100.0] * 8)
    engine, results = run(SleepyBackend(local_spec(), devices=(0,)))
    assert batch_watts(results) == [pytest.approx(100.0, rel=0.2)] * 2
    assert set(nvml.counter_reads) == {0}
    (load,) = engine.load_records()
    assert load.energy is not None
    assert [s["device"] for s in load.energy["sources"]] == ["gpu0"]


def test_cuda_ordinals_map_to_nvml_through_cuda_visible_devices(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GPU i draws 100 + 10 i W, so the energy says which GPU was read.
    nvml = install_nvml(monkeypatch, [100.0 + 10 * i for i in range(8)])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    _, results = run(SleepyBackend(local_spec(), devices=(0,)))  # cuda:0 is NVML gpu3
    assert batch_watts(results) == [pytest.approx(130.0, rel=0.2)] * 2
    assert set(nvml.counter_reads) == {3}


def test_a_tensor_parallel_model_meters_its_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    nvml = install_nvml(monkeypatch, [100.0] * 4)
    _, results = run(SleepyBackend(local_spec(), devices=(0, 1)))
    assert batch_watts(results) == [pytest.approx(200.0, rel=0.2)] * 2
    assert set(nvml.counter_reads) == {0, 1}


def test_workers_sharing_a_gpu_split_its_energy(monkeypatch: pytest.MonkeyPatch) -> None:
    install_nvml(monkeypatch, [100.0])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    monkeypatch.setenv("LLMEVAL_GPU_SHARED_BY", "2")  # set by the pinning in the worker spec
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "2")
    engine, results = run(SleepyBackend(local_spec()))
    assert batch_watts(results) == [pytest.approx(50.0, rel=0.2)] * 2
    assert "gpu0 shared by 2 workers" in str(results[0].energy_method)
    (load,) = engine.load_records()
    assert load.load_energy_j == pytest.approx(50.0 * LOAD_S, rel=0.2)


def test_unpinned_workers_flag_a_gpu_they_may_share(monkeypatch: pytest.MonkeyPatch) -> None:
    install_nvml(monkeypatch, [100.0, 100.0])
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "2")  # no pinning: no LLMEVAL_GPU_SHARED_BY
    _, results = run(SleepyBackend(local_spec()))
    assert batch_watts(results) == [pytest.approx(100.0, rel=0.2)] * 2  # the whole device
    assert "gpu0 not pinned" in str(results[0].energy_method)


def test_a_remote_backend_gets_no_energy_and_no_meter(monkeypatch: pytest.MonkeyPatch) -> None:
    nvml = install_nvml(monkeypatch, [100.0])
    engine, results = run(SleepyBackend(ModelSpec("api", "callable", "m:f"), devices=None))
    for result in results:
        assert result.energy_j is None and result.cpu_energy_j is None
        assert result.batch_energy_j is None and result.batch_avg_w is None
        assert result.energy_reason == "remote backend" and result.energy_method is None
    assert not nvml.counter_reads and not nvml.power_reads  # no window was even opened
    (load,) = engine.load_records()
    assert load.load_energy_j is None and load.load_energy_reason == "remote backend"
