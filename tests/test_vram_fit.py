"""The VRAM fit check (run/vram_fit.py): the decision given memory readings, and whole runs
where a model that does not fit is skipped. No GPU here: the readings are fakes (a function,
or the fake NVML of tests/fake_nvml.py); the unit under test is the decision given them."""

from __future__ import annotations

import json
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fake_nvml import FakeNvml

from pytest_llmeval.backends.param_count import HEADER, ParameterCount
from pytest_llmeval.declare.models import ModelSpec
from pytest_llmeval.run.vram_fit import check_fit, load_dtype, nvml_free


@dataclass
class GpuModel:
    """What the check reads of a backend: its spec, devices, dtype, options and weights."""

    spec: ModelSpec
    devices: Any = (0,)
    dtype: str | None = "bfloat16"
    options: Any = None
    weights: Any = field(default=None)

    def energy_devices(self) -> Any:
        return self.devices


def qwen32b(vram_gb: float | None = None) -> ModelSpec:
    return ModelSpec("qwen32b", "transformers", "Qwen/Qwen2.5-32B-Instruct", vram_gb=vram_gb)


PARAMS = ParameterCount(32_800_000_000, HEADER)


def test_a_model_larger_than_the_free_memory_is_skipped_naming_both_numbers() -> None:
    fit = check_fit(GpuModel(qwen32b()), PARAMS, free=lambda devices: [38.2e9])  # type: ignore[arg-type]
    # 32.8e9 x 2 B x 1.2 = 78.72e9 B
    assert fit.skip == (
        "model qwen32b skipped: needs ~78.7 GB (32.8e9 params x 2 B bf16 x 1.2) but cuda:0 "
        "has 38.2 GB free; give it a larger GPU or --llmeval-vram-check off"
    )


def test_a_model_that_fits_runs_and_its_note_says_by_how_much() -> None:
    fit = check_fit(GpuModel(qwen32b()), PARAMS, free=lambda devices: [79.5e9])  # type: ignore[arg-type]
    assert fit.skip is None
    assert fit.note == (
        "fits: needs ~78.7 GB (32.8e9 params x 2 B bf16 x 1.2), cuda:0 has 79.5 GB free"
    )


def test_the_alias_vram_gb_wins_over_the_parameter_count() -> None:
    fit = check_fit(GpuModel(qwen32b(vram_gb=30)), PARAMS, free=lambda d: [38.2e9])  # type: ignore[arg-type]
    assert fit.skip is None and fit.note.startswith("fits: needs ~30.0 GB (the alias's vram_gb)")


def test_float32_doubles_the_estimate() -> None:
    fit = check_fit(GpuModel(qwen32b(), dtype="float32"), PARAMS, free=lambda d: [100e9])  # type: ignore[arg-type]
    # 32.8e9 x 4 B x 1.2 = 157.44e9 B
    assert fit.skip is not None and "needs ~157.4 GB (32.8e9 params x 4 B fp32 x 1.2)" in fit.skip


def test_a_tensor_parallel_model_is_split_over_its_gpus() -> None:
    model = GpuModel(qwen32b(), devices=(0, 1))
    fit = check_fit(model, PARAMS, free=lambda d: [50e9, 38.2e9])  # type: ignore[arg-type]
    # 78.72 GB / 2 = 39.36 GB on each, more than the 38.2 GB of the fuller GPU
    assert fit.skip is not None
    assert "(39.4 GB on each of 2) but cuda:0, cuda:1 has 38.2 GB free" in fit.skip


def test_cpu_and_remote_models_are_not_checked() -> None:
    never = lambda devices: pytest.fail("no reading for a model off the GPU")  # noqa: E731
    for devices in ("cpu", None):
        fit = check_fit(GpuModel(qwen32b(), devices=devices), PARAMS, free=never)  # type: ignore[arg-type]
        assert fit == type(fit)(None, "not checked: the model runs on the CPU or on a server")


def test_no_reading_or_no_estimate_is_said_not_silently_passed() -> None:
    no_reading = check_fit(GpuModel(qwen32b()), PARAMS, free=lambda d: None)  # type: ignore[arg-type]
    assert no_reading.skip is None and no_reading.note.startswith("not checked: no free-memory")
    no_count = check_fit(GpuModel(qwen32b()), None, free=lambda d: [1.0])  # type: ignore[arg-type]
    assert no_count.skip is None and "neither vram_gb nor the parameter count" in no_count.note


def test_the_dtype_a_backend_will_load(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"torch_dtype": "float16"}))
    weights = Path(tmp_path)
    awq = GpuModel(qwen32b(), dtype=None, options=SimpleNamespace(quantization="awq"))
    assert load_dtype(awq, weights) == "awq"  # type: ignore[arg-type]
    assert load_dtype(GpuModel(qwen32b(), dtype="auto"), weights) == "float16"  # type: ignore[arg-type]
    (tmp_path / "config.json").write_text(json.dumps({"torch_dtype": "float32"}))
    assert load_dtype(GpuModel(qwen32b(), dtype=None), weights) == "bfloat16"  # type: ignore[arg-type]


def test_a_pre_quantized_checkpoint_is_reckoned_at_its_bits(tmp_path: Path) -> None:
    """An AWQ/GPTQ checkpoint says float16 (its compute dtype) but stores 4-bit weights: its
    config.json `quantization_config` decides the bytes per parameter, whatever the dtype."""
    config = {"torch_dtype": "float16", "quantization_config": {"quant_method": "awq", "bits": 4}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    model = GpuModel(qwen32b(), dtype="float16", weights=SimpleNamespace(path=str(tmp_path)))
    fit = check_fit(model, PARAMS, free=lambda d: [38.2e9])  # type: ignore[arg-type]
    # 32.8e9 x 0.5 B (4 bits) x 1.2 = 19.68e9 B: fits in 38.2 GB (float16 would need 78.7)
    assert fit.skip is None
    assert fit.note == (
        "fits: needs ~19.7 GB (32.8e9 params x 0.5 B awq 4-bit from config.json x 1.2), "
        "cuda:0 has 38.2 GB free"
    )
    config["quantization_config"] = {"quant_method": "gptq", "bits": 8}
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert load_dtype(model, tmp_path) == "gptq 8-bit"  # type: ignore[arg-type]
    config["quantization_config"] = {"quant_method": "bitsandbytes", "load_in_4bit": True}
    (tmp_path / "config.json").write_text(json.dumps(config))
    four = check_fit(model, PARAMS, free=lambda d: [10e9])  # type: ignore[arg-type]
    assert (
        four.skip is not None and "~19.7 GB (32.8e9 params x 0.5 B bitsandbytes 4-bit" in four.skip
    )


def test_nvml_reads_the_free_memory_of_the_visible_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml([50.0, 50.0], free_bytes=[10e9, 20e9]))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")  # this process's cuda:0 is NVML's GPU 1
    assert nvml_free((0,)) == [20_000_000_000]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert nvml_free((0, 1)) == [10_000_000_000, 20_000_000_000]


# --- whole runs ------------------------------------------------------------------------------

# Two aliases of the callable responder declared as if on a GPU (the only fake: where the
# model sits); `big` needs 80 GB, `small` 1 GB, and the fake NVML says 38.2 GB are free.
GPU_CONFTEST = textwrap.dedent(
    """
    from dataclasses import replace

    from pytest_llmeval.backends.callable_backend import CallableBackend, CallableOptions

    def pytest_llmeval_make_backend(config, spec):
        if spec.backend != "gpu-callable":
            return None
        backend = CallableBackend(replace(spec, backend="callable"), CallableOptions())
        backend.energy_devices = lambda: (0,)
        return backend
    """
)
PYPROJECT = textwrap.dedent(
    """
    [tool.llmeval.models.big]
    model = "answers:reply"
    backend = "gpu-callable"
    vram_gb = 80

    [tool.llmeval.models.small]
    model = "answers:reply"
    backend = "gpu-callable"
    vram_gb = 1
    """
)
REASON = (
    "model big skipped: needs ~80.0 GB (the alias's vram_gb) but cuda:0 has 38.2 GB free; "
    "give it a larger GPU or --llmeval-vram-check off"
)


@pytest.fixture
def gpu_project(evalproject: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    evalproject.makeconftest(GPU_CONFTEST)
    evalproject.makefile(".toml", pyproject=PYPROJECT)
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml([50.0], free_bytes=[38.2e9]))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return evalproject


def _run(project: pytest.Pytester, *args: str) -> pytest.RunResult:
    return project.runpytest(
        "--model", "big", "--model", "small", "--llmeval-data-dir=data",
        "--llmeval-report", "out/report.json", "--llmeval-cache", "off", "-rs",
        "-p", "no:randomly", "-W", "ignore::pytest.PytestAssertRewriteWarning", *args,
    )  # fmt: skip


def test_a_model_that_does_not_fit_is_skipped_and_the_other_runs(
    gpu_project: pytest.Pytester,
) -> None:
    result = _run(gpu_project)
    result.assert_outcomes(passed=11, skipped=10)  # 10 items of small and its gate
    result.stdout.fnmatch_lines(
        [f"SKIPPED {REASON} (10 items skipped)", f"SKIPPED [[]10[]] *: {REASON}"]
    )
    report = json.loads((gpu_project.path / "out" / "report.json").read_text())
    loads = {load["model"]: load for load in report["model_loads"]}
    assert loads["big"]["skipped_reason"] == REASON and loads["big"]["items_skipped"] == 10
    assert loads["big"]["model_loads"] == 0
    assert loads["small"]["skipped_reason"] is None
    assert loads["small"]["vram_check"] == (
        "fits: needs ~1.0 GB (the alias's vram_gb), cuda:0 has 38.2 GB free"
    )


def test_vram_check_off_loads_it_anyway(gpu_project: pytest.Pytester) -> None:
    result = _run(gpu_project, "--llmeval-vram-check", "off")
    result.assert_outcomes(passed=22)  # 20 items and two gates
    report = json.loads((gpu_project.path / "out" / "report.json").read_text())
    assert {load["model"]: load["vram_check"] for load in report["model_loads"]} == {
        "big": None,
        "small": None,
    }


def test_a_finished_model_is_served_from_the_cache_on_a_gpu_too_small_to_load_it(
    gpu_project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check comes right before the weights would load: a rerun whose generations are all
    cached loads nothing, so a busy GPU skips nothing; only items left to generate skip."""

    def run(free: float, cache: str) -> tuple[pytest.RunResult, dict[str, Any]]:
        monkeypatch.setitem(sys.modules, "pynvml", FakeNvml([50.0], free_bytes=[free]))
        (gpu_project.path / "out" / "report.json").unlink(missing_ok=True)
        result = gpu_project.runpytest(
            "--model", "big", "--model", "small", "--llmeval-data-dir=data",
            "--llmeval-report", "out/report.json",
            "--llmeval-cache", cache, "-rs", "-p", "no:randomly",
            "-W", "ignore::pytest.PytestAssertRewriteWarning",
        )  # fmt: skip
        report = json.loads((gpu_project.path / "out" / "report.json").read_text())
        return result, {load["model"]: load for load in report["model_loads"]}["big"]

    first, load = run(free=100e9, cache="on")  # 80 GB fit in 100: generated and cached
    first.assert_outcomes(passed=22)  # 10 items and a gate per model
    assert load["items_skipped"] == 0
    again, load = run(free=38.2e9, cache="on")  # now too little, but nothing to load
    again.assert_outcomes(passed=22)
    assert load["items_skipped"] == 0 and load["skipped_reason"] is None
    cold, load = run(free=38.2e9, cache="off")  # every item needs the model: all skipped
    cold.assert_outcomes(passed=11, skipped=10)  # big's 10 items; small's items and gate
    assert load["items_skipped"] == 10 and load["skipped_reason"] == REASON


def test_a_run_whose_only_model_does_not_fit_reports_it_and_fails_its_gates(
    gpu_project: pytest.Pytester,
) -> None:
    """Every item skipped: the run still writes its report (the skip and its reason), and the
    task's gate, which checked nothing, fails with why instead of the run passing unchecked."""
    result = gpu_project.runpytest(
        "--model", "big", "--llmeval-data-dir=data", "--llmeval-report", "out/report.json",
        "--llmeval-cache", "off", "-rs", "-p", "no:randomly",
        "-W", "ignore::pytest.PytestAssertRewriteWarning",
    )  # fmt: skip
    result.assert_outcomes(skipped=10, failed=1)  # the 10 items; the task's gate
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([f"SKIPPED {REASON} (10 items skipped)"])
    report = json.loads((gpu_project.path / "out" / "report.json").read_text())
    (load,) = report["model_loads"]
    assert load["skipped_reason"] == REASON and load["items_skipped"] == 10
    (gate,) = report["gates"]
    assert gate["passed"] is False
    assert gate["reason"] == (
        "no data: every item was skipped (why: the SKIPPED lines of the llmeval summary)"
    )
