"""Typed per-model backend options: unknown keys and wrong types are errors naming the known
options, and command-line overrides beat alias values (no model loads, no network)."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_llmeval.backends import BackendError, create_backend
from pytest_llmeval.backends.callable_backend import CallableBackend, CallableOptions
from pytest_llmeval.backends.openai_backend import OpenAIBackend, OpenAIOptions
from pytest_llmeval.backends.options import parse_options
from pytest_llmeval.backends.transformers_backend import TransformersBackend, TransformersOptions
from pytest_llmeval.backends.vllm_backend import VLLMOptions, engine_kwargs
from pytest_llmeval.declare.models import ModelSpec

NO_OVERRIDES = {"device": None, "dtype": None}  # what the plugin passes without the flags
OPENAI_KNOWN = (
    "base_url, api_key_env, endpoint, concurrency, connect_timeout, read_timeout, "
    "max_retries, backoff_s, unreachable_after, headers, version, server, extra_body, "
    "tokenizer, chat_template"
)
VLLM_KNOWN = (
    "dtype, gpu_memory_utilization, max_model_len, tensor_parallel_size, enforce_eager, "
    "quantization"
)


def spec(
    backend: str, model_id: str = "org/model", name: str = "mymodel", **options: Any
) -> ModelSpec:
    return ModelSpec(name=name, backend=backend, model_id=model_id, options=options)


def error_of(spec_: ModelSpec, overrides: dict[str, Any] | None = None) -> str:
    with pytest.raises(BackendError) as caught:
        create_backend(spec_, NO_OVERRIDES if overrides is None else overrides)
    return str(caught.value)


# --- unknown options ------------------------------------------------------------------------


def test_unknown_transformers_option_names_the_known_ones() -> None:
    # Parsing comes before the constructor, so no tokenizer or weights are looked for.
    message = error_of(spec("transformers", dtyp="float16"))
    assert message == (
        "model 'mymodel' (transformers backend): unknown option 'dtyp' "
        "(did you mean 'dtype'?); known: device, dtype, batching, share_prefill"
    )


def test_unknown_callable_option_names_version() -> None:
    message = error_of(spec("callable", "json:dumps", name="pipe", temperature=0.2))
    assert message == (
        "model 'pipe' (callable backend): unknown option 'temperature'; known: version"
    )


def test_unknown_openai_option_keeps_the_openai_wording() -> None:
    message = error_of(spec("openai", "m@http://h:1/v1", name="served", concurency=4))
    assert message == (
        "model 'served' (openai backend): unknown option 'concurency' "
        f"(did you mean 'concurrency'?); known: {OPENAI_KNOWN}"
    )


def test_unknown_vllm_options_all_named_even_without_vllm_installed() -> None:
    typo = spec("vllm", name="q", max_model_length=4096, swap_space=4)
    expected = (
        "model 'q' (vllm backend): unknown options 'max_model_length' "
        f"(did you mean 'max_model_len'?), 'swap_space'; known: {VLLM_KNOWN}"
    )
    with pytest.raises(BackendError) as caught:
        parse_options(VLLMOptions, typo, NO_OVERRIDES)
    assert str(caught.value) == expected
    # create_backend parses before the constructor asks for vllm: the typo is reported first.
    assert error_of(typo) == expected


# --- wrong types ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options_type", "backend", "options", "expected"),
    [
        (
            VLLMOptions,
            "vllm",
            {"max_model_len": "4096"},
            "option 'max_model_len' must be a valid integer, got '4096' (str)",
        ),
        (
            VLLMOptions,
            "vllm",
            {"tensor_parallel_size": True},
            "option 'tensor_parallel_size' must be a valid integer, got True (bool)",
        ),
        (
            VLLMOptions,
            "vllm",
            {"enforce_eager": "yes"},
            "option 'enforce_eager' must be a valid boolean, got 'yes' (str)",
        ),
        (
            VLLMOptions,
            "vllm",
            {"gpu_memory_utilization": "0.9"},
            "option 'gpu_memory_utilization' must be a valid number, got '0.9' (str)",
        ),
        (
            TransformersOptions,
            "transformers",
            {"dtype": 16},
            "option 'dtype' must be a valid string, got 16 (int)",
        ),
        (
            OpenAIOptions,
            "openai",
            {"max_retries": 1.5},
            "option 'max_retries' must be a valid integer, got 1.5 (float)",
        ),
    ],
)
def test_wrong_type_names_option_expected_type_and_value(
    options_type: Any, backend: str, options: dict[str, Any], expected: str
) -> None:
    with pytest.raises(BackendError) as caught:
        parse_options(options_type, spec(backend, name="m", **options), NO_OVERRIDES)
    assert str(caught.value) == f"model 'm' ({backend} backend): {expected}"


def test_wrong_table_value_is_named_without_echoing_the_table() -> None:
    secret = "Bearer-abcdefgh-12345678"
    served = spec("openai", "m@http://h:1/v1", headers={"X-Auth": secret, "X-N": 1})
    message = error_of(served)
    assert message == (
        "model 'mymodel' (openai backend): option 'headers' entry 'X-N' must be a valid string, "
        "got a value of type int"
    )
    assert secret not in message


def test_an_int_is_accepted_for_a_float_and_widened() -> None:
    parsed = parse_options(VLLMOptions, spec("vllm", gpu_memory_utilization=1), NO_OVERRIDES)
    assert parsed == VLLMOptions(gpu_memory_utilization=1.0)
    assert isinstance(parsed.gpu_memory_utilization, float)


def test_a_wrong_typed_override_is_named_as_a_command_line_setting() -> None:
    with pytest.raises(BackendError) as caught:
        parse_options(TransformersOptions, spec("transformers"), {"device": 0, "dtype": None})
    assert str(caught.value) == (
        "model 'mymodel' (transformers backend): command-line setting 'device' must be "
        "a valid string, got 0 (int)"
    )


# --- overrides ------------------------------------------------------------------------------


def test_command_line_override_beats_the_alias_value() -> None:
    aliased = spec("transformers", device="cpu", dtype="float16")
    parsed = parse_options(TransformersOptions, aliased, {"device": None, "dtype": "bfloat16"})
    assert parsed == TransformersOptions(device="cpu", dtype="bfloat16")

    vllm = spec("vllm", dtype="float16", max_model_len=2048)
    kwargs = engine_kwargs(vllm, "/m", parse_options(VLLMOptions, vllm, {"dtype": "bfloat16"}))
    assert kwargs == {"model": "/m", "dtype": "bfloat16", "max_model_len": 2048}


def test_alias_value_is_used_without_an_override() -> None:
    aliased = spec("transformers", device="cpu", dtype="float16")
    assert parse_options(TransformersOptions, aliased, NO_OVERRIDES) == TransformersOptions(
        device="cpu", dtype="float16"
    )
    assert parse_options(TransformersOptions, spec("transformers"), {}) == TransformersOptions()

    vllm = spec("vllm", dtype="float16", enforce_eager=True, tensor_parallel_size=2)
    kwargs = engine_kwargs(vllm, "/m", parse_options(VLLMOptions, vllm, NO_OVERRIDES))
    assert kwargs == {
        "model": "/m",
        "dtype": "float16",
        "tensor_parallel_size": 2,
        "enforce_eager": True,
    }


def test_overrides_the_backend_does_not_have_are_ignored() -> None:
    cli = {"device": "cuda:1", "dtype": "bfloat16"}
    served = spec("openai", "m@http://h:1/v1", concurrency=3, connect_timeout=2)
    assert parse_options(OpenAIOptions, served, cli) == OpenAIOptions(
        concurrency=3, connect_timeout=2.0
    )
    made = create_backend(served, cli)
    assert isinstance(made, OpenAIBackend)
    assert (made.concurrency, made.connect_timeout) == (3, 2.0)

    pipe = create_backend(spec("callable", "json:dumps"), cli)
    assert isinstance(pipe, CallableBackend) and pipe.options == CallableOptions()

    # vLLM has a dtype but no device: the dtype applies, the device is dropped.
    assert parse_options(VLLMOptions, spec("vllm"), cli) == VLLMOptions(dtype="bfloat16")


def test_create_backend_hands_the_parsed_options_to_the_constructor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    received: list[TransformersOptions] = []

    def record(self: TransformersBackend, spec_: ModelSpec, options: TransformersOptions) -> None:
        received.append(options)  # instead of loading a tokenizer

    monkeypatch.setattr(TransformersBackend, "__init__", record)
    create_backend(spec("transformers", device="cpu", dtype="float16"), {"dtype": "float32"})
    assert received == [TransformersOptions(device="cpu", dtype="float32")]
