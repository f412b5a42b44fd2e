"""A pending item as the engine plans it: its request, cache key and prompt, then batches.

- `Pending`: what the engine needs of an item waiting for its generation (`EvalItem`, a
  hand-written test's request through the `llmeval_backend` client).
- `Job`: one pending item bound to its backend, with its cache key. A backend whose identity
  names everything its `render` depends on (`renders_from_identity`) is keyed by the chat
  messages, so a cached item is never rendered; any other by its rendered prompt.
- `check_prompts`: the prompts the backend accepts (`check_prompt`: longer than the model's
  context is an item error before any batch, not a padded or failed batch).
- `cut`: a share's jobs cut into batches, longest prompts in tokens first (`batching.py`).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, Protocol

from pytest_llmeval.backends import Backend, GenerationRequest
from pytest_llmeval.declare.models import ModelSpec
from pytest_llmeval.run.batching import cut_batches
from pytest_llmeval.run.cache_key import cache_key


class Pending(Protocol):
    """What the engine needs of an item waiting for its generation."""

    @property
    def nodeid(self) -> str:
        """The key of this request's result (unique in the process)."""
        ...

    @property
    def model_spec(self) -> ModelSpec:
        """The model to generate with."""
        ...

    def batch_key(self) -> Hashable:
        """Requests with equal keys may share a batch."""
        ...

    def request(self) -> GenerationRequest:
        """The item's request; raises when the item cannot be prompted (e.g. bad row)."""
        ...


@dataclass
class Job:
    """One pending item bound to its backend: its request and cache key."""

    item: Pending
    request: GenerationRequest
    key: str
    backend: Backend
    rendered: str | None = None

    @property
    def prompt(self) -> str:
        """The rendered prompt, rendered on first use: only for jobs the cache does not hold
        when the backend keys by messages (`keys_messages`)."""
        if self.rendered is None:
            self.rendered = self.backend.render(self.request.messages)
        return self.rendered


@dataclass
class PlannedBatch:
    """A planned batch of a share, generated when the first of its items needs it."""

    backend: Backend
    jobs: list[Job]


def keys_messages(backend: Backend) -> bool:
    """Whether `backend` declares (`renders_from_identity = True`) that its identity names
    everything its `render` depends on, so its cache keys hold messages, not rendered
    prompts. A backend that does not say so is keyed by its rendered prompt, as before."""
    return getattr(backend, "renders_from_identity", False) is True


def make_job(
    backend: Backend, identity: dict[str, Any], item: Pending, request: GenerationRequest
) -> Job:
    """`item`'s job, keyed under `identity` (the backend's, plus the engine's own marks)."""
    if keys_messages(backend):
        # The identity names everything rendering depends on: no tokenizer needed for
        # the key, and a cached item is never rendered.
        key = cache_key(
            identity,
            None,
            request.settings,
            request.sample_index,
            request.seed,
            messages=request.messages,
        )
        return Job(item, request, key, backend)
    prompt = backend.render(request.messages)
    key = cache_key(identity, prompt, request.settings, request.sample_index, request.seed)
    return Job(item, request, key, backend, prompt)


def check_prompts(
    backend: Backend, jobs: list[Job]
) -> tuple[list[Job], list[tuple[Job, Exception]]]:
    """The jobs whose prompt the backend accepts, and the others with its error.

    A backend may define `check_prompt(prompt, settings)`, raising when a prompt cannot be
    generated (longer than the model's context): such an item errors before any batch,
    instead of padding its whole batch to its length or failing the batch."""
    check = getattr(backend, "check_prompt", None)
    if not callable(check):
        return jobs, []
    fitting: list[Job] = []
    refused: list[tuple[Job, Exception]] = []
    for job in jobs:
        try:
            check(job.prompt, job.request.settings)
        except Exception as exc:
            refused.append((job, exc))
        else:
            fitting.append(job)
    return fitting, refused


def cut(backend: Backend, jobs: list[Job], size: int, invariant: bool) -> list[list[Job]]:
    """The share's jobs cut into batches of at most `size`, longest prompts (in tokens,
    when the backend counts them) first: see run/batching.py."""
    count = getattr(backend, "prompt_tokens", None)
    prompts = [job.prompt for job in jobs]
    lengths = [count(prompt) if callable(count) else None for prompt in prompts]
    return [[jobs[i] for i in batch] for batch in cut_batches(prompts, lengths, size, invariant)]
