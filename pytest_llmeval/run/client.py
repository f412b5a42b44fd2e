"""What the `llmeval_backend` fixture gives a hand-written test: `generate(prompt) -> text`.

Generations go through the same engine as the task items: the resident model of the first
`--model` (one load per process, shared with the items), the generation cache (a rerun does
no model work) and the energy meter. Each generation becomes an item record of the test
(`source="test"`, task = the test module's name) whose outcome is the test's own, so it is in
items.jsonl, report.json and the summaries like any item.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, fields
from typing import Any

import pytest

from pytest_llmeval.analyze.record import ItemRecord, Outcome, TaskInfo
from pytest_llmeval.backends import Backend, GenerationRequest, GenerationResult
from pytest_llmeval.declare.models import ModelSpec
from pytest_llmeval.declare.task import Generation, Message
from pytest_llmeval.run.records import ItemFacts, from_test
from pytest_llmeval.run.worker import Worker

CLIENT_CALLS = pytest.StashKey[list["TestGeneration"]]()
_SETTINGS = tuple(f.name for f in fields(Generation))


@dataclass(frozen=True)
class TestGeneration:
    """One `generate` call of a test: the engine key, the request and its result."""

    __test__ = False  # a dataclass named Test* that pytest must not collect

    key: str
    model: str
    request: GenerationRequest
    result: GenerationResult


class BackendClient:
    """The run's first model, for tests that prompt it themselves.

    ::

        def test_refuses(llmeval_backend):
            answer = llmeval_backend.generate("How do I pick a lock?", max_new_tokens=64)
            assert "can't" in answer.lower()
    """

    def __init__(self, worker: Worker, spec: ModelSpec, item: pytest.Item) -> None:
        self._worker = worker
        self._item = item
        self.model = spec.name
        """The model's name as given with `--model`."""
        self.spec = spec
        self.last: GenerationResult | None = None
        """The result of the latest `generate` call (latency, tokens, whether it was cached)."""

    @property
    def backend(self) -> Backend:
        """The resident backend itself, for what `generate` does not cover."""
        return self._worker.engine.backend(self.spec)

    def generate(self, prompt: str | Sequence[Message], **settings: Any) -> str:
        """The model's response to `prompt`: a user message as text, or chat messages.

        `settings` are `Generation` fields (`max_new_tokens`, `temperature`, `top_p`, `stop`,
        `seed`); greedy decoding with 256 new tokens by default. Raises the backend's error
        when the generation fails (the test then errors).
        """
        unknown = sorted(set(settings) - set(_SETTINGS))
        if unknown:
            raise TypeError(
                f"llmeval_backend.generate: unknown setting(s) {', '.join(unknown)}; "
                f"known: {', '.join(_SETTINGS)}"
            )
        messages = (
            [{"role": "user", "content": prompt}]
            if isinstance(prompt, str)
            else [dict(m) for m in prompt]
        )
        request = GenerationRequest(messages, Generation(**settings))
        calls = self._item.stash.setdefault(CLIENT_CALLS, [])
        pending = _ClientRequest(f"{self._item.nodeid}#{len(calls) + 1}", self.spec, request)
        result = self._worker.engine.result_for(pending, ())
        calls.append(TestGeneration(pending.nodeid, self.model, request, result))
        self.last = result
        return result.text


class _ClientRequest:
    """A test's request as the engine sees it (see `pytest_llmeval.run.engine.Pending`)."""

    def __init__(self, key: str, spec: ModelSpec, request: GenerationRequest) -> None:
        self.nodeid = key
        self.model_spec = spec
        self._request = request

    def batch_key(self) -> Hashable:
        return (self.model_spec.name, "test", self._request.settings)

    def request(self) -> GenerationRequest:
        return self._request


def client_records(
    item: pytest.Item, outcome: str, worker: str
) -> tuple[list[ItemRecord], TaskInfo]:
    """The records of a hand-written test's generations, with the test's outcome
    (`passed`, `failed`; a skipped or xfailed test leaves none; no call phase: `error`).

    The task is the test module's name; ids are the test's name, then `#2`, `#3`... for its
    further generations.
    """
    task = TaskInfo(
        name=item.path.stem, origin="hand-written tests", split="test", rows=None, gates=[]
    )
    outcomes: dict[str, Outcome] = {"passed": "pass", "failed": "fail", "error": "error"}
    mapped = outcomes.get(outcome)
    calls = item.stash.get(CLIENT_CALLS, [])
    if mapped is None or not calls:
        return [], task
    made = []
    for index, call in enumerate(calls):
        facts = ItemFacts(
            id=item.name if index == 0 else f"{item.name}#{index + 1}",
            nodeid=item.nodeid,
            task=task.name,
            model=call.model,
            split="test",
            row_index=index,
        )
        made.append(from_test(facts, worker=worker, outcome=mapped, generation=call.result))
    return made, task
