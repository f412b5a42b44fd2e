"""The vLLM backend's mapping of our settings, its identity and its latency (vLLM needs a GPU
and is not installed here: the engine is the fake in `fake_vllm.py`)."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import fake_vllm
import pytest
import torch
import transformers
from chat_tokenizers import CHAT_MODELS, save_tokenizer

from pytest_llmeval.backends import (
    BackendError,
    GenerationRequest,
    GenerationResult,
    create_backend,
)
from pytest_llmeval.backends.options import parse_options
from pytest_llmeval.backends.vllm_backend import (
    INSTALL_HINT,
    VLLMBackend,
    VLLMOptions,
    engine_kwargs,
    generated_tokens,
    request_latency,
    sampling_kwargs,
)
from pytest_llmeval.declare.models import ModelSpec, resolve_model
from pytest_llmeval.declare.task import Generation

QUESTION = [{"role": "user", "content": "What is 6 times 7?"}]
SAMPLED = Generation(
    max_new_tokens=32,
    temperature=0.7,
    top_p=0.95,
    top_k=40,
    repetition_penalty=1.1,
    stop=("\n\n", "###"),
    seed=3,
)


def request(item_id: str, settings: Generation = SAMPLED) -> GenerationRequest:
    return GenerationRequest(QUESTION, settings, item_id=item_id)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local Llama-3-Instruct-like tokenizer directory (what `vllm:<dir>` loads)."""
    return save_tokenizer(CHAT_MODELS[0], tmp_path_factory.mktemp("llama3"))


def make_backend(model_dir: Path, **options: Any) -> VLLMBackend:
    spec = ModelSpec(name="m", backend="vllm", model_id=str(model_dir), options=options)
    return VLLMBackend(spec, parse_options(VLLMOptions, spec, {}))


# --- sampling parameters (issue 10, points 7 and 8) -------------------------------------------


def test_greedy_pins_every_setting_and_sends_no_seed() -> None:
    greedy = Generation(max_new_tokens=64, temperature=0.0, top_p=0.9, top_k=40, seed=7)
    assert sampling_kwargs(request("t/test/0000", greedy)) == {
        "n": 1,
        "max_tokens": 64,
        "temperature": 0.0,
        "top_p": 1.0,
        "top_k": -1,
        "min_p": 0.0,
        "repetition_penalty": 1.0,
        "presence_penalty": 0.0,
        "frequency_penalty": 0.0,
        "stop": [],
        "seed": None,
    }


def test_sampling_sends_every_setting_and_the_items_own_seed() -> None:
    assert sampling_kwargs(request("gsm8k/test/0042")) == {
        "n": 1,
        "max_tokens": 32,
        "temperature": 0.7,
        "top_p": 0.95,
        "top_k": 40,
        "min_p": 0.0,
        "repetition_penalty": 1.1,
        "presence_penalty": 0.0,
        "frequency_penalty": 0.0,
        "stop": ["\n\n", "###"],
        "seed": 207581563,  # sample_seed(3, "gsm8k/test/0042", 0)
    }


def test_no_top_k_cut_is_minus_one_which_every_vllm_version_accepts() -> None:
    settings = Generation(temperature=1.0, top_k=0)
    kwargs = sampling_kwargs(request("t/test/0000", settings))
    assert kwargs["top_k"] == -1
    fake_vllm.SamplingParams(**kwargs)  # 0 would be rejected by vLLM before 0.8


def test_each_request_in_a_batch_gets_its_own_seeded_params(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    vllm = fake_vllm.install(monkeypatch)
    backend = make_backend(model_dir)
    results = backend.generate([request("gsm8k/test/0042"), request("gsm8k/test/0043")], "b1")
    [call] = vllm.LLM.created[0].calls
    assert [params.seed for params in call.params] == [207581563, 1271418934]
    # The record says what was sent, seed included.
    assert [r.decoding for r in results] == [params.kwargs for params in call.params]
    assert results[1].decoding is not None and results[1].decoding["seed"] == 1271418934


def test_a_request_gets_the_same_params_alone_or_in_a_batch_of_five(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    vllm = fake_vllm.install(monkeypatch)
    backend = make_backend(model_dir)
    [alone] = backend.generate([request("gsm8k/test/0042")], "b1")
    batch = [request(f"gsm8k/test/{i:04d}") for i in range(40, 45)]
    in_batch = backend.generate(batch, "b2")
    first, second = vllm.LLM.created[0].calls
    assert first.params[0].kwargs == second.params[2].kwargs
    assert alone.decoding == in_batch[2].decoding
    assert len({params.seed for params in second.params}) == 5


def test_greedy_batch_sends_temperature_zero_and_no_seed(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    vllm = fake_vllm.install(monkeypatch)
    results = make_backend(model_dir).generate(
        [request(f"t/test/{i:04d}", Generation(max_new_tokens=8)) for i in range(3)], "b1"
    )
    [call] = vllm.LLM.created[0].calls
    assert all(p.temperature == 0.0 and p.seed is None for p in call.params)
    assert all(r.decoding is not None and r.decoding["seed"] is None for r in results)


# --- latency (issue 10, point 10) ----------------------------------------------------------------

FINISHED = "vllm request metrics: first scheduled until finished"
BATCH_WALL = (
    "batch wall time: this vLLM version reported no per-request metrics "
    "(not this item's own latency)"
)


def test_request_latency_from_v0_metrics() -> None:
    timed = SimpleNamespace(metrics=SimpleNamespace(first_scheduled_time=10.0, finished_time=12.5))
    assert request_latency(timed, batch_wall=9.0) == (2.5, FINISHED)


def test_request_latency_from_v1_stats_on_one_clock() -> None:
    # arrival_time is the frontend's wall clock, the *_ts the engine core's monotonic clock:
    # only same-clock pairs are subtracted.
    stats = SimpleNamespace(arrival_time=1.7e9, scheduled_ts=51.0, last_token_ts=52.25)
    assert request_latency(SimpleNamespace(metrics=stats), batch_wall=9.0) == (
        1.25,
        "vllm request metrics: first scheduled until last token (engine-core clock)",
    )
    unset = SimpleNamespace(arrival_time=1.7e9, scheduled_ts=0.0, last_token_ts=0.0)
    assert request_latency(SimpleNamespace(metrics=unset), batch_wall=9.0) == (9.0, BATCH_WALL)


def test_request_latency_without_metrics_says_it_is_the_batch_wall() -> None:
    assert request_latency(SimpleNamespace(metrics=None), batch_wall=9.0) == (9.0, BATCH_WALL)
    assert request_latency(SimpleNamespace(), batch_wall=9.0) == (9.0, BATCH_WALL)


@pytest.mark.parametrize(
    ("metrics", "method", "own"),
    [
        ("v0", FINISHED, [0.5, 1.5]),
        (
            "v1",
            "vllm request metrics: first scheduled until last token (engine-core clock)",
            [0.5, 1.5],
        ),
        (None, BATCH_WALL, None),
    ],
)
def test_each_item_names_the_latency_branch_used(
    model_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    metrics: str | None,
    method: str,
    own: list[float] | None,
) -> None:
    fake_vllm.install(monkeypatch, metrics=metrics)
    results = make_backend(model_dir).generate([request("t/0"), request("t/1")], "b1")
    assert [r.latency_method for r in results] == [method, method]
    latencies = [r.latency_s for r in results]
    assert latencies == (own or [results[0].batch_wall_s] * 2)


# --- identity: the cache key of a local vLLM engine (issue 10, point 6) -----------------------


def test_identity_names_versions_device_and_engine_options(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    vllm = fake_vllm.install(monkeypatch, version="0.10.1", gpu_name="NVIDIA H100 80GB HBM3")
    identity = make_backend(model_dir, max_model_len=4096, quantization="fp8").identity()
    assert vllm.LLM.created == []  # a cache lookup starts no engine
    expected = {
        "vllm_version": "0.10.1",
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "device_type": "cuda",
        "gpu_name": "NVIDIA H100 80GB HBM3",
        "max_model_len": 4096,
        "tensor_parallel_size": None,
        "quantization": "fp8",
        "enforce_eager": None,
    }
    assert {key: identity.get(key, "missing") for key in expected} == expected


def test_the_identity_names_the_tokenizer_files_so_items_are_keyed_by_messages(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 12: with the tokenizer files in the key, a cached item is never rendered."""
    from pytest_llmeval.backends.hf_files import read_tokenizer_files

    fake_vllm.install(monkeypatch)
    backend = make_backend(model_dir)
    files = read_tokenizer_files(model_dir)
    assert files is not None and backend.identity()["tokenizer_sha256"] == files.tokenizer_sha256
    assert backend.renders_from_identity is True


Change = Callable[[pytest.MonkeyPatch], dict[str, Any]]


def _bump_version(monkeypatch: pytest.MonkeyPatch, package: str) -> dict[str, Any]:
    module = importlib.import_module(package)
    monkeypatch.setattr(module, "__version__", f"{module.__version__}.other")
    return {}


CHANGES: dict[str, Change] = {
    "vllm version": lambda mp: {"version": "0.11.0"},
    "gpu": lambda mp: {"gpu_name": "NVIDIA A100-SXM4-80GB"},
    # Derived from the installed versions, so the change is a change whatever the machine has;
    # set on the module as imported now (a test before may have re-imported transformers).
    "torch version": lambda mp: _bump_version(mp, "torch"),
    "transformers version": lambda mp: _bump_version(mp, "transformers"),
    "max_model_len": lambda mp: {"options": {"max_model_len": 8192}},
    "tensor_parallel_size": lambda mp: {"options": {"tensor_parallel_size": 2}},
    "dtype": lambda mp: {"options": {"dtype": "float16"}},
    "quantization": lambda mp: {"options": {"quantization": "awq"}},
    "enforce_eager": lambda mp: {"options": {"enforce_eager": True}},
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_identity_differs_when_any_numerics_fact_differs(
    change: str, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def identity(version: str = "0.10.1", gpu_name: str = "NVIDIA H100", **rest: Any) -> Any:
        fake_vllm.install(monkeypatch, version=version, gpu_name=gpu_name)
        return make_backend(model_dir, **rest.get("options", {})).identity()

    base = identity()
    assert identity(**CHANGES[change](monkeypatch)) != base


def test_identity_without_a_gpu_or_vllm_platform_info(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_vllm.install(monkeypatch)  # no vllm.platforms: torch is asked
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cpu = make_backend(model_dir).identity()
    assert (cpu["device_type"], cpu["gpu_name"]) == ("cpu", None)

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA L4")
    gpu = make_backend(model_dir).identity()
    assert (gpu["device_type"], gpu["gpu_name"]) == ("cuda", "NVIDIA L4")


def test_prompt_ids_and_counts_reach_the_result(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_vllm.install(monkeypatch)
    [result] = make_backend(model_dir).generate([request("t/0")], "b1")
    assert isinstance(result, GenerationResult)
    assert (result.text, result.tokens_out, result.finish_reason) == ("42", 2, "stop")


# --- engine options ------------------------------------------------------------------------------


def test_engine_kwargs_pass_through_alias_options() -> None:
    spec = ModelSpec(
        name="q",
        backend="vllm",
        model_id="Qwen/Qwen2.5-7B-Instruct",
        revision="abc",
        options={"gpu_memory_utilization": 0.8, "max_model_len": 4096, "quantization": "awq"},
    )
    bfloat16 = parse_options(VLLMOptions, spec, {"dtype": "bfloat16"})
    assert engine_kwargs(spec, "/models/q", bfloat16) == {
        "model": "/models/q",
        "dtype": "bfloat16",
        "revision": "abc",
        "gpu_memory_utilization": 0.8,
        "max_model_len": 4096,
        "quantization": "awq",
    }
    no_dtype = parse_options(VLLMOptions, spec, {"dtype": None})
    assert engine_kwargs(spec, "/m", no_dtype)["dtype"] == "auto"


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_missing_vllm_gives_the_install_hint() -> None:
    spec = resolve_model("vllm:qwen0.5b")
    assert spec.backend == "vllm" and spec.model_id == "Qwen/Qwen2.5-0.5B-Instruct"
    with pytest.raises(BackendError, match="pip install vllm") as caught:
        create_backend(spec, {})
    assert str(caught.value) == INSTALL_HINT


@pytest.mark.parametrize(
    ("finish_reason", "stop_reason", "expected"),
    [
        ("stop", None, 4),  # ended on EOS: vLLM keeps it in token_ids
        ("stop", 128009, 4),  # ended on a stop token id
        ("stop", "\n\n", 5),  # a stop string: its tokens stay counted, as on transformers
        ("length", None, 5),
    ],
)
def test_generated_tokens_leave_out_the_end_token(
    finish_reason: str, stop_reason: object, expected: int
) -> None:
    choice = SimpleNamespace(
        token_ids=[1, 2, 3, 4, 5], finish_reason=finish_reason, stop_reason=stop_reason
    )
    assert generated_tokens(choice) == expected


# --- model sweeps: unload before the next model loads (issue 16) -----------------------------


def test_unload_drops_the_engine_and_calls_vllms_cleanup_then_loads_again(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys
    from types import ModuleType

    vllm = fake_vllm.install(monkeypatch)
    cleanups: list[int] = []
    distributed = ModuleType("vllm.distributed")
    distributed.cleanup_dist_env_and_memory = lambda: cleanups.append(len(vllm.LLM.created))  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vllm.distributed", distributed)
    backend = make_backend(model_dir)
    assert backend.unload() is None  # nothing built yet: nothing to release
    backend.load()
    assert backend.info()["model_loads"] == 1
    # The fake keeps every LLM it made in `created`: the object is not freed, and says so.
    assert backend.unload() is False
    assert cleanups == [1] and backend.info()["model_loads"] == 0
    backend.generate([request("gsm8k/test/0001")], "b1")  # the next batch builds a new engine
    assert len(vllm.LLM.created) == 2 and backend.info()["model_loads"] == 1
