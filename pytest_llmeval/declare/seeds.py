"""The seed of one sampled generation, derived from the task seed, the item id and the sample.

A sampled draw must not depend on what it happens to be batched with, on the batch size, on
`-n` or on where a killed run resumed: so every (item, sample index) gets its own seed, a pure
function of the task's `Generation.seed`, the item's stable id and the sample index, and the
backend seeds that one generation with it (a per-row generator on transformers, a per-request
seed on vLLM and OpenAI-compatible servers).
"""

from __future__ import annotations

import hashlib

SEED_BITS = 31
"""Seeds stay below 2**31: every engine we send them to (torch, vLLM, llama.cpp's uint32,
OpenAI's integer `seed`) accepts that range."""


def sample_seed(task_seed: int, item_id: str, sample_index: int = 0) -> int:
    """The seed of sample `sample_index` of item `item_id` under task seed `task_seed`."""
    text = f"{task_seed}\x1f{item_id}\x1f{sample_index}".encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "big") % (1 << SEED_BITS)
