"""The completions endpoint gets the model's own chat template and its stop tokens (issue 10,
point 11), never a made-up `role: content` transcript."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fault_server import FaultServer
from served_model import embedded_model_dir

from pytest_llmeval.backends import BackendError, GenerationRequest, create_backend
from pytest_llmeval.backends.openai_backend import OpenAIBackend
from pytest_llmeval.declare.models import ModelSpec
from pytest_llmeval.declare.task import Generation

MESSAGES = [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": "what is 2 + 2?"},
]
FAST = {"connect_timeout": 1, "read_timeout": 2, "max_retries": 1, "backoff_s": 0.01}


@pytest.fixture(scope="module")
def expected() -> str:
    """The embedded tokenizer's own rendering, as `transformers` itself does it."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(embedded_model_dir())
    text = tokenizer.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
    assert isinstance(text, str)
    return text


@pytest.fixture
def server() -> Iterator[FaultServer]:
    with FaultServer(kind="llama.cpp") as running:
        yield running


def backend(model: str, url: str, **options: Any) -> OpenAIBackend:
    spec = ModelSpec(
        "served", "openai", f"{model}@{url}", options={**FAST, "endpoint": "completions", **options}
    )
    made = create_backend(spec, {})
    assert isinstance(made, OpenAIBackend)
    return made


def template_sha() -> str:
    text = (Path(embedded_model_dir()) / "chat_template.jinja").read_text()
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@pytest.mark.parametrize(
    "how",
    [
        {"tokenizer": "EMBEDDED"},  # a local tokenizer directory
        {"chat_template": "EMBEDDED/chat_template.jinja"},  # a template file alone
        {},  # the served model id is a local directory (as `transformers serve` names it)
    ],
)
def test_completions_prompt_is_the_chat_template_with_its_stop_token(
    server: FaultServer, expected: str, how: dict[str, str]
) -> None:
    here = embedded_model_dir()
    options = {k: v.replace("EMBEDDED", here) for k, v in how.items()}
    model = here if not how else "served-alias"
    run = backend(model, server.base_url, **options)
    assert run.render(MESSAGES) == expected
    request = GenerationRequest(MESSAGES, Generation(stop=("###",)))
    [result] = run.generate([request], "b1")
    sent = server.received[-1].body
    assert sent["prompt"] == expected and result.prompt == expected
    assert "<|im_end|>" in sent["stop"] and "###" in sent["stop"]
    assert result.decoding["chat_template_sha256"] == template_sha()
    assert result.decoding["stop"] == sent["stop"]
    assert run.identity()["chat_template_sha256"] == template_sha()


def test_no_template_is_a_clear_error_naming_the_options(server: FaultServer) -> None:
    with pytest.raises(BackendError) as caught:
        backend("llama-3-8b-instruct", server.base_url)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(
        "openai backend: endpoint 'completions' needs the model's chat template and none "
        "was found for 'llama-3-8b-instruct'"
    )
    assert "option 'tokenizer'" in message and "option 'chat_template'" in message
    assert server.count() == 0


def test_a_missing_template_file_is_named(server: FaultServer, tmp_path: Path) -> None:
    missing = tmp_path / "nope.jinja"
    with pytest.raises(BackendError, match=f"option 'chat_template': cannot read {missing}"):
        backend("m", server.base_url, chat_template=str(missing))


def test_chat_endpoint_needs_no_template(server: FaultServer) -> None:
    run = backend("llama-3-8b-instruct", server.base_url, endpoint="chat")
    assert "chat_template_sha256" not in run.identity()


def test_a_vllm_server_adds_no_special_tokens_to_the_rendered_prompt() -> None:
    # The rendered template already holds BOS where the model wants one; vLLM's completions
    # API would add another by default (Llama-3, Gemma-2: two BOS tokens).
    with FaultServer(kind="vllm") as vllm_server:
        run = backend("test-model", vllm_server.base_url, tokenizer=embedded_model_dir())
        run.generate([GenerationRequest(MESSAGES, Generation())], "b1")
        assert vllm_server.received[-1].body["add_special_tokens"] is False
    with FaultServer(kind="llama.cpp") as other:
        run = backend("served-alias", other.base_url, tokenizer=embedded_model_dir())
        run.generate([GenerationRequest(MESSAGES, Generation())], "b1")
        assert "add_special_tokens" not in other.received[-1].body
