"""Worker-side generation: resident backends and batched generation behind per-item tests.

Items run one at a time, the model does not: when an item needs its generation and none is
ready, the engine takes that item and the upcoming items with the same model, task and
generation settings (a window of a few batches), sorts them longest prompt first, and
generates them batch by batch until the item's own result exists. Each item then reads its
result. Backends load on first use, once per process; a failed load is remembered so that
every item of that model errors at once with the same message instead of retrying.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from pytest_llmeval.backends import Backend, GenerationRequest, GenerationResult
from pytest_llmeval.models import ModelSpec

WINDOW_BATCHES = 4


class Pending(Protocol):
    """What the engine needs of an item waiting for its generation."""

    @property
    def nodeid(self) -> str: ...

    @property
    def model_spec(self) -> ModelSpec: ...

    def batch_key(self) -> Hashable: ...

    def request(self) -> GenerationRequest:
        """The item's request; raises when the item cannot be prompted (e.g. bad row)."""
        ...


@dataclass
class LoadRecord:
    model: str
    load_time_s: float
    info: dict[str, Any]
    error: str | None = None


@dataclass
class Engine:
    """Per-process state: the resident backends and the generations made so far."""

    make_backend: Callable[[ModelSpec], Backend]
    batch_size: int | None = None
    worker: str = field(default_factory=lambda: os.environ.get("PYTEST_XDIST_WORKER", "main"))
    backends: dict[str, Backend] = field(default_factory=dict)
    failed_loads: dict[str, BaseException] = field(default_factory=dict)
    loads: list[LoadRecord] = field(default_factory=list)
    results: dict[str, GenerationResult | BaseException] = field(default_factory=dict)
    batches_run: int = 0

    def backend(self, spec: ModelSpec) -> Backend:
        """The resident backend for `spec`, loaded on first use; a failed load is re-raised."""
        if spec.name in self.backends:
            return self.backends[spec.name]
        if spec.name in self.failed_loads:
            raise self.failed_loads[spec.name]
        started = time.perf_counter()
        try:
            backend = self.make_backend(spec)
        except Exception as exc:
            self.failed_loads[spec.name] = exc
            self.loads.append(LoadRecord(spec.name, time.perf_counter() - started, {}, str(exc)))
            raise
        self.backends[spec.name] = backend
        self.loads.append(
            LoadRecord(spec.name, time.perf_counter() - started, dict(backend.info()))
        )
        return backend

    def result_for(self, item: Pending, upcoming: Iterable[Pending]) -> GenerationResult:
        """The item's generation, generating it (with upcoming items alike) if not yet done."""
        if item.nodeid not in self.results:
            self._generate_window(item, upcoming)
        result = self.results.pop(item.nodeid)
        if isinstance(result, BaseException):
            raise result
        return result

    def _generate_window(self, item: Pending, upcoming: Iterable[Pending]) -> None:
        backend = self.backend(item.model_spec)
        size = max(1, self.batch_size or backend.default_batch_size)
        key = item.batch_key()
        window: list[tuple[Pending, GenerationRequest]] = [(item, item.request())]
        for other in upcoming:
            if len(window) >= size * WINDOW_BATCHES:
                break
            if other.nodeid == item.nodeid or other.nodeid in self.results:
                continue
            if other.batch_key() != key:
                continue
            try:
                window.append((other, other.request()))
            except Exception as exc:  # the other item reports its own error when it runs
                self.results[other.nodeid] = exc
        # Longest prompts first: similar lengths share a batch (less padding) and the
        # largest batch runs first, so a memory problem shows before hours of work.
        window.sort(key=lambda pair: -_prompt_size(pair[1]))
        for start in range(0, len(window), size):
            chunk = window[start : start + size]
            self._run_batch(backend, chunk)
            if item.nodeid in self.results:
                break

    def _run_batch(self, backend: Backend, chunk: list[tuple[Pending, GenerationRequest]]) -> None:
        self.batches_run += 1
        batch_id = f"{self.worker}-{self.batches_run}"
        try:
            generated = backend.generate([request for _, request in chunk], batch_id)
        except Exception as exc:
            if len(chunk) == 1:
                self.results[chunk[0][0].nodeid] = exc
                return
            # One bad request must not take its batch-mates down: retry them one by one, so
            # each item gets its own result or its own error (as it would unbatched).
            for single in chunk:
                self._run_batch(backend, [single])
            return
        for (pending, _), result in zip(chunk, generated, strict=True):
            self.results[pending.nodeid] = result

    def close(self) -> None:
        for backend in self.backends.values():
            backend.close()
        self.backends.clear()


def _prompt_size(request: GenerationRequest) -> int:
    return sum(len(message.get("content", "")) for message in request.messages)
