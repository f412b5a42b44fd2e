"""Separating a response's reasoning from its final answer: `<think>` blocks and gpt-oss
harmony channels. Every extractor calls `split_reasoning` before it reads an answer.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_THINK_OPEN = "<think>"
_THINK_CLOSE = "</think>"
_THINK_BLOCK = re.compile(r"<think>(.*?)</think>", re.DOTALL)
# Harmony (gpt-oss) message: the header may carry extra tokens such as
# "to=functions.x <|constrain|>json" between the channel name and <|message|>.
_HARMONY_MESSAGE = re.compile(
    r"<\|channel\|>(\w+)(?:.*?)<\|message\|>(.*?)"
    r"(?=<\|end\|>|<\|return\|>|<\|call\|>|<\|start\|>|<\|channel\|>|\Z)",
    re.DOTALL,
)
# When special tokens are skipped while decoding, harmony output collapses to
# "analysis<reasoning>assistantfinal<answer>".
_DECODED_FINAL = "assistantfinal"


def _join_reasoning(parts: Sequence[str]) -> str:
    return "\n".join(p.strip() for p in parts if p.strip())


def _split_harmony(text: str) -> tuple[str, str] | None:
    messages = _HARMONY_MESSAGE.findall(text)
    if messages:
        finals = [body for channel, body in messages if channel == "final"]
        reasoning = _join_reasoning([b for c, b in messages if c != "final"])
        # No final channel means generation stopped while still analysing.
        return reasoning, finals[-1].strip() if finals else ""
    if _DECODED_FINAL in text:
        head, _, answer = text.rpartition(_DECODED_FINAL)
        head = head.strip()
        if head.startswith("analysis"):
            head = head[len("analysis") :]
        return head.strip(), answer.strip()
    return None


def split_reasoning(text: str) -> tuple[str, str]:
    """Split a response into ``(reasoning, answer)``; call before scoring.

    Understands ``<think>...</think>`` blocks (several are joined), an
    unclosed ``<think>`` (everything after it is reasoning: the model ran out
    of tokens), a lone ``</think>`` (the opening tag was in the prompt, so
    everything before it is reasoning) and gpt-oss harmony channels, both with
    special tokens and in the decoded ``analysis...assistantfinal...`` form.
    Text without any markers is returned as ``("", text.strip())``.
    """
    harmony = _split_harmony(text)
    if harmony is not None:
        return harmony

    parts: list[str] = []
    rest = text
    first_close = rest.find(_THINK_CLOSE)
    first_open = rest.find(_THINK_OPEN)
    if first_close != -1 and (first_open == -1 or first_close < first_open):
        parts.append(rest[:first_close])
        rest = rest[first_close + len(_THINK_CLOSE) :]
    parts.extend(_THINK_BLOCK.findall(rest))
    rest = _THINK_BLOCK.sub("", rest)
    unclosed = rest.find(_THINK_OPEN)
    if unclosed != -1:
        parts.append(rest[unclosed + len(_THINK_OPEN) :])
        rest = rest[:unclosed]
    return _join_reasoning(parts), rest.strip()
