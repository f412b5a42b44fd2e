"""The generation cache's keys: one sha256 per generation, over everything that changes it.

A key is the hash of a canonical JSON of the backend identity (what changes its outputs:
backend, model id, revision or weights hash, dtype, chat template and tokenizer file hashes,
versions, devices, server facts), the chat messages (for a backend whose identity names its
chat template and tokenizer) or else the rendered prompt, the generation settings, the sample
index, the sample's own seed and `KEY_VERSION`. Pure: no pytest, no torch, no database.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_llmeval.declare.task import Generation


KEY_VERSION = 3
"""Bumped whenever the meaning of a key or of a stored value changes, orphaning old entries.
2: sampled generations are keyed by their own derived seed; settings gained `top_k` and
`repetition_penalty`; backend identities name versions, devices and server facts.
3: local models are keyed by their chat messages plus template and tokenizer file hashes
(no tokenizer, torch or transformers needed to look an item up)."""


def cache_key(
    identity: Mapping[str, Any],
    prompt: str | None,
    settings: Generation,
    sample_index: int = 0,
    seed: int | None = None,
    *,
    messages: Sequence[Mapping[str, Any]] | None = None,
) -> str:
    """The cache key of one generation: the sha256 hex digest of a canonical JSON of
    ``{"identity", "prompt" or "messages", "settings", "sample", "seed", "v"}`` (sorted keys,
    no spaces).

    `identity` holds everything about the backend that changes outputs (backend name, model id,
    revision or weights hash, dtype, chat template hash, versions, server facts) and must be
    plain JSON; `prompt` is the rendered prompt, or None with `messages`, the chat messages,
    when the identity names everything that renders them (template, tokenizer files: the key
    then needs no tokenizer); `sample_index` tells apart repeated samples of
    the same prompt and `seed` is the generation's own derived seed (None for greedy decoding,
    where two items with the same prompt share one generation). Numbers are compared by value,
    so ``temperature=0`` and ``temperature=0.0`` give the same key.
    """
    if (prompt is None) == (messages is None):
        raise ValueError("cache_key needs either a rendered prompt or the messages")
    text_part: dict[str, Any] = (
        {"prompt": prompt} if messages is None else {"messages": [dict(m) for m in messages]}
    )
    payload = {
        "identity": identity,
        **text_part,
        "settings": settings.draw_dict(),
        "sample": sample_index,
        "seed": seed,
        "v": KEY_VERSION,
    }
    text = json.dumps(_canonical(payload), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def identity_sha256(identity: Mapping[str, Any]) -> str:
    """The sha256 hex digest of a backend identity as `cache_key` serializes it: equal
    digests mean the same model, weights, template, versions and devices (the report's
    per-arm provenance names the arm's identity by it)."""
    text = json.dumps(_canonical(identity), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _canonical(value: Any) -> Any:
    """`value` with integral floats as ints (1.0 -> 1) and tuples as lists, recursively."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return {key: _canonical(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(item) for item in value]
    return value
