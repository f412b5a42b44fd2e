"""Continuous batching on the transformers backend (issue 12, target 4).

`batching = "continuous"` hands a worker's whole share to transformers' continuous batching
(a finished sequence's slot refilled with the next prompt at once). It must keep what the
static batches guarantee: the same greedy texts, token counts and finish reasons, results in
request order, each result on disk as its request finishes, and decoding it cannot honour
(seeded sampling, stop strings) sent through the static batches with a reason. Runs on the
embedded model with a few GSM8K test rows.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Hashable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import REPO_ROOT, shared_data_dir
from pytest_llmeval.backends import BackendError, GenerationRequest
from pytest_llmeval.backends.options import parse_options
from pytest_llmeval.backends.transformers_backend import (
    TransformersBackend,
    TransformersOptions,
    continuous_refusal,
    pick_batching,
)
from pytest_llmeval.declare.models import ModelSpec, resolve_model
from pytest_llmeval.declare.task import Generation, Message
from pytest_llmeval.run.cache import GenerationCache
from pytest_llmeval.run.engine import Engine

GREEDY = Generation(max_new_tokens=24)


def gsm8k_prompts(n: int) -> list[str]:
    """The first `n` GSM8K test questions in the shipped prompt."""
    namespace: dict[str, Any] = {}
    source = (REPO_ROOT / "evals" / "test_gsm8k.py").read_text()
    exec(compile(source.split("gsm8k = Task(")[0], "test_gsm8k.py", "exec"), namespace)
    path = shared_data_dir() / "gsm8k" / "test.jsonl"
    if not path.is_file():
        pytest.skip(f"no GSM8K copy at {path}")
    with path.open() as handle:
        rows = [json.loads(line) for _, line in zip(range(n), handle, strict=False)]
    return [str(namespace["PROMPT"]).format(**row) for row in rows]


@dataclass
class Item:
    nodeid: str
    model_spec: ModelSpec
    content: str
    settings: Generation = GREEDY

    def batch_key(self) -> Hashable:
        return self.settings

    def request(self) -> GenerationRequest:
        messages: list[Message] = [{"role": "user", "content": self.content}]
        return GenerationRequest(messages, self.settings, item_id=self.nodeid)


@pytest.fixture(scope="module")
def backends() -> Iterator[tuple[TransformersBackend, TransformersBackend]]:
    """A static and a continuous backend on one set of embedded-model weights."""
    spec = resolve_model("smollm2-135m")
    static = TransformersBackend(spec, TransformersOptions(batching="static"))
    continuous = TransformersBackend(spec, TransformersOptions(batching="continuous"))
    continuous._model, continuous.stop_ids = static.model, static.stop_ids
    yield static, continuous
    static.close()


# --- the option ------------------------------------------------------------------------------


def test_a_misspelt_batching_value_is_one_clear_line() -> None:
    spec = ModelSpec("m", "transformers", "x", options={"batching": "contiuous"})
    with pytest.raises(BackendError) as caught:
        parse_options(TransformersOptions, spec, {})
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("model 'm' (transformers backend): option 'batching' must be")
    assert "'static', 'continuous' or 'auto'" in message
    assert "'contiuous'" in message


def test_auto_is_static_everywhere_until_continuous_is_measured_faster() -> None:
    assert pick_batching(None) == "static"
    assert pick_batching("auto") == "static"
    assert pick_batching("static") == "static"
    assert pick_batching("continuous") == "continuous"


def test_the_static_backend_does_not_stream(
    backends: tuple[TransformersBackend, TransformersBackend],
) -> None:
    static, continuous = backends
    assert static.generate_stream is None  # the engine cuts its share into batches
    assert callable(continuous.generate_stream)
    assert static.info()["batching"] == "static"


def test_what_continuous_batching_cannot_decode_is_named() -> None:
    assert continuous_refusal(GREEDY) is None
    sampled = continuous_refusal(Generation(temperature=0.7, seed=1))
    assert sampled is not None and "per-row seeds" in sampled
    assert "stop strings" in str(continuous_refusal(Generation(stop=("\n\n",))))
    assert "repetition penalty" in str(continuous_refusal(Generation(repetition_penalty=1.2)))


# --- the embedded model ----------------------------------------------------------------------


def test_continuous_gives_the_static_texts_in_order_each_committed_as_it_finishes(
    backends: tuple[TransformersBackend, TransformersBackend], tmp_path: Path
) -> None:
    static, continuous = backends
    items = [Item(f"gsm8k/test/{i:04d}", static.spec, p) for i, p in enumerate(gsm8k_prompts(4))]
    expected = static.generate([item.request() for item in items], "static")
    engine = Engine(
        make_backend=lambda spec: continuous, batch_size=2, cache=GenerationCache(tmp_path)
    )
    commits: list[int] = []
    put_many = engine.cache.put_many  # type: ignore[union-attr]

    def counted(entries: Any) -> None:
        entries = list(entries)
        commits.append(len(entries))
        put_many(entries)

    engine.cache.put_many = counted  # type: ignore[union-attr,method-assign]

    # The first item's setup streams the whole share; the others read their results.
    results = [engine.result_for(items[0], items[1:])]
    assert continuous.max_in_flight == 4  # twice the two sequences decoding at once
    assert len(commits) >= 4
    results += [engine.result_for(item, ()) for item in items[1:]]

    # Each request was on disk as it finished (a commit of its own), before the window of
    # two that holds it closed and rewrote both with their energy.
    assert commits[:2] == [1, 1] and commits.count(1) == 4, commits
    with sqlite3.connect(tmp_path / "generations.sqlite3") as conn:
        assert conn.execute("SELECT COUNT(*) FROM generations").fetchone()[0] == 4
    for got, want in zip(results, expected, strict=True):  # each item its own result
        assert (got.text, got.tokens_in, got.tokens_out, got.finish_reason) == (
            want.text,
            want.tokens_in,
            want.tokens_out,
            want.finish_reason,
        )
        assert got.prompt == want.prompt
        assert got.decoding == want.decoding
        assert got.pad_tokens == 0  # every sequence runs at its own length
        assert got.latency_s > 0
        assert got.latency_method.startswith("continuous batching: from the request's admission")
        assert got.batch_size <= 2


def test_a_sampled_share_goes_through_static_batches_with_a_reason(
    backends: tuple[TransformersBackend, TransformersBackend],
) -> None:
    static, continuous = backends
    # Short questions: this test is about the path taken, not GSM8K's decode.
    prompts = [f"What is {i} + {i}?" for i in range(3)]
    sampled = Generation(max_new_tokens=6, temperature=0.8, seed=5)
    requests = [
        Item(f"arith/{i}", static.spec, p, sampled).request() for i, p in enumerate(prompts)
    ]
    # The static path's batches of two, as the engine's batch size asks.
    expected = static.generate(requests[:2], "a") + static.generate(requests[2:], "b")

    with pytest.warns(UserWarning, match="static batches instead of continuous batching: sampled"):
        finished = [pair for group in continuous.generate_stream(requests, 2) for pair in group]

    results = dict(finished)
    texts = [getattr(results[i], "text", None) for i in range(3)]
    assert texts == [e.text for e in expected]
    seeds = [getattr(results[i], "decoding", {})["seed"] for i in range(3)]
    assert seeds == [r.seed for r in requests]
    assert continuous.info()["batching_notes"] == [continuous_refusal(sampled)]
