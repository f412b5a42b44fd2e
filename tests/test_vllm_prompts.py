"""The vLLM backend sends token ids rendered once: one BOS, never a second one added by vLLM.

Llama-3, Gemma-2 and Mistral chat templates write BOS themselves and their tokenizers add BOS
again when asked to add special tokens, which is what vLLM does to a string prompt. The
tokenizers here are built locally with the real templates and BOS post-processing
(`chat_tokenizers.py`); the engine is the fake in `fake_vllm.py`.
"""

from __future__ import annotations

from pathlib import Path

import fake_vllm
import pytest
from chat_tokenizers import CHAT_MODELS, ChatModel, save_tokenizer
from transformers import AutoTokenizer

from pytest_llmeval.backends import GenerationRequest
from pytest_llmeval.backends.chat_tokens import prompt_token_ids, render_chat
from pytest_llmeval.backends.vllm_backend import VLLMBackend, VLLMOptions
from pytest_llmeval.declare.models import ModelSpec
from pytest_llmeval.declare.task import Generation

QUESTION = [{"role": "user", "content": "Natalia sold 48 clips in April. How many in May?"}]


@pytest.fixture(params=CHAT_MODELS, ids=lambda model: model.name)
def chat_model(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[ChatModel, Path]:
    return request.param, save_tokenizer(request.param, tmp_path / request.param.name)


def test_a_string_prompt_would_get_two_bos_tokens(chat_model: tuple[ChatModel, Path]) -> None:
    """The defect, shown with the tokenizer alone: what vLLM does to a templated string."""
    model, directory = chat_model
    tokenizer = AutoTokenizer.from_pretrained(directory)
    text = render_chat(tokenizer, QUESTION)
    assert text.startswith(model.bos)
    with_specials = tokenizer(text).input_ids
    assert with_specials[:2] == [tokenizer.bos_token_id] * 2
    once = prompt_token_ids(tokenizer, text)
    assert once.count(tokenizer.bos_token_id) == 1 and once[0] == tokenizer.bos_token_id


def test_vllm_gets_token_ids_with_one_bos(
    chat_model: tuple[ChatModel, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    model, directory = chat_model
    vllm = fake_vllm.install(monkeypatch)
    spec = ModelSpec(name=model.name, backend="vllm", model_id=str(directory))
    backend = VLLMBackend(spec, VLLMOptions())
    request = GenerationRequest(QUESTION, Generation(max_new_tokens=8), item_id="gsm8k/test/0000")
    [result] = backend.generate([request], "b1")

    [engine] = vllm.LLM.created
    [sent] = engine.calls[0].prompt_token_ids
    bos = engine.tokenizer.bos_token_id
    assert sent[0] == bos and sent.count(bos) == 1
    # Nothing else changed: the ids are the rendered prompt, and the record counts them.
    assert engine.tokenizer.decode(sent) == result.prompt == backend.render(QUESTION)
    assert result.tokens_in == len(sent)
