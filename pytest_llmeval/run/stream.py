"""Whole-share generation for backends that batch internally (vLLM, HTTP with concurrency).

Such a backend schedules best when it sees every prompt: vLLM keeps its running batch full by
admitting a waiting request as soon as another finishes (continuous batching), an HTTP pool
keeps `concurrency` requests in flight. So the engine hands it the worker's whole share of
alike requests (same model and generation settings, in the engine's batch order) as one
stream (`Backend.generate_stream`, see `backends.Finished`), and as results come back:

- each is committed to the cache at once, so a killed run loses at most the requests in
  flight (a rerun generates only the rest);
- finished requests are grouped, in finishing order, into windows of the batch size. A window
  is what a batch is elsewhere: its own `batch_id`, `batch_size` (requests finished in it) and
  wall time (windows follow each other, so throughput divides by the stream's wall time once),
  and one energy-meter window split over the requests that finished in it by generated-token
  share. Requests overlap windows under continuous batching, so a request's energy is counted
  in the window it finished in (the method says so); per window the total is the measured one.
  The final record (energy included) replaces the one committed on arrival when its window
  closes; a run killed before that keeps the arrival record, its energy "not attributed";
- the crash journal lists, for each window, every request that may be in flight during it:
  the backend submits in order and keeps at most `max_in_flight` unfinished, so these are the
  unfinished ones among the first `finished + max_in_flight + window` requests.

A request's error is its own and final (the HTTP backend retried already). When the stream
itself fails (the engine died), the requests that may have been in flight are retried one at a
time through the ordinary batch path, and those never submitted wait for their item's turn.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from pytest_llmeval.backends import Backend, Finished, GenerationResult
from pytest_llmeval.run.batch_energy import remote, with_energy
from pytest_llmeval.run.vram_fit import ModelSkipped

if TYPE_CHECKING:
    from pytest_llmeval.run.engine import Engine
    from pytest_llmeval.run.jobs import Job

UNSETTLED = "not attributed: the run stopped before this request's energy window closed"


def streams(backend: Backend) -> bool:
    """Whether `backend` takes a whole share as a stream (`generate_stream`)."""
    return callable(getattr(backend, "generate_stream", None))


def window_note(size: int) -> str:
    """How a streamed request's energy was attributed (added to its `energy_method`)."""
    return (
        f"continuous batching: windows of about {size} requests in finishing order, a "
        "request's energy counted in the window it finished in"
    )


class ShareStream:
    """One share streamed through a backend: commits, windows, energy and the crash journal."""

    def __init__(self, engine: Engine, backend: Backend, jobs: list[Job], size: int) -> None:
        self.engine = engine
        self.backend = backend
        self.jobs = jobs
        self.size = max(1, size)
        self.ahead = len(jobs)  # read from the backend once its model is loaded
        self.meter = engine._meter(backend)
        self.finished: set[int] = set()
        self.window: list[tuple[Job, GenerationResult]] = []
        self.arrivals = 0  # results and errors in the open window
        self.window_id = ""
        self.opened = 0.0

    def run(self) -> None:
        """Stream every job; each ends with a result or an error in `engine.results`, except
        those never submitted when the stream failed (they wait for their own turn)."""
        engine = self.engine
        try:
            engine._load(self.backend, self.meter)
        except ModelSkipped:  # does not fit its GPU: what is left to generate skips
            left = [job.item.nodeid for job in self.jobs]
            engine.skip_all(self.backend.spec.name, left, engine.results)
            return
        except Exception as exc:
            for job in self.jobs:
                engine.results[job.item.nodeid] = engine._unavailable(self.backend.spec.name, exc)
            return
        requests = [job.request for job in self.jobs]
        # A backend that runs a fixed number of sequences at once (transformers' continuous
        # batching) says so with `stream_batch_size` and runs the engine's batch size.
        sized = {"batch_size": self.size} if getattr(self.backend, "stream_batch_size", 0) else {}
        stream: Iterable[Finished] = self.backend.generate_stream(  # type: ignore[attr-defined]
            requests, **sized
        )
        # After the load and the stream's creation: vLLM's limit comes from its running
        # engine's scheduler, transformers' from the batch size it was given.
        ahead = getattr(self.backend, "max_in_flight", None)
        if isinstance(ahead, int) and not isinstance(ahead, bool) and ahead > 0:
            self.ahead = ahead
        self._open()
        try:
            try:
                for finished in stream:
                    self._arrived(finished)
            finally:
                close = getattr(stream, "close", None)
                if callable(close):
                    close()  # a stream left early withdraws what it has in flight
        except Exception:
            self._close_window()
            self._retry_in_flight()
            return
        except BaseException:
            if self.meter is not None:
                self.meter.stop()
            raise
        self._close_window()

    def _open(self) -> None:
        engine = self.engine
        engine.batches_run += 1
        self.window_id = f"{engine.run_token}-{engine.worker}-{os.getpid()}-{engine.batches_run}"
        left = len(self.jobs) - len(self.finished)
        engine._tell("batch", self.backend.spec.name, items=min(self.size, left))
        if engine.journal is not None:  # on disk before any of them can run
            reach = len(self.finished) + self.ahead + self.size
            engine.journal.begin(self._unfinished(reach))
        if self.meter is not None:
            self.meter.start()
        self.opened = time.perf_counter()
        self.window, self.arrivals = [], 0

    def _unfinished(self, reach: int) -> list[str]:
        jobs = enumerate(self.jobs[:reach])
        return [job.item.nodeid for i, job in jobs if i not in self.finished]

    def _arrived(self, finished: Finished) -> None:
        """Commit what finished now (before anything else runs), close a full window."""
        elapsed = round(time.perf_counter() - self.opened, 6)
        arrived: list[tuple[Job, GenerationResult]] = []
        for index, outcome in finished:
            job = self.jobs[index]
            self.finished.add(index)
            self.arrivals += 1
            if isinstance(outcome, GenerationResult):
                stamped = replace(
                    outcome, batch_id=self.window_id, batch_size=self.size, batch_wall_s=elapsed
                )
                if self.meter is None:
                    [stamped] = remote([stamped])
                else:
                    stamped = replace(stamped, energy_reason=UNSETTLED)
                arrived.append((job, stamped))
            else:
                self.engine.results[job.item.nodeid] = outcome
        if self.engine.cache is not None:
            self.engine.cache.put_many([(job.key, result.as_dict()) for job, result in arrived])
        self.window += arrived
        if self.arrivals >= self.size and len(self.finished) < len(self.jobs):
            self._close_window()
            self._open()

    def _close_window(self) -> None:
        """The window's final records: its size and wall time, energy split by tokens."""
        wall = round(time.perf_counter() - self.opened, 6)
        jobs = [job for job, _ in self.window]
        results = [
            replace(result, batch_size=len(self.window), batch_wall_s=wall)
            for _, result in self.window
        ]
        if self.meter is None:
            final = remote(results)
        else:
            notes: list[Any] = [*self.meter.notes(), window_note(self.size)]
            final = with_energy(results, self.meter.stop(), self.meter.unavailable(), notes)
        self.engine._keep(list(zip(jobs, final, strict=True)))
        self.window, self.arrivals = [], 0

    def _retry_in_flight(self) -> None:
        """After the stream failed: each request that may have been in flight, alone."""
        reach = len(self.finished) + self.ahead
        for i, job in enumerate(self.jobs[:reach]):
            if i not in self.finished and job.item.nodeid not in self.engine.results:
                self.engine._run_batch(self.backend, [job], retry=False)
