"""Batches cut from the worker's whole share by prompt token length (as lm-evaluation-harness
does), each committed and journaled as it runs; the padding share of a task."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import item_record
from pytest_llmeval.analyze.aggregate import summarize
from pytest_llmeval.analyze.performance import padding_share
from pytest_llmeval.backends import GenerationRequest, GenerationResult
from pytest_llmeval.declare.models import ModelSpec
from pytest_llmeval.declare.task import Generation, Message
from pytest_llmeval.run.batching import cut_batches, length_order
from pytest_llmeval.run.cache import GenerationCache
from pytest_llmeval.run.crash_journal import BatchJournal, read_batch
from pytest_llmeval.run.engine import Engine

# A share whose character and token orders disagree: a token here is a word, and the long
# words make the few-token prompts the longest in characters. Sorting by characters (the
# old order) would batch "x" * 30 (1 token) with the 8-token prompts.
LENGTHS = [3, 8, 1, 5, 5, 2, 8, 7, 1, 4, 6, 3, 2, 7, 6, 4, 5, 1, 8, 2, 3, 6, 4, 7]


def prompt(position: int, tokens: int) -> str:
    """`tokens` words; the prompts with one word are the longest in characters."""
    if tokens == 1:
        return chr(ord("a") + position % 26) * 30
    return " ".join(f"w{position:02d}" for _ in range(tokens))


PROMPTS = [prompt(i, n) for i, n in enumerate(LENGTHS)]


def lm_eval_batches(prompts: Sequence[str], lengths: Sequence[int], size: int) -> list[list[str]]:
    """What lm-evaluation-harness 0.4.13 does with a worker's requests (`Collator` with
    `_collate = (-len(tokens), text)`, then `get_batched(n=size)`), written out by hand."""
    ordered = sorted(zip(prompts, lengths, strict=True), key=lambda p: (-p[1], p[0]))
    texts = [text for text, _ in ordered]
    return [texts[i : i + size] for i in range(0, len(texts), size)]


def test_a_mixed_length_share_is_sorted_by_tokens_then_text() -> None:
    assert length_order(["bb", "a", "ccc", "b"], [2, 2, 1, 2]) == [1, 3, 0, 2]
    # A backend that cannot count tokens: characters stand in.
    assert length_order(["bb", "a", "ccc"], [None, None, None]) == [2, 0, 1]
    batches = cut_batches(PROMPTS, LENGTHS, 4)
    assert [[PROMPTS[i] for i in b] for b in batches] == lm_eval_batches(PROMPTS, LENGTHS, 4)


def test_batch_invariant_batches_hold_one_length() -> None:
    lengths: list[int | None] = [3, 3, 2, None, 3, 2, 3, 3]
    prompts = [f"p{i}" for i in range(8)]
    assert cut_batches(prompts, lengths, 3, invariant=True) == [[0, 1, 4], [6, 7], [2, 5], [3]]


@pytest.mark.parametrize("size", [0, -1])
def test_a_batch_size_below_one_is_refused(size: int) -> None:
    with pytest.raises(ValueError, match="batch size must be at least 1"):
        cut_batches(["a"], [1], size)


# ---- the engine: the whole share, batch by batch ----------------------------------------


@dataclass
class Item:
    nodeid: str
    model_spec: ModelSpec
    text: str

    def batch_key(self) -> Hashable:
        return "same"

    def request(self) -> GenerationRequest:
        return GenerationRequest([{"role": "user", "content": self.text}], Generation())


class WordBackend:
    """Counts a word as a token; records each batch with the journal's entry while it ran."""

    def __init__(self, journal: Path, kill_at_batch: int | None = None) -> None:
        self.spec = ModelSpec("m", "fake", "m")
        self.default_batch_size = 4
        self.journal = journal
        self.kill_at_batch = kill_at_batch
        self.batches: list[list[str]] = []
        self.journaled: list[list[str] | None] = []

    def identity(self) -> Mapping[str, Any]:
        return {"backend": "words"}

    def render(self, messages: list[Message]) -> str:
        return messages[-1]["content"]

    def prompt_tokens(self, text: str) -> int:
        return len(text.split())

    def generate(
        self, requests: Sequence[GenerationRequest], batch_id: str
    ) -> list[GenerationResult]:
        prompts = [r.messages[-1]["content"] for r in requests]
        if len(self.batches) == self.kill_at_batch:
            raise KeyboardInterrupt  # the run is killed while this batch generates
        self.batches.append(prompts)
        self.journaled.append(read_batch(self.journal, "gw1"))
        return [
            GenerationResult(
                p.upper(), p, None, None, 0.0, "stop", batch_id, len(prompts), 0.0, "t"
            )
            for p in prompts
        ]


def engine_for(backend: WordBackend, tmp_path: Path) -> Engine:
    engine = Engine(
        make_backend=lambda spec: backend,
        cache=GenerationCache(tmp_path / "cache"),
        worker="gw1",
    )
    engine.journal = BatchJournal(tmp_path, "gw1")
    return engine


def run_share(engine: Engine, backend: WordBackend) -> dict[str, int]:
    """Runs the items in session order; per item, the batches generated before its result."""
    queue = [Item(f"t::{i}", backend.spec, text) for i, text in enumerate(PROMPTS)]
    waited = {}
    for i, item in enumerate(queue):
        assert engine.result_for(item, queue[i + 1 :]).text == item.text.upper()
        waited[item.nodeid] = len(backend.batches)
    return waited


def test_the_whole_share_is_batched_by_token_length(tmp_path: Path) -> None:
    backend = WordBackend(tmp_path)
    waited = run_share(engine_for(backend, tmp_path), backend)
    expected = lm_eval_batches(PROMPTS, LENGTHS, 4)
    # The batches lm-eval would make (not windows of 16 items sorted by characters) ...
    assert sorted(backend.batches) == sorted(expected)
    # ... the longest first, then each when the first of its items runs.
    assert backend.batches[0] == expected[0]
    assert waited["t::0"] == 2, "the first item waits for the longest batch and its own"
    # Each batch was on record in the crash journal while it ran.
    assert backend.journaled == [[f"t::{PROMPTS.index(p)}" for p in b] for b in backend.batches]
    assert read_batch(tmp_path, "gw1") is None


def test_a_killed_share_keeps_every_finished_batch(tmp_path: Path) -> None:
    killed = WordBackend(tmp_path, kill_at_batch=3)
    with pytest.raises(KeyboardInterrupt):
        run_share(engine_for(killed, tmp_path), killed)
    assert len(killed.batches) == 3
    # The rerun is served the committed batches from the cache and generates only the rest.
    rerun = WordBackend(tmp_path)
    run_share(engine_for(rerun, tmp_path), rerun)
    done = {p for batch in killed.batches for p in batch}
    redone = {p for batch in rerun.batches for p in batch}
    assert not done & redone and done | redone == set(PROMPTS)


# ---- the padding share ------------------------------------------------------------------


def test_padding_share_on_a_hand_worked_example() -> None:
    # Batch A pads prompts of 10, 7 and 5 tokens to 10: 0 + 3 + 5 = 8 pad tokens; batch B
    # holds two prompts of 4 tokens: none. Fed to the model: 30 prompt + 8 pad = 38 tokens.
    records = [
        item_record(tokens_in=10, pad_tokens=0, cached=False, batch_id="A"),
        item_record(tokens_in=7, pad_tokens=3, cached=False, batch_id="A"),
        item_record(tokens_in=5, pad_tokens=5, cached=False, batch_id="A"),
        item_record(tokens_in=4, pad_tokens=0, cached=False, batch_id="B"),
        item_record(tokens_in=4, pad_tokens=0, cached=False, batch_id="B"),
        # Not counted: a cached item (no padding this run).
        item_record(tokens_in=50, pad_tokens=None, cached=True),
    ]
    assert padding_share(records[:5]) == pytest.approx(8 / 38, abs=1e-6)
    assert summarize(records).padding_share == pytest.approx(0.210526)


def test_padding_share_is_null_when_nothing_was_padded() -> None:
    # A backend that does not pad (a server, vLLM, a callable) reports no pad tokens.
    unpadded = [item_record(tokens_in=12, cached=False, batch_id="A")]
    assert padding_share(unpadded) is None
    assert padding_share([]) is None
