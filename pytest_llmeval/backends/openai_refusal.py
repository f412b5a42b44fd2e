"""A server's refusal of one request (HTTP 4xx) as one clear item error.

The OpenAI-compatible backend does not know the served model's context; the server checks it
and answers 400. Its body is JSON in one of a few shapes (OpenAI and llama.cpp:
``{"error": {"message"}}``; vLLM: ``{"message"}``; TGI: ``{"error": "..."}``); for a context
overflow the item error quotes the server's whole message and says what to change.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pytest_llmeval.backends import one_line

# Phrases servers use for a prompt that does not fit: OpenAI and vLLM ("maximum context
# length"), llama.cpp ("exceeds the available context size"), TGI ("must have less than ...
# tokens"), and the generic ones.
_CONTEXT_PHRASES = (
    "context length",
    "context size",
    "context window",
    "max_model_len",
    "maximum model length",
    "too many tokens",
    "prompt is too long",
    "must have less than",
)


def server_message(text: str) -> str:
    """The human part of an error body: its `message` / `error` string when it is JSON in a
    known shape, else the text itself; on one line."""
    try:
        data: Any = json.loads(text)
    except ValueError:
        return one_line(text)
    if isinstance(data, Mapping):
        error = data.get("error")
        if isinstance(error, Mapping) and isinstance(error.get("message"), str):
            return one_line(error["message"])
        if isinstance(error, str):
            return one_line(error)
        if isinstance(data.get("message"), str):
            return one_line(data["message"])
    return one_line(text)


def context_refusal(text: str) -> bool:
    """Whether an error body's message says the prompt does not fit the model's context."""
    message = server_message(text).lower()
    return any(phrase in message for phrase in _CONTEXT_PHRASES)


def refusal(status: int, where: str, text: str, body: Mapping[str, Any]) -> str:
    """The item error for a request the server refused: `HTTP <status> from <where>: ` and
    the body's first 200 characters, or, when the server's message says the prompt does not
    fit the model's context, that whole message (the counts in it are what the user needs)
    and what to change."""
    message = server_message(text)
    if not context_refusal(text):
        return f"HTTP {status} from {where}: {text[:200]}"
    new = body.get("max_tokens", body.get("max_completion_tokens"))
    return (
        f"HTTP {status} from {where}: {message} (the prompt and max_new_tokens {new} do not "
        "fit the served model's context: shorten the prompt or lower max_new_tokens)"
    )
