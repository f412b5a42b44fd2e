"""How a worker's share of items is cut into generation batches: by prompt token length.

A padded batch costs as much as its longest prompt times its size, so prompts of similar
length should share a batch. The engine therefore sorts the worker's whole share (every
queued item of the same model, task and generation settings that it can see) by prompt
length in tokens, longest first, ties by prompt text, and cuts it into batches of the batch
size, as lm-evaluation-harness does with all of a worker's prompts (its `Collator` sorts by
`(-len(tokens), text)`). A backend that cannot count tokens is sorted by characters instead.

In batch-invariant mode (`--llmeval-batch-invariant`) only prompts of one token length share
a batch, so nothing is padded; a prompt whose length is unknown goes alone.
"""

from __future__ import annotations

from collections.abc import Sequence


def length_order(prompts: Sequence[str], lengths: Sequence[int | None]) -> list[int]:
    """Indices of `prompts`, longest first (`lengths` in tokens), ties by prompt text and
    then by position, so the order is deterministic. Prompts of unknown length (None) come
    after the counted ones, longest in characters first."""
    if len(prompts) != len(lengths):
        raise ValueError(f"{len(prompts)} prompts but {len(lengths)} lengths")

    def key(index: int) -> tuple[bool, int, str, int]:
        length = lengths[index]
        unknown = length is None
        size = len(prompts[index]) if length is None else length
        return (unknown, -size, prompts[index], index)

    return sorted(range(len(prompts)), key=key)


def cut_batches(
    prompts: Sequence[str],
    lengths: Sequence[int | None],
    size: int,
    invariant: bool = False,
) -> list[list[int]]:
    """Batches of indices into `prompts`, each at most `size` long, in `length_order`.

    `invariant`: a batch holds prompts of one token length only (no padding); a prompt of
    unknown length (None) is a batch of its own.
    """
    if size < 1:
        raise ValueError(f"batch size must be at least 1, got {size}")
    order = length_order(prompts, lengths)
    if not invariant:
        return [order[start : start + size] for start in range(0, len(order), size)]
    batches: list[list[int]] = []
    for index in order:
        last = batches[-1] if batches else None
        fits = (
            last is not None
            and len(last) < size
            and lengths[index] is not None
            and lengths[last[0]] == lengths[index]
        )
        if fits and last is not None:
            last.append(index)
        else:
            batches.append([index])
    return batches
