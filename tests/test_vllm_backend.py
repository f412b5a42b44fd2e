"""The vLLM backend's mapping of our settings (vLLM itself needs a GPU; not installed here)."""

from __future__ import annotations

import importlib.util
from types import SimpleNamespace

import pytest

from pytest_llmeval.backends import BackendError, create_backend
from pytest_llmeval.backends.options import parse_options
from pytest_llmeval.backends.vllm_backend import (
    INSTALL_HINT,
    VLLMOptions,
    engine_kwargs,
    generated_tokens,
    request_latency,
    sampling_kwargs,
)
from pytest_llmeval.declare.models import ModelSpec, resolve_model
from pytest_llmeval.declare.task import Generation


def test_greedy_maps_to_temperature_zero_without_seed() -> None:
    kwargs = sampling_kwargs(Generation(max_new_tokens=64, temperature=0.0, top_p=0.9, seed=7))
    assert kwargs == {"max_tokens": 64, "temperature": 0.0, "top_p": 1.0, "n": 1}


def test_sampling_keeps_temperature_top_p_seed_and_stops() -> None:
    settings = Generation(
        max_new_tokens=32, temperature=0.7, top_p=0.95, stop=("\n\n", "###"), seed=3
    )
    assert sampling_kwargs(settings) == {
        "max_tokens": 32,
        "temperature": 0.7,
        "top_p": 0.95,
        "n": 1,
        "stop": ["\n\n", "###"],
        "seed": 3,
    }


def test_engine_kwargs_pass_through_alias_options() -> None:
    spec = ModelSpec(
        name="q",
        backend="vllm",
        model_id="Qwen/Qwen2.5-7B-Instruct",
        revision="abc",
        options={"gpu_memory_utilization": 0.8, "max_model_len": 4096},
    )
    bfloat16 = parse_options(VLLMOptions, spec, {"dtype": "bfloat16"})
    assert engine_kwargs(spec, "/models/q", bfloat16) == {
        "model": "/models/q",
        "dtype": "bfloat16",
        "revision": "abc",
        "gpu_memory_utilization": 0.8,
        "max_model_len": 4096,
    }
    no_dtype = parse_options(VLLMOptions, spec, {"dtype": None})
    assert engine_kwargs(spec, "/m", no_dtype)["dtype"] == "auto"


def test_request_latency_from_metrics_or_fallback() -> None:
    timed = SimpleNamespace(metrics=SimpleNamespace(first_scheduled_time=10.0, finished_time=12.5))
    assert request_latency(timed, fallback=9.0) == 2.5
    assert request_latency(SimpleNamespace(metrics=None), fallback=9.0) == 9.0


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
