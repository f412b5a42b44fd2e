"""One request and its answer on the wire, for the openai backend: no sending, no state.

- The body POSTed for a `GenerationRequest` (chat messages, or the prompt rendered with the
  model's chat template for "completions"), and the decoding settings it carries, which
  become the record's `decoding`.
- The answer: an HTTP error turned into one message (a context refusal into its own,
  `openai_refusal.py`), the JSON object checked, then the text (with the server-separated
  reasoning put back where the reasoning splitter looks), token counts from `usage` and the
  finish reason.

Every message that quotes the server's text goes through `scrub`, which masks the API key
and long header values (servers echo requests in their error bodies).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from pytest_llmeval.backends import BackendError, GenerationRequest, PromptRefused
from pytest_llmeval.backends.openai_refusal import context_refusal, refusal
from pytest_llmeval.backends.openai_server import decoding_fields
from pytest_llmeval.backends.prompt_template import ChatTemplate
from pytest_llmeval.declare.redact import redact_mapping
from pytest_llmeval.declare.task import Message

if TYPE_CHECKING:
    import requests

ENDPOINTS = {"chat": "chat/completions", "completions": "completions"}


def rendered(messages: list[Message], template: ChatTemplate | None) -> str:
    """With a template ("completions"), the prompt sent: the model's chat template applied,
    with the assistant's header. Without ("chat"), the messages as canonical JSON (sorted
    keys, no spaces): what identifies the prompt in the cache key and in reports."""
    if template is None:
        return json.dumps(messages, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return template.render(messages)


def request_body(
    model: str,
    request: GenerationRequest,
    kind: str,
    template: ChatTemplate | None,
    extra_body: Mapping[str, Any],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The request body for a server of `kind`, and the decoding settings it carries (the
    record's `decoding`). A template's stop strings join the request's own."""
    stop = request.settings.stop + (template.stop if template else ())
    settings = replace(request.settings, stop=tuple(dict.fromkeys(stop)))
    fields, left = decoding_fields(settings, request.seed, kind, extra_body)
    body: dict[str, Any] = {"model": model}
    if template is None:
        body["messages"] = request.messages
    else:
        body["prompt"] = template.render(request.messages)
        if kind == "vllm":
            # vLLM's completions API adds special tokens by default: a template that
            # starts with BOS (Llama-3, Gemma) would get a second one.
            body["add_special_tokens"] = False
    decoding = {**fields, "seed": fields.get("seed"), "server": kind, "server_defaults": left}
    decoding |= redact_mapping({k: v for k, v in extra_body.items() if k in decoding})
    if template is not None:
        decoding["chat_template_sha256"] = template.sha256
    return body | fields, decoding


def answer_json(
    response: requests.Response,
    url: str,
    after: str,
    body: dict[str, Any],
    scrub: Callable[[str], str],
) -> dict[str, Any]:
    """The JSON object a server answered to `body` at `url`; BackendError for an HTTP error
    (`after`: the attempts it took, for the message), malformed JSON or anything else."""
    if not response.ok:
        text = scrub(response.text)
        # A context overflow is the item's own problem (PromptRefused), any other refusal
        # (401, 404 model not found) may be the model's.
        error = PromptRefused if context_refusal(text) else BackendError
        raise error(refusal(response.status_code, f"{url} {after}", text, body))
    try:
        data = response.json()
    except ValueError:
        raise BackendError(f"malformed JSON from {url}: {scrub(response.text)[:200]!r}") from None
    if not isinstance(data, dict):
        raise BackendError(
            f"unexpected response from {url} (not a JSON object): {scrub(response.text)[:200]!r}"
        )
    return data


def parse_answer(
    data: dict[str, Any], endpoint: str, url: str, scrub: Callable[[str], str]
) -> tuple[str, tuple[int, int] | None, str]:
    """Text, (tokens in, tokens out) from usage if given, and finish reason; BackendError
    when the answer has no usable `choices[0]`."""
    try:
        choice = data["choices"][0]
        if endpoint == "chat":
            message = choice["message"]
            text = message.get("content") or ""
            reasoning = message.get("reasoning_content") or message.get("reasoning")
        else:
            text, reasoning = choice["text"], None
        if not isinstance(text, str):
            raise TypeError("text is not a string")
    except (KeyError, IndexError, TypeError, AttributeError) as exc:
        raise BackendError(
            f"unexpected response from {url} (no usable choices[0]: {exc!r}): "
            f"{scrub(json.dumps(data))[:200]!r}"
        ) from None
    if isinstance(reasoning, str) and reasoning:
        # Keep the server-separated reasoning where the reasoning splitter looks for it.
        text = f"<think>{reasoning}</think>{text}"
    usage = data.get("usage")
    tokens = None
    if isinstance(usage, dict):
        counted = usage.get("prompt_tokens"), usage.get("completion_tokens")
        if isinstance(counted[0], int) and isinstance(counted[1], int):
            tokens = (counted[0], counted[1])
    return text, tokens, str(choice.get("finish_reason") or "unknown")
