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
as it arrives (`pytest_llmeval.run.stream`).

A failed batch is retried once, request by request, only where needed: a backend that says
which requests failed (`BatchPartiallyFailed`) keeps its successes, and only its failures are
tried again (when it allows it). Under xdist each batch's keys are journaled before it runs,
and the items of a batch that crashed the previous worker are generated alone
(`pytest_llmeval.run.crash_journal`).

Backends are created on first use, once per process, and loaded in a metered window of their
own; a failed creation is remembered so that every item of that model errors at once with the
same message instead of retrying (`ResidentModels`, run/resident.py). A pending item's job,
cache key and batches: run/jobs.py.
"""

from __future__ import annotations

import os
import secrets
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field

from pytest_llmeval.backends import Backend, BackendError, BatchPartiallyFailed, GenerationResult
from pytest_llmeval.declare.models import ModelSpec
from pytest_llmeval.run.arm_state import ArmStateError
from pytest_llmeval.run.batch_energy import remote, with_energy
from pytest_llmeval.run.cache import GenerationCache
from pytest_llmeval.run.cache_key import identity_sha256
from pytest_llmeval.run.crash_journal import BatchJournal
from pytest_llmeval.run.jobs import Job, Pending, PlannedBatch, check_prompts, cut, make_job
from pytest_llmeval.run.meters import EnergyMeter
from pytest_llmeval.run.resident import ResidentModels
from pytest_llmeval.run.stream import ShareStream, streams
from pytest_llmeval.run.vram_fit import ModelSkipped


@dataclass
class Engine(ResidentModels):
    """Per-process state: the resident backends (`ResidentModels`) and the generations made
    so far."""

    batch_size: int | None = None
    cache: GenerationCache | None = None
    results: dict[str, GenerationResult | BaseException] = field(default_factory=dict)
    batches_run: int = 0
    # A fresh token per engine (process and run): batch ids of two runs, or of two workers
    # whose pids repeat, never collide and merge batches in a report.
    run_token: str = field(default_factory=lambda: secrets.token_hex(4))
    # Batch-invariant mode (--llmeval-batch-invariant): per model, whether it applies (the
    # backend counts prompt tokens), decided at the model's first window.
    batch_invariant: bool = False
    invariant: dict[str, bool] = field(default_factory=dict)
    alone_runs: int = 0
    # Crash containment under xdist (run/crash_journal.py): where each batch's keys are
    # written before it runs, and the keys a replacement worker generates one at a time.
    journal: BatchJournal | None = None
    alone: frozenset[str] = frozenset()
    # The planned batches not generated yet, by the nodeid of each of their items.
    planned: dict[str, PlannedBatch] = field(default_factory=dict)

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
        if backend.spec.name in self.arm_states:  # its patch and setup: part of its key
            identity["arm_state"] = self.arm_states[backend.spec.name].identity()
        # The arm's identity for the report (without the mode mark below: a setting, not the arm).
        self.identities[backend.spec.name] = identity_sha256(identity)
        invariant = self._invariant_mode(backend, item)
        if invariant:
            # Its own cache entries: a padded generation of an ordinary run is not served here.
            identity["batch_invariant"] = True
        share = [make_job(backend, identity, item, item.request())]
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
                share.append(make_job(backend, identity, other, other.request()))
            except Exception as exc:  # the other item reports its own error when it runs
                self.results[other.nodeid] = exc
        to_generate = self._fitting(backend, self._serve_from_cache(share))
        if stream:
            batches = cut(backend, to_generate, max(1, len(to_generate)), False)
            jobs = [job for b in batches for job in b]
            try:
                with self.applied(backend):
                    ShareStream(self, backend, jobs, size).run()
            except ArmStateError as exc:
                self._arm_failed(jobs, exc)
            if item.nodeid not in self.results:  # never submitted: the stream failed
                self._run_batch(backend, [share[0]], retry=False)
            return
        batches = cut(backend, to_generate, size, invariant)
        planned = [PlannedBatch(backend, jobs) for jobs in batches]
        for batch in planned:
            for job in batch.jobs:
                self.planned[job.item.nodeid] = batch
        if planned:
            self._run_planned(planned[0])

    def _run_planned(self, batch: PlannedBatch) -> None:
        for job in batch.jobs:
            self.planned.pop(job.item.nodeid, None)
        self._run_batch(batch.backend, batch.jobs)

    def _fitting(self, backend: Backend, jobs: list[Job]) -> list[Job]:
        """The jobs whose prompt the backend accepts; the others get its error as their
        result (see `jobs.check_prompts`)."""
        fitting, refused = check_prompts(backend, jobs)
        for job, exc in refused:
            self.results[job.item.nodeid] = exc
        return fitting

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
        try:  # a cached item of a model that does not fit: never loaded for this check
            self._check_fit(backend)
        except ModelSkipped as skip:
            raise BackendError(f"not generated alone: {skip}") from None
        self.alone_runs += 1
        batch_id = f"{self.run_token}-{self.worker}-{os.getpid()}-alone-{self.alone_runs}"
        if self.journal is not None:
            self.journal.begin([item.nodeid])
        try:
            with self.applied(backend):
                (result,) = backend.generate([item.request()], batch_id)
        finally:
            if self.journal is not None:
                self.journal.clear()
        return result

    def _serve_from_cache(self, window: list[Job]) -> list[Job]:
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

    def _run_batch(self, backend: Backend, jobs: list[Job], retry: bool = True) -> None:
        """Generate `jobs` as one batch and keep each job's result or error. A failed batch
        is retried job by job (`retry`: once, never a retry of a retry), repeating only
        requests whose outcome the backend could not tell apart."""
        meter = self._meter(backend)
        try:
            self._load(backend, meter)
        except ModelSkipped:  # does not fit its GPU: these items skip, cached ones were served
            self.skip_all(backend.spec.name, [job.item.nodeid for job in jobs], self.results)
            return
        except Exception as exc:
            for job in jobs:
                self.results[job.item.nodeid] = self._unavailable(backend.spec.name, exc)
            return
        try:
            with self.applied(backend):  # an arm's server state, under its lock (arm_state.py)
                self._generate_batch(backend, meter, jobs, retry)
        except ArmStateError as exc:
            self._arm_failed(jobs, exc)

    def _arm_failed(self, jobs: list[Job], exc: ArmStateError) -> None:
        """An arm's setup or teardown failed: jobs without a result get the error; when the
        generations were made (teardown failed) they stand, and a warning says the server
        may still hold the arm's state."""
        if all(job.item.nodeid in self.results for job in jobs):
            warnings.warn(
                f"llmeval: {exc}; the server may still hold this arm's state", stacklevel=2
            )
        for job in jobs:
            self.results.setdefault(job.item.nodeid, exc)

    def _generate_batch(
        self, backend: Backend, meter: EnergyMeter | None, jobs: list[Job], retry: bool
    ) -> None:
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

    def _keep(self, done: list[tuple[Job, GenerationResult]]) -> None:
        """Commit finished generations to the cache, then make them the jobs' results."""
        if self.cache is not None:
            # On disk before the next batch starts: a killed run loses at most this batch.
            self.cache.put_many([(job.key, result.as_dict()) for job, result in done])
        for job, result in done:
            self.results[job.item.nodeid] = result

    def close(self) -> None:
        """Release every backend and meter, then the cache."""
        super().close()
        if self.cache is not None:
            self.cache.close()
