"""Issue 10 point 8: "greedy" means one decode. The transformers backend pins every decoding
setting from `Generation` and never takes the model's own generation_config defaults (a
repetition_penalty, a top_k, ...), and each result says what it used (`decoding`)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from pytest_llmeval.backends import GenerationRequest
from pytest_llmeval.backends.weights import embedded_checkpoint
from pytest_llmeval.declare.models import ModelSpec, resolve_model
from pytest_llmeval.declare.task import Generation

PROMPTS = [
    "Count from 1 to 10, separated by commas.",
    "Tom has 12 apples and gives 5 to Ann. How many apples does Tom have left? Explain.",
    "Write the word 'yes' three times.",
]
# What checkpoints ship in generation_config.json (Qwen, Llama and others set such fields).
MODEL_DEFAULTS = {
    "repetition_penalty": 1.3,
    "top_k": 5,
    "no_repeat_ngram_size": 3,
    "do_sample": True,
    "temperature": 0.6,
}


def _backend(model_id: str) -> Any:
    from pytest_llmeval.backends.transformers_backend import (
        TransformersBackend,
        TransformersOptions,
    )

    spec = ModelSpec(name="m", backend="transformers", model_id=model_id)
    return TransformersBackend(spec, TransformersOptions(device="cpu", dtype="float32"))


@pytest.fixture(scope="module")
def plain() -> Iterator[Any]:
    backend = _backend(resolve_model("smollm2-135m").model_id)
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def opinionated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The same weights, with sampling defaults written into its generation_config.json."""
    copy = tmp_path_factory.mktemp("ckpt") / "smollm2-opinionated"
    copy.mkdir()
    for path in embedded_checkpoint().iterdir():
        # The weights are linked, not copied (540 MB); the small files are copies.
        if path.suffix == ".safetensors":
            (copy / path.name).symlink_to(path)
        else:
            shutil.copy(path, copy / path.name)
    config_path = copy / "generation_config.json"
    config = json.loads(config_path.read_text())
    config.update(MODEL_DEFAULTS)
    config_path.write_text(json.dumps(config))
    backend = _backend(str(copy))
    yield backend
    backend.close()


def _requests(settings: Generation) -> list[GenerationRequest]:
    return [
        GenerationRequest([{"role": "user", "content": p}], settings, item_id=f"t/test/{i:04d}")
        for i, p in enumerate(PROMPTS)
    ]


def test_greedy_ignores_the_models_generation_config(plain: Any, opinionated: Any) -> None:
    settings = Generation(max_new_tokens=40)
    expected = plain.generate(_requests(settings), "plain")
    got = opinionated.generate(_requests(settings), "opinionated")
    assert [r.text for r in got] == [r.text for r in expected]
    for result in got:
        assert result.decoding == {
            "sampler": "greedy",
            "do_sample": False,
            "temperature": 0.0,
            "top_p": 1.0,
            "top_k": 0,
            "repetition_penalty": 1.0,
            "max_new_tokens": 40,
            "stop_strings": [],
            "seed": None,
        }


def test_sampling_ignores_the_models_top_k(plain: Any, opinionated: Any) -> None:
    # The model's top_k=5 and temperature=0.6 must not narrow our temperature-1.0 draws.
    settings = Generation(max_new_tokens=40, temperature=1.0, seed=3)
    expected = plain.generate(_requests(settings), "plain")
    got = opinionated.generate(_requests(settings), "opinionated")
    assert [r.text for r in got] == [r.text for r in expected]
    assert [r.decoding["top_k"] for r in got if r.decoding] == [0, 0, 0]


def test_repetition_penalty_is_honoured(plain: Any) -> None:
    neutral = plain.generate(_requests(Generation(max_new_tokens=40)), "neutral")
    penalised = plain.generate(
        _requests(Generation(max_new_tokens=40, repetition_penalty=1.2)), "penalised"
    )
    assert [r.text for r in penalised] != [r.text for r in neutral]
    assert {r.decoding["repetition_penalty"] for r in penalised if r.decoding} == {1.2}


def test_sampled_decoding_names_its_settings_and_seed(plain: Any) -> None:
    settings = Generation(max_new_tokens=8, temperature=0.7, top_p=0.9, top_k=20, seed=11)
    requests = _requests(settings)
    results = plain.generate(requests, "sampled")
    for request, result in zip(requests, results, strict=True):
        assert result.decoding == {
            "sampler": "per-row seeded",
            "do_sample": True,
            "temperature": 0.7,
            "top_p": 0.9,
            "top_k": 20,
            "repetition_penalty": 1.0,
            "max_new_tokens": 8,
            "stop_strings": [],
            "seed": request.seed,
        }
    assert len({r.decoding["seed"] for r in results if r.decoding}) == len(PROMPTS)
