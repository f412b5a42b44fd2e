"""What decides a checkpoint's rendered prompts, read from its files without transformers.

The generation cache keys a local model's items by their chat messages, not by the rendered
prompt, so that a rerun served from the cache never loads the tokenizer (nor imports torch
and transformers). That is sound only if the key names everything the rendering depends on:
the chat template and the tokenizer (its special tokens, which templates write, and its
vocabulary, which decides the tokens). Both are read here, as bytes, from the files
`AutoTokenizer` reads them from.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

# The files a Hugging Face tokenizer is built from (any that exist), in a fixed order.
TOKENIZER_FILES = (
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "tokenizer.json",
    "tokenizer.model",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "chat_template.jinja",
    "chat_template.json",
)


@dataclass(frozen=True)
class TokenizerFiles:
    """A checkpoint's chat template and tokenizer, fingerprinted from its files."""

    chat_template_sha256: str | None
    """16 hex digits of the chat template's SHA-256 (None: the files name no template)."""
    tokenizer_sha256: str
    """16 hex digits of a SHA-256 over the tokenizer files' names and bytes."""


def read_tokenizer_files(directory: Path) -> TokenizerFiles | None:
    """The template and tokenizer fingerprints of a checkpoint directory; None when it is
    not a directory or holds no tokenizer_config.json (then only the tokenizer can say)."""
    if not (directory / "tokenizer_config.json").is_file():
        return None
    digest = hashlib.sha256()
    for name in TOKENIZER_FILES:
        path = directory / name
        if path.is_file():
            data = path.read_bytes()
            digest.update(f"{name}:{len(data)};".encode())
            digest.update(data)
    return TokenizerFiles(_template_sha256(directory), digest.hexdigest()[:16])


def _template_sha256(directory: Path) -> str | None:
    """The template transformers would use: `chat_template.jinja`, else the
    `chat_template` of tokenizer_config.json (a string, or named templates as JSON)."""
    jinja = directory / "chat_template.jinja"
    if jinja.is_file():
        return template_sha256(jinja.read_text(encoding="utf-8"))
    try:
        config = json.loads((directory / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    template = config.get("chat_template") if isinstance(config, dict) else None
    if not template:
        return None
    if isinstance(template, str):
        return template_sha256(template)
    return template_sha256(json.dumps(template, sort_keys=True))


def template_sha256(template: str) -> str:
    """16 hex digits of a chat template's SHA-256 (the report's `chat_template_sha256`)."""
    return hashlib.sha256(template.encode()).hexdigest()[:16]
