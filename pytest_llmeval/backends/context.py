"""A prompt must fit the model's context with room for its answer, checked before generation.

A prompt longer than the context does not fail cleanly in a local model: transformers pads the
whole batch to it and attention grows with its square (a 1 MB prompt on the 135M default model
passed 6 GB of memory in 20 s), vLLM rejects the batch it is in. So a local backend counts the
rendered prompt's tokens and refuses it, as that item's error, before any batch is formed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pytest_llmeval.backends import PromptRefused

# transformers' "no limit" sentinel for `model_max_length` is int(1e30); anything this large
# is no real limit.
_NO_LIMIT = 10**9

# Where model configs name their position limit, most common first (llama/qwen/mistral,
# gpt2, bloom-likes, chatglm-likes).
_POSITION_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")


class PromptTooLong(PromptRefused):
    """A prompt plus its `max_new_tokens` does not fit the model's context."""


def context_length(config: Any, tokenizer: Any = None) -> int | None:
    """The smallest real token limit among the model config's position limit and the
    tokenizer's `model_max_length`; None when neither names one."""
    limits: list[Any] = [getattr(config, key, None) for key in _POSITION_KEYS]
    # Multimodal configs keep the language model's limit in a sub-config.
    text_config = getattr(config, "text_config", None)
    if text_config is not None:
        limits += [getattr(text_config, key, None) for key in _POSITION_KEYS]
    limits.append(getattr(tokenizer, "model_max_length", None))
    return _smallest(limits)


def _smallest(values: Iterable[Any]) -> int | None:
    real = [int(v) for v in values if isinstance(v, int) and 0 < v < _NO_LIMIT]
    return min(real) if real else None


def check_fits(prompt_tokens: int, context: int | None, max_new_tokens: int) -> None:
    """Raise `PromptTooLong` when `prompt_tokens + max_new_tokens` exceeds `context` (a None
    context is not checked), with what to change."""
    if context is None or prompt_tokens + max_new_tokens <= context:
        return
    fix = "shorten the prompt"
    if prompt_tokens < context:
        fix += f" or lower max_new_tokens to {context - prompt_tokens}"
    else:
        fix += " or use a model with a longer context"
    raise PromptTooLong(
        f"prompt is {prompt_tokens} tokens, model context is {context} "
        f"(max_new_tokens {max_new_tokens}): {fix}"
    )
