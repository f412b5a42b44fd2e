"""Issue 10 point 7: a sampled draw belongs to its (item, sample), not to its batch.

Each (item, sample index) draws with its own seed, derived from the task seed and the item id,
so a sampled run gives the same texts whatever the batch size, `-n` or resume point (CPU, fp32).
"""

from __future__ import annotations

import json
import textwrap
from typing import Any

import pytest
import torch

from conftest import run_evals
from pytest_llmeval.backends import GenerationRequest
from pytest_llmeval.backends.callable_backend import CallableBackend, CallableOptions
from pytest_llmeval.declare.models import ModelSpec, resolve_model
from pytest_llmeval.declare.task import Generation

# Six arithmetic rows; the last repeats the first one's text (same prompt, another item).
DRAWS_TASK = textwrap.dedent(
    """
    from pytest_llmeval import ChatPrompt, DataSource, Generation, Task, scoring

    QUESTIONS = [("3 + 4", 7), ("12 - 5", 7), ("6 x 7", 42), ("9 + 8", 17), ("15 - 6", 9),
                 ("3 + 4", 7)]

    def rows():
        return [{{"question": f"What is {{q}}?", "answer": str(a)}} for q, a in QUESTIONS]

    draws = Task(
        name="draws",
        data=DataSource(generate=rows, split="demo"),
        prompt=ChatPrompt(user="{{question}} Answer with a short sentence."),
        target="answer",
        scorer=scoring.numeric,
        generation=Generation(temperature=0.8, max_new_tokens=12, seed={seed}),
    )
    """
)


def _sampler(seeds: list[int], **settings: Any) -> Any:
    from pytest_llmeval.backends.hf_decoding import PerRowSampler

    return PerRowSampler(seeds, Generation(**settings))


def _draws(sampler: Any, scores: torch.Tensor, steps: int) -> list[list[int]]:
    """The token each row draws at each of `steps` steps from the same `scores`."""
    ids = torch.zeros((scores.shape[0], 1), dtype=torch.long)
    picks = [sampler(ids, scores.clone()).argmax(dim=-1).tolist() for _ in range(steps)]
    return [list(row) for row in zip(*picks, strict=True)]


def test_a_rows_draws_do_not_depend_on_its_batch_mates() -> None:
    torch.manual_seed(0)
    scores = torch.randn(3, 50)
    together = _draws(_sampler([11, 22, 33], temperature=1.0), scores, 12)
    alone = _draws(_sampler([22], temperature=1.0), scores[1:2], 12)
    reordered = _draws(_sampler([33, 22], temperature=1.0), scores[[2, 1]], 12)
    assert together[1] == alone[0] == reordered[1]
    assert together[2] == reordered[0]
    # Another seed draws another sequence from the same scores.
    assert _draws(_sampler([23], temperature=1.0), scores[1:2], 12)[0] != alone[0]
    # The global RNG neither decides the draws nor moves.
    torch.manual_seed(99)
    state = torch.get_rng_state()
    assert _draws(_sampler([22], temperature=1.0), scores[1:2], 12)[0] == alone[0]
    assert torch.equal(torch.get_rng_state(), state)


def _chi_square(counts: list[int], probs: list[float]) -> float:
    total = sum(counts)
    return sum((c - total * p) ** 2 / (total * p) for c, p in zip(counts, probs, strict=True))


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        # softmax([2, 1, 0.5] / 0.5): top-k 3 of the logits below (scipy.special.softmax)
        ({"temperature": 0.5, "top_k": 3}, [0.843795, 0.114195, 0.04201]),
        # softmax(logits) cut to the smallest set reaching 0.8 (3 tokens: 0.8958), renormalised
        ({"temperature": 1.0, "top_p": 0.8}, [0.628532, 0.231224, 0.140244]),
    ],
)
def test_draws_follow_the_warped_distribution(
    settings: dict[str, Any], expected: list[float]
) -> None:
    rows = 3000
    logits = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0]).repeat(rows, 1)
    sampler = _sampler(list(range(rows)), **settings)
    drawn = sampler(torch.zeros((rows, 1), dtype=torch.long), logits).argmax(dim=-1)
    counts = torch.bincount(drawn, minlength=5).tolist()
    assert counts[3:] == [0, 0], "a token outside top-k / top-p was drawn"
    # scipy.stats.chi2.ppf(0.999, df=2): the draws fit the distribution at the 0.1% level.
    assert _chi_square(counts[:3], expected) < 13.815510557964274


GIVEN: list[Generation] = []


def remember(messages: list[Any], settings: Generation) -> str:
    """A callable-backend function that keeps the settings it was given."""
    GIVEN.append(settings)
    return "ok"


def test_the_callable_gets_the_items_own_seed() -> None:
    GIVEN.clear()
    target = f"{__name__}:remember"
    backend = CallableBackend(ModelSpec("c", "callable", target), CallableOptions())
    sampled = Generation(temperature=0.7, seed=5, max_new_tokens=8)
    messages = [{"role": "user", "content": "hi"}]
    requests = [
        GenerationRequest(messages, sampled, item_id="t/x/0000"),
        GenerationRequest(messages, sampled, item_id="t/x/0001"),
        GenerationRequest(messages, Generation(seed=5), item_id="t/x/0000"),
    ]
    results = backend.generate(requests, "b")
    seeds = [request.seed for request in requests]
    assert seeds[0] != seeds[1] and None not in seeds[:2] and seeds[2] is None
    # Sampled: the item's own seed; greedy draws nothing, so the task seed stays.
    assert [given.seed for given in GIVEN] == [seeds[0], seeds[1], 5]
    assert [r.decoding for r in results] == [
        {**sampled.draw_dict(), "stop": [], "seed": seeds[0]},
        {**sampled.draw_dict(), "stop": [], "seed": seeds[1]},
        {**Generation(seed=5).draw_dict(), "stop": [], "seed": None},
    ]


def _texts(pytester: pytest.Pytester, out: str) -> dict[str, str]:
    lines = (pytester.path / out / "items.jsonl").read_text().splitlines()
    return {r["id"]: r["response"] for r in map(json.loads, lines)}


def _run(pytester: pytest.Pytester, out: str, *args: str) -> dict[str, str]:
    pytester.runpytest(
        "--llmeval-report", f"{out}/report.json",
        "-W", "ignore::pytest.PytestAssertRewriteWarning", "-p", "no:cacheprovider", *args,
    )  # fmt: skip
    return _texts(pytester, out)


@pytest.fixture
def model_modules_loaded() -> None:
    """Generate once in this process: in-process pytester runs drop the modules they import,
    and transformers' lazily imported model modules do not survive a second import."""
    from pytest_llmeval.backends.transformers_backend import (
        TransformersBackend,
        TransformersOptions,
    )

    backend = TransformersBackend(resolve_model("smollm2-135m"), TransformersOptions())
    settings = Generation(max_new_tokens=2, temperature=0.8)
    backend.generate([GenerationRequest([{"role": "user", "content": "Hi"}], settings)], "warm")
    backend.close()


@pytest.mark.usefixtures("model_modules_loaded")
def test_sampled_texts_do_not_depend_on_batch_size_workers_or_resume(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_draws=DRAWS_TASK.format(seed=5))
    off = ("--llmeval-cache", "off")
    alone = _run(pytester, "b1", "--llmeval-batch-size", "1", *off)
    assert len(alone) == 6 and all(alone.values())
    assert _run(pytester, "b6", "--llmeval-batch-size", "6", *off) == alone

    # Two xdist workers, each batching its own share.
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    pytester.runpytest_subprocess(
        "-n", "2", "--llmeval-report", "n2/report.json", "-p", "no:cacheprovider", *off
    )  # fmt: skip
    assert _texts(pytester, "n2") == alone

    # A run that stopped after half the items, then resumed from the cache.
    cache = (f"--llmeval-cache-dir={pytester.path / 'resume-cache'}",)
    _run(pytester, "half", "-k", "0000 or 0002 or 0004", "--llmeval-batch-size", "3", *cache)
    assert _run(pytester, "resumed", "--llmeval-batch-size", "6", *cache) == alone
    resumed = [json.loads(x) for x in (pytester.path / "resumed" / "items.jsonl").open()]
    assert sorted(r["cached"] for r in resumed) == [False] * 3 + [True] * 3

    # Same prompt, another item: another draw. Another task seed: other draws.
    assert alone["draws/demo/0000"] != alone["draws/demo/0005"]
    pytester.makepyfile(test_draws=DRAWS_TASK.format(seed=6))
    reseeded = _run(pytester, "seed6", "--llmeval-batch-size", "6", *off)
    assert sum(reseeded[i] != alone[i] for i in alone) >= 5
    assert {r["decoding"]["sampler"] for r in resumed} == {"per-row seeded"}


def test_the_callable_records_what_it_was_given(evalproject: pytest.Pytester) -> None:
    run_evals(evalproject, "--llmeval-cache", "off")
    lines = (evalproject.path / "out" / "items.jsonl").read_text().splitlines()
    decoding = Generation(max_new_tokens=16).draw_dict()
    assert [json.loads(line)["decoding"] for line in lines] == [
        {**decoding, "stop": [], "seed": None}
    ] * len(lines)
