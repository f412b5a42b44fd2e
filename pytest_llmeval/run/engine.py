"""Worker-side generation: resident backends, the generation cache, and batching behind
per-item tests.

Items run one at a time, the model does not: when an item needs its generation and none is
ready, the engine takes that item and every upcoming item with the same model, task and
generation settings (the worker's whole share, as far as it can see it), serves what the
cache already holds, sorts the rest by prompt length in tokens, longest first, and cuts them
into batches (`run/batching.py`): the plan of that share. The longest batch runs at once (a
memory problem shows before hours of work), then each batch when the first of its items
needs it, so every test gets its result as soon as its own batch is done. Each batch is
committed to the cache before the next starts. A backend that batches internally
(`generate_stream`: vLLM, HTTP) gets the whole share at once instead, each result committed
as it arrives (`pytest_llmeval.run.stream`). Backends are created on first use, once per
process; a failed creation is remembered so that every item of that model errors at once
with the same message instead of retrying.

A failed batch is retried once, request by request, only where needed: a backend that says
which requests failed (`BatchPartiallyFailed`) keeps its successes, and only its failures are
tried again (when it allows it). Under xdist each batch's keys are journaled before it runs,
and the items of a batch that crashed the previous worker are generated alone
(`pytest_llmeval.run.crash_journal`).
"""

from __future__ import annotations

import os
import secrets
import time
import warnings
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from pytest_llmeval.analyze.hardware import ModelLoad
from pytest_llmeval.backends import (
    Backend,
    BackendError,
    BatchPartiallyFailed,
    GenerationRequest,
    GenerationResult,
    one_line,
)
from pytest_llmeval.declare.models import ModelSpec
from pytest_llmeval.run.batch_energy import NO_LOAD, REMOTE, load_energy, remote, with_energy
from pytest_llmeval.run.batching import cut_batches
from pytest_llmeval.run.cache import GenerationCache, cache_key
from pytest_llmeval.run.crash_journal import BatchJournal
from pytest_llmeval.run.energy_sources import EnergyScope, scope_of
from pytest_llmeval.run.meters import EnergyMeter
from pytest_llmeval.run.stream import ShareStream, streams

NOT_LOADED = "model not loaded in this run (nothing to generate)"


class ModelUnavailable(BackendError):
    """An item's model could not be created or loaded in this process. The first such item
    carries the whole error; the later ones a short reference to it (the error is reported
    once per model, with the count of items it took, in the llmeval summary)."""


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
class _Job:
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
class _Batch:
    """A planned batch of a share, generated when the first of its items needs it."""

    backend: Backend
    jobs: list[_Job]


@dataclass
class Engine:
    """Per-process state: the resident backends and the generations made so far."""

    make_backend: Callable[[ModelSpec], Backend]
    batch_size: int | None = None
    cache: GenerationCache | None = None
    worker: str = field(default_factory=lambda: os.environ.get("PYTEST_XDIST_WORKER", "main"))
    backends: dict[str, Backend] = field(default_factory=dict)
    failed: dict[str, tuple[BaseException, float]] = field(default_factory=dict)
    results: dict[str, GenerationResult | BaseException] = field(default_factory=dict)
    batches_run: int = 0
    # One meter per distinct device set (a worker may hold models on different GPUs); per
    # model its meter (None: a remote backend, never metered) and its load window's figures.
    meters: dict[EnergyScope, EnergyMeter] = field(default_factory=dict)
    meter_of: dict[str, EnergyMeter | None] = field(default_factory=dict)
    loaded: dict[str, dict[str, Any]] = field(default_factory=dict)
    load_errors: dict[str, BaseException] = field(default_factory=dict)
    # Per model that could not be created or loaded: the items it errored in this process.
    unavailable_items: dict[str, int] = field(default_factory=dict)
    # A fresh token per engine (process and run): batch ids of two runs, or of two workers
    # whose pids repeat, never collide and merge batches in a report.
    run_token: str = field(default_factory=lambda: secrets.token_hex(4))
    # Batch-invariant mode (--llmeval-batch-invariant): per model, whether it applies (the
    # backend counts prompt tokens), decided at the model's first window.
    batch_invariant: bool = False
    invariant: dict[str, bool] = field(default_factory=dict)
    alone_runs: int = 0
    # Told of what takes time before any item finishes (progress display): `notify(kind,
    # model, facts)` with kind `loading`, `loaded` (seconds), `load_failed` (error), `batch`
    # (items). None: nobody listens.
    notify: Callable[[str, str, dict[str, Any]], None] | None = None
    # Crash containment under xdist (run/crash_journal.py): where each batch's keys are
    # written before it runs, and the keys a replacement worker generates one at a time.
    journal: BatchJournal | None = None
    alone: frozenset[str] = frozenset()
    # The planned batches not generated yet, by the nodeid of each of their items.
    planned: dict[str, _Batch] = field(default_factory=dict)

    def backend(self, spec: ModelSpec) -> Backend:
        """The resident backend for `spec`, created on first use; a failed creation is re-raised."""
        if spec.name in self.backends:
            return self.backends[spec.name]
        if spec.name in self.failed:
            raise self._unavailable(spec.name, self.failed[spec.name][0])
        started = time.perf_counter()
        try:
            backend = self.make_backend(spec)
        except Exception as exc:
            self.failed[spec.name] = (exc, time.perf_counter() - started)
            raise self._unavailable(spec.name, exc) from exc
        self.backends[spec.name] = backend
        return backend

    def _unavailable(self, name: str, exc: BaseException) -> ModelUnavailable:
        """The error of one more item whose model `name` did not load (counted): the whole
        error for the first, a short reference to it for the rest (no wall of repeats)."""
        count = self.unavailable_items[name] = self.unavailable_items.get(name, 0) + 1
        reason = f"{type(exc).__name__}: {one_line(exc)}"
        if count == 1:
            return ModelUnavailable(f"model {name} did not load: {reason}")
        return ModelUnavailable(
            f"model {name} did not load (its error is in the llmeval summary): "
            f"{one_line(reason, 80)}"
        )

    def result_for(self, item: Pending, upcoming: Iterable[Pending]) -> GenerationResult:
        """The item's generation, generating it (with upcoming items alike) if not yet done."""
        if item.nodeid not in self.results:
            self._generate_window(item, upcoming)
        result = self.results.pop(item.nodeid)
        if isinstance(result, BaseException):
            raise result
        return result

    def _generate_window(self, item: Pending, upcoming: Iterable[Pending]) -> None:
        try:
            if item.nodeid not in self.planned:
                self._plan_share(item, upcoming)
            batch = self.planned.get(item.nodeid)
            if batch is not None and item.nodeid not in self.results:
                self._run_planned(batch)
        finally:
            if self.journal is not None:
                self.journal.clear()

    def _plan_share(self, item: Pending, upcoming: Iterable[Pending]) -> None:
        """Plan `item`'s share: it and the upcoming items that may share its batches (served
        from the cache where possible, the rest cut into token-length sorted batches), then
        generate the longest batch."""
        backend = self.backend(item.model_spec)
        size = max(1, self.batch_size or backend.default_batch_size)
        identity = dict(backend.identity())
        invariant = self._invariant_mode(backend, item)
        if invariant:
            # Its own cache entries: a padded generation of an ordinary run is not served here.
            identity["batch_invariant"] = True
        share = [self._job(backend, identity, item, item.request())]
        key = item.batch_key()
        # A backend that batches internally gets the whole share at once (run/stream.py);
        # batch-invariant mode needs our exact batches, so it keeps the windows.
        stream = streams(backend) and not invariant and item.nodeid not in self.alone
        # An item of a batch that crashed its worker is generated alone, and batches with
        # nothing: a second crash then names the culprit (see run/crash_journal.py).
        for other in () if item.nodeid in self.alone else upcoming:
            if other.nodeid == item.nodeid or other.nodeid in self.results:
                continue
            if other.nodeid in self.planned or other.nodeid in self.alone:
                continue
            if other.batch_key() != key:
                continue
            try:
                share.append(self._job(backend, identity, other, other.request()))
            except Exception as exc:  # the other item reports its own error when it runs
                self.results[other.nodeid] = exc
        to_generate = self._fitting(backend, self._serve_from_cache(share))
        if stream:
            batches = self._batches(backend, to_generate, max(1, len(to_generate)), False)
            ShareStream(self, backend, [job for b in batches for job in b], size).run()
            if item.nodeid not in self.results:  # never submitted: the stream failed
                self._run_batch(backend, [share[0]], retry=False)
            return
        planned = [
            _Batch(backend, jobs) for jobs in self._batches(backend, to_generate, size, invariant)
        ]
        for batch in planned:
            for job in batch.jobs:
                self.planned[job.item.nodeid] = batch
        if planned:
            self._run_planned(planned[0])

    def _run_planned(self, batch: _Batch) -> None:
        for job in batch.jobs:
            self.planned.pop(job.item.nodeid, None)
        self._run_batch(batch.backend, batch.jobs)

    def _fitting(self, backend: Backend, jobs: list[_Job]) -> list[_Job]:
        """The jobs whose prompt the backend accepts; the others get its error as their result.

        A backend may define `check_prompt(prompt, settings)`, raising when a prompt cannot be
        generated (longer than the model's context): such an item errors before any batch,
        instead of padding its whole batch to its length or failing the batch."""
        check = getattr(backend, "check_prompt", None)
        if not callable(check):
            return jobs
        fitting = []
        for job in jobs:
            try:
                check(job.prompt, job.request.settings)
            except Exception as exc:
                self.results[job.item.nodeid] = exc
            else:
                fitting.append(job)
        return fitting

    def _batches(
        self, backend: Backend, jobs: list[_Job], size: int, invariant: bool
    ) -> list[list[_Job]]:
        """The share's jobs cut into batches of at most `size`, longest prompts (in tokens,
        when the backend counts them) first: see run/batching.py."""
        count = getattr(backend, "prompt_tokens", None)
        prompts = [job.prompt for job in jobs]
        lengths = [count(prompt) if callable(count) else None for prompt in prompts]
        return [
            [jobs[i] for i in batch] for batch in cut_batches(prompts, lengths, size, invariant)
        ]

    def _invariant_mode(self, backend: Backend, item: Pending) -> bool:
        """Whether batch-invariant mode applies to `item`'s model: asked for, and its backend
        counts prompt tokens (`prompt_tokens(prompt) -> int | None`); said once when not."""
        if not self.batch_invariant:
            return False
        name = item.model_spec.name
        if name not in self.invariant:
            count = getattr(backend, "prompt_tokens", None)
            prompt = backend.render(item.request().messages)
            self.invariant[name] = callable(count) and count(prompt) is not None
            if not self.invariant[name]:
                warnings.warn(
                    f"llmeval: --llmeval-batch-invariant does not apply to model {name}: its "
                    "backend cannot count prompt tokens; its items are batched as usual",
                    stacklevel=2,
                )
        return self.invariant[name]

    def batch_invariant_for(self, spec: ModelSpec) -> bool:
        """Whether `spec`'s generations were batched (and cached) in batch-invariant mode."""
        return self.invariant.get(spec.name, False)

    def generate_alone(self, item: Pending) -> GenerationResult:
        """`item` generated by itself: a batch of one (no batch-mates, no padding), neither
        read from nor written to the cache and not metered (the item's energy is its batch's).
        For the batch-invariance check; raises what the backend raises."""
        backend = self.backend(item.model_spec)
        self.alone_runs += 1
        batch_id = f"{self.run_token}-{self.worker}-{os.getpid()}-alone-{self.alone_runs}"
        if self.journal is not None:
            self.journal.begin([item.nodeid])
        try:
            (result,) = backend.generate([item.request()], batch_id)
        finally:
            if self.journal is not None:
                self.journal.clear()
        return result

    def _job(
        self, backend: Backend, identity: dict[str, Any], item: Pending, request: GenerationRequest
    ) -> _Job:
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
            return _Job(item, request, key, backend)
        prompt = backend.render(request.messages)
        key = cache_key(identity, prompt, request.settings, request.sample_index, request.seed)
        return _Job(item, request, key, backend, prompt)

    def _serve_from_cache(self, window: list[_Job]) -> list[_Job]:
        """Fill results from the cache; return the jobs still to generate."""
        if self.cache is None:
            return window
        stored = self.cache.get_many([job.key for job in window])
        missing = []
        for job in window:
            if job.key in stored:
                self.results[job.item.nodeid] = GenerationResult.from_dict(
                    stored[job.key], cached=True
                )
            else:
                missing.append(job)
        return missing

    def _run_batch(self, backend: Backend, jobs: list[_Job], retry: bool = True) -> None:
        """Generate `jobs` as one batch and keep each job's result or error. A failed batch
        is retried job by job (`retry`: once, never a retry of a retry), repeating only
        requests whose outcome the backend could not tell apart."""
        meter = self._meter(backend)
        try:
            self._load(backend, meter)
        except Exception as exc:
            for job in jobs:
                self.results[job.item.nodeid] = self._unavailable(backend.spec.name, exc)
            return
        self.batches_run += 1
        self._tell("batch", backend.spec.name, items=len(jobs))
        batch_id = f"{self.run_token}-{self.worker}-{os.getpid()}-{self.batches_run}"
        if self.journal is not None:  # on disk before the backend runs: a crash names it
            self.journal.begin([job.item.nodeid for job in jobs])
        if meter is not None:  # a remote backend's batches open no window at all
            meter.start()
        try:
            generated = backend.generate([job.request for job in jobs], batch_id)
        except BatchPartiallyFailed as partial:
            if meter is not None:
                meter.stop()
            # The backend kept each request's own outcome: keep the successes (never asked
            # for again), then retry the failures alone when the backend allows it.
            pairs = list(zip(jobs, partial.results, strict=True))
            done = [(j, r) for j, r in pairs if isinstance(r, GenerationResult)]
            if meter is None and done:
                done = list(zip([j for j, _ in done], remote([r for _, r in done]), strict=True))
            self._keep(done)
            for job, outcome in pairs:
                if isinstance(outcome, GenerationResult):
                    continue
                if retry and partial.retry_alone:
                    self._run_batch(backend, [job], retry=False)
                else:
                    self.results[job.item.nodeid] = outcome
            return
        except Exception as exc:
            if meter is not None:
                meter.stop()
            if len(jobs) == 1 or not retry:
                for job in jobs:
                    self.results[job.item.nodeid] = exc
                return
            # One bad request must not take its batch-mates down, and the backend did not
            # say which one failed: retry them one by one, so each item gets its own result
            # or its own error (as it would unbatched).
            for job in jobs:
                self._run_batch(backend, [job], retry=False)
            return
        if meter is None:
            generated = remote(generated)
        else:
            generated = with_energy(generated, meter.stop(), meter.unavailable(), meter.notes())
        self._keep(list(zip(jobs, generated, strict=True)))

    def _keep(self, done: list[tuple[_Job, GenerationResult]]) -> None:
        """Commit finished generations to the cache, then make them the jobs' results."""
        if self.cache is not None:
            # On disk before the next batch starts: a killed run loses at most this batch.
            self.cache.put_many([(job.key, result.as_dict()) for job, result in done])
        for job, result in done:
            self.results[job.item.nodeid] = result

    def _load(self, backend: Backend, meter: EnergyMeter | None) -> None:
        """Load the model before its first batch, in a window of its own: the load's energy
        and time are load figures, never a batch's. A failed load is re-raised later on."""
        name = backend.spec.name
        if name in self.load_errors:
            raise self.load_errors[name]
        if name in self.loaded:
            return
        load = getattr(backend, "load", None)  # a user's backend may predate load()
        if not callable(load):
            self.loaded[name] = {"load_energy_reason": NO_LOAD}
            return
        self._tell("loading", name, backend=backend.spec.backend)
        if meter is not None:
            meter.start()
        started = time.perf_counter()
        try:
            load()
        except Exception as exc:
            if meter is not None:
                meter.stop()
            self.load_errors[name] = exc
            self.loaded[name] = {"load_energy_reason": f"the load failed: {exc}"}
            self._tell("load_failed", name, error=f"{type(exc).__name__}: {exc}")
            raise
        seconds = round(time.perf_counter() - started, 3)
        if meter is None:
            self.loaded[name] = {"load_energy_reason": REMOTE}
        else:
            figures = load_energy(meter.stop(), meter.unavailable())
            self.loaded[name] = {**figures, "load_window_s": seconds}
        self._tell("loaded", name, seconds=seconds)  # after the meter's window closed

    def _tell(self, kind: str, model: str, **facts: Any) -> None:
        if self.notify is not None:
            self.notify(kind, model, facts)

    def _meter(self, backend: Backend) -> EnergyMeter | None:
        """The meter of the devices `backend`'s model sits on; None for a remote backend."""
        name = backend.spec.name
        if name not in self.meter_of:
            # After the backend exists: its device and CUDA_VISIBLE_DEVICES (set for this
            # worker) decide which GPUs are its own.
            scope = scope_of(backend)
            if scope is not None and scope not in self.meters:
                self.meters[scope] = EnergyMeter.detect(scope=scope)
            self.meter_of[name] = None if scope is None else self.meters[scope]
        return self.meter_of[name]

    def load_records(self) -> list[ModelLoad]:
        """Per model: this worker's backend facts, model loads, load time and energy (or the
        error), and the meter of its devices."""
        loads = []
        for name, backend in self.backends.items():
            meter = self.meter_of.get(name)
            energy = None if meter is None else meter.describe()
            load = self.loaded.get(name) or {"load_energy_reason": NOT_LOADED}
            record = ModelLoad.from_info(self.worker, name, backend.info(), energy, load)
            if name in self.load_errors:  # created, but its weights did not load
                record.error = _describe(self.load_errors[name])
                record.items_errored = self.unavailable_items.get(name, 0)
            loads.append(record)
        loads += [
            ModelLoad(
                worker=self.worker,
                model=name,
                error=_describe(exc),
                model_loads=0,
                load_time_s=round(seconds, 3),
                items_errored=self.unavailable_items.get(name, 0),
            )
            for name, (exc, seconds) in self.failed.items()
        ]
        return loads

    def close(self) -> None:
        """Release every backend, the cache and the meter."""
        for backend in self.backends.values():
            backend.close()
        if self.cache is not None:
            self.cache.close()
        for meter in self.meters.values():
            meter.close()


def keys_messages(backend: Backend) -> bool:
    """Whether `backend` declares (`renders_from_identity = True`) that its identity names
    everything its `render` depends on, so its cache keys hold messages, not rendered
    prompts. A backend that does not say so is keyed by its rendered prompt, as before."""
    return getattr(backend, "renders_from_identity", False) is True


def _describe(exc: BaseException) -> str:
    """A load error on one line with its type (what `ModelLoad.error` and the summary show)."""
    return f"{type(exc).__name__}: {one_line(exc, 1000)}"
