"""A chat prompt rendered once: the model's chat template applied, then tokenized as is.

Chat templates of Llama-3, Gemma-2, Mistral and others write the BOS token themselves, and
their tokenizers add BOS again when asked to add special tokens, which is what an engine does
to a string prompt by default (vLLM's `LLM.generate`, a `/v1/completions` server). The prompt
then starts with two BOS tokens, a different input from the one the model was trained on.
So a backend that tokenizes renders the template here and tokenizes the text with
`add_special_tokens=False`, exactly as `apply_chat_template(tokenize=True)` and vLLM's own
chat path do, and hands the engine token ids, not text.
"""

from __future__ import annotations

from typing import Any

from pytest_llmeval.declare.task import Message


def render_chat(tokenizer: Any, messages: list[Message]) -> str:
    """The prompt text the model sees: `messages` through the tokenizer's chat template, with
    the assistant turn opened (`add_generation_prompt`)."""
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return str(rendered)


def prompt_token_ids(tokenizer: Any, prompt: str) -> list[int]:
    """The token ids of a rendered prompt, with no special token added: the template already
    wrote the ones the model expects."""
    return [int(token) for token in tokenizer(prompt, add_special_tokens=False)["input_ids"]]
