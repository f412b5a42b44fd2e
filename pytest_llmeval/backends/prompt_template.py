"""The model's chat template for a server's plain completions endpoint.

`/v1/completions` takes a finished prompt string, so the client must render the chat the
way the model was trained to see it, and must send the template's end-of-turn text as a
stop sequence (a server stops at the tokenizer's EOS token, which is often not the token that
ends an assistant turn). Found, in this order: a template file (option `chat_template`), the
tokenizer of option `tokenizer` (a local directory or a Hub id), the tokenizer of the served
model id (a local directory, the Hugging Face cache, the embedded model, or the Hub when it
is reachable). With none of them: `BackendError`, never a made-up `role: content` transcript.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pytest_llmeval.backends import BackendError
from pytest_llmeval.backends.weights import EMBEDDED_HUB_ID, locate_weights
from pytest_llmeval.declare.data import hub_reachable
from pytest_llmeval.declare.task import Message

log = logging.getLogger(__name__)

# Renders a turn to find the text the template puts after an assistant reply.
_PROBE_REPLY = "\x1fREPLY\x1f"


@dataclass(frozen=True)
class ChatTemplate:
    """A chat template ready to render: its text, where it came from, and its stop texts."""

    text: str
    source: str
    stop: tuple[str, ...]
    tokenizer: Any = None  # a transformers tokenizer when one was found (renders exactly)
    special: tuple[tuple[str, str], ...] = ()  # bos_token etc. for the template-file path

    @property
    def sha256(self) -> str:
        """The template's identity (16 hex digits, as the local backends report it)."""
        return hashlib.sha256(self.text.encode()).hexdigest()[:16]

    def render(self, messages: list[Message]) -> str:
        """The prompt for the completions endpoint: the chat plus the assistant's header."""
        return self._render(messages, add_generation_prompt=True)

    def _render(self, messages: list[Message], *, add_generation_prompt: bool) -> str:
        if self.tokenizer is not None:
            rendered = self.tokenizer.apply_chat_template(
                messages,
                chat_template=self.text,
                tokenize=False,
                add_generation_prompt=add_generation_prompt,
            )
            return str(rendered)
        return str(
            _compiled(self.text).render(
                messages=messages, add_generation_prompt=add_generation_prompt, **dict(self.special)
            )
        )


def load_template(model: str, tokenizer: str | None, chat_template: str | None) -> ChatTemplate:
    """The chat template for `model` (the name the server gets), from the options
    `tokenizer` and `chat_template`; raises a one-line BackendError naming them if none."""
    found = _tokenizer(tokenizer or model, explicit=tokenizer is not None)
    if chat_template is not None:
        path = Path(chat_template).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise BackendError(
                f"openai backend: option 'chat_template': cannot read {path}: {exc.strerror}"
            ) from None
        source = f"file:{path}"
    elif found is not None and isinstance(found.chat_template, str) and found.chat_template:
        text, source = found.chat_template, f"tokenizer:{found.name_or_path}"
    else:
        where = "" if found is None else f" (tokenizer {found.name_or_path} has none)"
        raise BackendError(
            "openai backend: endpoint 'completions' needs the model's chat template and none "
            f"was found for {model!r}{where}; set option 'tokenizer' (a local tokenizer "
            "directory or Hub id) or option 'chat_template' (a .jinja file), or use "
            'endpoint = "chat"'
        )
    special: dict[str, str] = {}
    if found is not None:
        special = {k: v for k, v in found.special_tokens_map.items() if isinstance(v, str)}
    template = ChatTemplate(text, source, (), found, tuple(sorted(special.items())))
    stop = [_end_of_turn(template), special.get("eos_token", "")]
    return ChatTemplate(
        text, source, tuple(dict.fromkeys(s for s in stop if s)), found, template.special
    )


def _tokenizer(name: str, *, explicit: bool) -> Any:
    """A transformers tokenizer for `name`, or None when none is at hand (or no transformers)."""
    try:
        from transformers import AutoTokenizer
    except ImportError:
        if explicit:
            raise BackendError(
                "openai backend: option 'tokenizer' needs transformers: pip install transformers"
            ) from None
        return None
    candidates = [name] if Path(name).expanduser().is_dir() else []
    if not candidates and name == EMBEDDED_HUB_ID:
        candidates.append(locate_weights(name, None).path)
    for where in candidates or [name]:
        try:
            return AutoTokenizer.from_pretrained(
                str(Path(where).expanduser()), local_files_only=True
            )
        except (OSError, ValueError):
            pass
    if not candidates and "/" in name and hub_reachable():
        try:
            return AutoTokenizer.from_pretrained(name)  # the tokenizer files only
        except (OSError, ValueError) as exc:
            log.info("no tokenizer for %s on the Hub: %s", name, exc)
    if explicit:
        raise BackendError(
            f"openai backend: option 'tokenizer': no tokenizer found at {name!r} (not a local "
            "directory, not in the Hugging Face cache, and not on a reachable Hub)"
        )
    return None


def _end_of_turn(template: ChatTemplate) -> str:
    """The text the template writes right after an assistant reply (e.g. `<|im_end|>`,
    `<|eot_id|>`, `<end_of_turn>`): where a completion must stop."""
    chat = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": _PROBE_REPLY}]
    try:
        rendered = template._render(chat, add_generation_prompt=False)
    except Exception as exc:  # noqa: BLE001 - a template that cannot render a plain turn
        raise BackendError(
            f"openai backend: the chat template ({template.source}) fails on a plain chat: {exc}"
        ) from None
    after = rendered.rpartition(_PROBE_REPLY)[2]
    return after.strip().split()[0] if after.strip() else ""


def _compiled(text: str) -> Any:
    """The template compiled as transformers compiles it (sandboxed, trimmed blocks)."""
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise BackendError(f"openai backend: the chat template refused the chat: {message}")

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols]
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env.from_string(text)


def _tojson(
    value: Any, ensure_ascii: bool = False, indent: int | None = None, sort_keys: bool = False
) -> str:
    """Jinja's `tojson` as transformers defines it (no HTML escaping, unicode kept)."""
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, sort_keys=sort_keys)
