"""A checkpoint's parameter count, read from its files without loading the weights.

Two sources, best first:

- **safetensors headers** (exact): a `.safetensors` file starts with an 8-byte little-endian
  header length and a JSON header giving every tensor's shape, so the count is the sum of
  their products, read from a few kilobytes whatever the checkpoint's size. A sharded
  checkpoint lists its files in `model.safetensors.index.json`. Tied weights are stored once
  (as `sum(p.numel() for p in model.parameters())` counts them). A quantized checkpoint
  (GPTQ, AWQ: packed integer tensors) is not counted this way: its stored shapes are not its
  parameters, so it falls through to the config.
- **config.json estimate** for the decoder architectures whose layout is known here: `llama`,
  `mistral`, `qwen2` and `qwen3` (embeddings, an untied output head, per layer the attention
  projections with grouped key/value heads and their biases, the gated MLP and two norms,
  the final norm). It matches what transformers builds for those layouts; it is called an
  estimate because a variant config key it does not read would change the truth.

Anything else: None (the transformers backend still reports the loaded model's count).
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HEADER = "safetensors header"
CONFIG = "config estimate"
LOADED = "loaded model"

# A header longer than this is not a safetensors header (the format caps it at 100 MB).
_MAX_HEADER = 100_000_000
_ESTIMATED = ("llama", "mistral", "qwen2", "qwen3")


@dataclass(frozen=True)
class ParameterCount:
    """A parameter count and where it came from (`HEADER`, `CONFIG` or `LOADED`)."""

    parameters: int
    source: str


def count_parameters(directory: Path) -> ParameterCount | None:
    """The parameters of the checkpoint in `directory`: from its safetensors headers, else
    estimated from its config.json; None when neither can say (or it is no directory)."""
    if not directory.is_dir():
        return None
    counted = safetensors_parameters(directory)
    if counted is not None:
        return ParameterCount(counted, HEADER)
    config = _read_json(directory / "config.json")
    estimated = None if config is None else config_parameters(config)
    return None if estimated is None else ParameterCount(estimated, CONFIG)


def safetensors_parameters(directory: Path) -> int | None:
    """The sum of every stored tensor's element count over the checkpoint's safetensors
    files (the index's shards, else every `*.safetensors`); None when there are none, a
    header cannot be read, or the config says the weights are quantized."""
    config = _read_json(directory / "config.json") or {}
    if "quantization_config" in config:
        return None
    index = _read_json(directory / "model.safetensors.index.json")
    if index is not None and isinstance(index.get("weight_map"), dict):
        files = [directory / name for name in sorted(set(index["weight_map"].values()))]
    else:
        files = sorted(directory.glob("*.safetensors"))
    if not files:
        return None
    total = 0
    for path in files:
        header = read_header(path)
        if header is None:
            return None
        for name, entry in header.items():
            if name == "__metadata__" or not isinstance(entry, dict):
                continue
            total += math.prod(int(size) for size in entry.get("shape", []))
    return total


def read_header(path: Path) -> dict[str, Any] | None:
    """The JSON header of one safetensors file (None: missing, truncated or not one)."""
    try:
        with path.open("rb") as handle:
            head = handle.read(8)
            if len(head) < 8:
                return None
            (length,) = struct.unpack("<Q", head)
            if length > _MAX_HEADER:
                return None
            header = json.loads(handle.read(length))
    except (OSError, ValueError):
        return None
    return header if isinstance(header, dict) else None


def config_parameters(config: dict[str, Any]) -> int | None:
    """The parameter count a llama / mistral / qwen2 / qwen3 config.json describes (see the
    module doc); None for another `model_type` or a config missing a size it needs."""
    if config.get("model_type") not in _ESTIMATED:
        return None
    try:
        vocab = int(config["vocab_size"])
        hidden = int(config["hidden_size"])
        layers = int(config["num_hidden_layers"])
        heads = int(config["num_attention_heads"])
        inter = int(config["intermediate_size"])
        kv_heads = int(config.get("num_key_value_heads") or heads)
        head_dim = int(config.get("head_dim") or hidden // heads)
    except (KeyError, TypeError, ValueError):
        return None
    kind = config["model_type"]
    q, kv = heads * head_dim, kv_heads * head_dim
    attention = hidden * q + 2 * hidden * kv + q * hidden
    if kind in ("qwen2",):  # q, k and v projections carry a bias, o does not
        attention += q + 2 * kv
    elif config.get("attention_bias"):  # llama / mistral / qwen3: all four when asked
        attention += q + 2 * kv + hidden
    if kind == "qwen3":  # per-head RMS norms on queries and keys
        attention += 2 * head_dim
    mlp = 3 * hidden * inter + (2 * inter + hidden if config.get("mlp_bias") else 0)
    layer = attention + mlp + 2 * hidden  # input and post-attention norms
    embeddings = vocab * hidden
    head = 0 if config.get("tie_word_embeddings", False) else vocab * hidden
    return embeddings + layers * layer + hidden + head


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None
