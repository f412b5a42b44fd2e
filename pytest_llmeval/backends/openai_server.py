"""What an OpenAI-compatible server is, and what to send it: pure functions, no HTTP.

- The server kind, from option `server` or the `owned_by` of its `/v1/models` entry
  ("vllm", "llamacpp"; anything else is a generic server that takes the standard fields only,
  like the official API and `transformers serve`, which reject unknown fields with HTTP 422).
- The facts of its `/v1/models` entry that identify the weights (part of the cache key).
- The request's decoding fields under that kind's names, and which settings a generic
  server is left to choose.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pytest_llmeval.backends import BackendError
from pytest_llmeval.declare.task import Generation

SERVER_KINDS = ("auto", "llama.cpp", "openai", "vllm")
OWNED_BY = {"vllm": "vllm", "llamacpp": "llama.cpp"}

# Per kind: the request field for each non-standard setting, and its "off" value when it
# differs from ours (vLLM before 0.8 refuses top_k 0; -1 means off in every version).
_FIELDS: dict[str, dict[str, tuple[str, Any]]] = {
    "vllm": {"top_k": ("top_k", -1), "repetition_penalty": ("repetition_penalty", None)},
    "llama.cpp": {"top_k": ("top_k", 0), "repetition_penalty": ("repeat_penalty", None)},
    "openai": {},
}
# Every name a server may know a setting by: `extra_body` setting one of them sets it.
_ALIASES = {"top_k": ("top_k",), "repetition_penalty": ("repetition_penalty", "repeat_penalty")}
_NEUTRAL = {"top_k": 0, "repetition_penalty": 1.0}

# Entry fields that change between calls to the same server: vLLM and llama.cpp put the time
# of the call in `created` and vLLM fresh ids in `permission`; llama.cpp's router a load
# `status`. Every other field (id, root, parent, owned_by, max_model_len, llama.cpp's meta
# with n_params/size, ...) stays: it tells one set of weights from another.
VOLATILE_FIELDS = frozenset({"created", "object", "permission", "status"})

# The request itself, which extra_body must not replace.
_RESERVED = ("model", "messages", "prompt")


def check_extra_body(extra_body: Mapping[str, Any]) -> dict[str, Any]:
    """Option `extra_body` as a plain dict; BackendError if it would replace the request."""
    for key in _RESERVED:
        if key in extra_body:
            raise BackendError(
                f"openai backend: option 'extra_body' may not set {key!r} (the request itself)"
            )
    return dict(extra_body)


def check_kind(kind: str) -> str:
    """Option `server`, checked."""
    if kind not in SERVER_KINDS:
        raise BackendError(
            f"openai backend: option 'server' must be one of {', '.join(SERVER_KINDS)}, "
            f"got {kind!r}"
        )
    return kind


def kind_of(entry: Mapping[str, Any] | None) -> str:
    """The server kind its `/v1/models` entry shows ("openai": generic, standard fields only)."""
    owner = entry.get("owned_by") if entry else None
    return OWNED_BY.get(owner, "openai") if isinstance(owner, str) else "openai"


def models_entry(listing: Any, model: str) -> dict[str, Any] | None:
    """The `/v1/models` entry of `model` without its volatile fields, or None when the
    listing names no such model. A llama.cpp server serves its one model whatever name is
    asked for, so its one entry is taken; elsewhere a lone entry of another name may be
    unrelated (`transformers serve` lists the Hugging Face cache, not what it serves)."""
    data = listing.get("data") if isinstance(listing, Mapping) else None
    entries = [e for e in data if isinstance(e, Mapping)] if isinstance(data, list) else []
    matching = [e for e in entries if e.get("id") == model]
    if not matching and len(entries) == 1 and kind_of(entries[0]) == "llama.cpp":
        matching = entries
    if not matching:
        return None
    return {k: v for k, v in matching[0].items() if k not in VOLATILE_FIELDS}


def decoding_fields(
    settings: Generation, seed: int | None, kind: str, extra_body: Mapping[str, Any]
) -> tuple[dict[str, Any], list[str]]:
    """The request's decoding fields for a server of `kind`, and the settings left to the
    server's own defaults (a generic server takes no top_k or repetition penalty).

    The standard fields are always sent: `max_tokens`, `temperature`, `top_p`,
    `frequency_penalty` and `presence_penalty` 0 (`transformers serve` reads a frequency
    penalty of 0 as repetition_penalty 1.0), `seed` when sampling (the item's own) and `stop`
    when there are stop sequences. `extra_body` is merged last: it wins over everything.
    Raises BackendError when the settings ask for a non-neutral top_k or repetition penalty
    that this kind of server cannot take (and `extra_body` does not set).
    """
    fields: dict[str, Any] = {
        "max_tokens": settings.max_new_tokens,
        "temperature": settings.temperature,
        "top_p": settings.top_p,
        "frequency_penalty": 0.0,
        "presence_penalty": 0.0,
    }
    if seed is not None:
        fields["seed"] = seed
    if settings.stop:
        fields["stop"] = list(settings.stop)
    left: list[str] = []
    refused: list[str] = []
    for setting, neutral in _NEUTRAL.items():
        value = getattr(settings, setting)
        if setting in _FIELDS[kind]:
            name, off = _FIELDS[kind][setting]
            fields[name] = off if value == neutral and off is not None else value
        elif any(alias in extra_body for alias in _ALIASES[setting]):
            continue
        elif value != neutral:
            refused.append(f"{setting}={value}")
        else:
            left.append(setting)
    if refused:
        names = ", ".join(r.partition("=")[0] for r in refused)
        raise BackendError(
            f"openai backend: the server (kind {kind!r}) takes no {names}; the task asks "
            f'{", ".join(refused)}: set option server = "vllm" or "llama.cpp" if it '
            "accepts them, or pass them in extra_body"
        )
    return fields | dict(extra_body), left
