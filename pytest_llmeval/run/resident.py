"""The resident models of one process: each created once, loaded once, in a window of its own.

A backend is created on the first item of its model (through the `make_backend` the worker
passes: the `pytest_llmeval_make_backend` hook) and kept for the session. A failed creation
or load is remembered, so every item of that model errors at once with the same error
(`ModelUnavailable`: the whole message for the first item, a short reference for the rest)
instead of retrying. A model is loaded before its first batch, metered in a window of its
own, so load energy and time are never a batch's. One energy meter per device set the
models occupy (`run/energy_sources.py`), none for a remote backend. At the end, one
`ModelLoad` record per model: what the report says about loads, meters and failures.
A model no later item of this process needs is unloaded (`unload`, model sweeps: one model
resident at a time, `run/sweep.py`); loaded again when needed, each load counted.

`Engine` (run/engine.py) builds on this: generation behind per-item tests.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from pytest_llmeval.analyze.hardware import ModelLoad
from pytest_llmeval.backends import Backend, BackendError, one_line
from pytest_llmeval.declare.models import ModelSpec
from pytest_llmeval.run.arm_state import ArmSetup
from pytest_llmeval.run.batch_energy import NO_LOAD, REMOTE, load_energy
from pytest_llmeval.run.energy_sources import EnergyScope, scope_of
from pytest_llmeval.run.meters import EnergyMeter
from pytest_llmeval.run.sweep import SweepLog
from pytest_llmeval.run.vram_fit import check_fit, model_skipped, parameters_of

NOT_LOADED = "model not loaded in this run (nothing to generate)"


class ModelUnavailable(BackendError):
    """An item's model could not be created or loaded in this process. The first such item
    carries the whole error; the later ones a short reference to it (the error is reported
    once per model, with the count of items it took, in the llmeval summary)."""


@dataclass
class ResidentModels:
    """Per-process state of the models: backends, their loads, meters and failures."""

    make_backend: Callable[[ModelSpec], Backend]
    worker: str = field(default_factory=lambda: os.environ.get("PYTEST_XDIST_WORKER", "main"))
    backends: dict[str, Backend] = field(default_factory=dict)
    # Per model with an alias's setup/teardown: its state, applied around its generations.
    arm_states: dict[str, ArmSetup] = field(default_factory=dict)
    failed: dict[str, tuple[BaseException, float]] = field(default_factory=dict)
    # One meter per distinct device set (a worker may hold models on different GPUs); per
    # model its meter (None: a remote backend, never metered) and its load window's figures.
    meters: dict[EnergyScope, EnergyMeter] = field(default_factory=dict)
    meter_of: dict[str, EnergyMeter | None] = field(default_factory=dict)
    loaded: dict[str, dict[str, Any]] = field(default_factory=dict)
    load_errors: dict[str, BaseException] = field(default_factory=dict)
    # Per model: the SHA-256 of the backend identity its cache keys were made with.
    identities: dict[str, str] = field(default_factory=dict)
    # Per model that could not be created or loaded: the items it errored in this process.
    unavailable_items: dict[str, int] = field(default_factory=dict)
    # Told of what takes time before any item finishes (progress display): `notify(kind,
    # model, facts)` with kind `loading`, `loaded` (seconds), `load_failed` (error), `batch`
    # (items). None: nobody listens.
    notify: Callable[[str, str, dict[str, Any]], None] | None = None
    # --llmeval-vram-check (run/vram_fit.py): checked right before a model's first load, so
    # items served from the cache never need it to fit.
    # Per model: the check's note, why it is skipped and its items skipped in this process.
    vram_check: bool = False
    fit_notes: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    skipped_items: dict[str, int] = field(default_factory=dict)
    # --llmeval-smoke (run/smoke.py): per model that failed its smoke run, why; its later
    # items error at once (counted in `unavailable_items`); per model, its smoke items.
    smoke_failures: dict[str, str] = field(default_factory=dict)
    smoke_items: dict[str, int] = field(default_factory=dict)
    # Each load and unload in order (model sweeps): what the report's `residency` shows.
    sweep: SweepLog = field(default_factory=SweepLog)

    def backend(self, spec: ModelSpec) -> Backend:
        """The resident backend for `spec`, created on first use; a failed creation is re-raised,
        one that failed its smoke run errors (`ModelUnavailable`). Creating loads no weights,
        so the VRAM check waits for the load (`_load`)."""
        self._refuse(spec.name)
        if spec.name in self.backends:
            return self.backends[spec.name]
        if spec.name in self.failed:
            raise self._unavailable(spec.name, self.failed[spec.name][0])
        started = time.perf_counter()
        try:
            backend = self.make_backend(spec)
            if spec.arm_state is not None:  # a missing setup is the model's error, like a backend's
                self.arm_states[spec.name] = ArmSetup(spec, self.worker)
        except Exception as exc:
            self.failed[spec.name] = (exc, time.perf_counter() - started)
            raise self._unavailable(spec.name, exc) from exc
        self.backends[spec.name] = backend
        return backend

    def _refuse(self, name: str) -> None:
        """Raise for one more item of a model that failed its smoke run (counted per model).
        A model that does not fit is refused later, only where it would load (`_check_fit`):
        its cached items are still served."""
        if name in self.smoke_failures:
            count = self.unavailable_items[name] = self.unavailable_items.get(name, 0) + 1
            reason = self.smoke_failures[name]
            if count > 1:  # the whole reason once, a short reference for the rest
                reason = f"(its reason is in the llmeval summary) {one_line(reason, 80)}"
            raise ModelUnavailable(f"model {name} failed the smoke run: {reason}")

    def applied(self, backend: Backend) -> AbstractContextManager[None]:
        """Around a generation of `backend`'s model: its arm state applied under its lock
        (run/arm_state.py), or nothing for a model without one."""
        state = self.arm_states.get(backend.spec.name)
        return contextlib.nullcontext() if state is None else state.applied()

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

    def _load(self, backend: Backend, meter: EnergyMeter | None) -> None:
        """Load the model before its first batch, in a window of its own: the load's energy
        and time are load figures, never a batch's. A failed load is re-raised later on."""
        name = backend.spec.name
        if name in self.load_errors:
            raise self.load_errors[name]
        if name in self.loaded:
            return
        self._check_fit(backend)
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
        self.sweep.loaded(name)
        self._tell("loaded", name, seconds=seconds)  # after the meter's window closed

    def _check_fit(self, backend: Backend) -> None:
        """Raise `ModelSkipped` when the model does not fit its GPU (--llmeval-vram-check,
        checked once per model). Called right before its weights would load, never at its
        creation: a rerun whose generations are all cached loads nothing, so a busy or smaller
        GPU skips none of them."""
        name = backend.spec.name
        if self.vram_check and name not in self.fit_notes:
            fit = check_fit(backend, parameters_of(backend))
            self.fit_notes[name] = fit.note
            if fit.skip is not None:
                self.skipped[name] = fit.skip
        if name in self.skipped:
            raise model_skipped(self.skipped[name])

    def skip_all(self, name: str, nodeids: Iterable[str], results: dict[str, Any]) -> None:
        """Each of `nodeids` (items left to generate with model `name`, which does not fit)
        gets the skip as its result, counted per model."""
        for nodeid in nodeids:
            self.skipped_items[name] = self.skipped_items.get(name, 0) + 1
            results[nodeid] = model_skipped(self.skipped[name])

    def unload(self, name: str) -> None:
        """Release model `name`'s weights now (no later item of this process needs it), its
        figures kept for the report; a later batch of it loads it again (counted). Nothing
        for a model not loaded, a remote one, or a backend without `unload()`."""
        backend = self.backends.get(name)
        release = getattr(backend, "unload", None)
        if backend is None or name not in self.sweep.resident or not callable(release):
            return
        if self.meter_of.get(name) is None:
            return  # a remote backend holds nothing here
        info = dict(backend.info())  # before the release: peak memory, parameters, load time
        freed = release()
        self.sweep.unloaded(name, info, self.loaded.pop(name, {}), freed)
        self._tell("unloaded", name, freed=freed)

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
            # Earlier loads of a model unloaded in a sweep count too (run/sweep.py).
            info, load = self.sweep.merged(name, backend.info(), self.loaded.get(name))
            load = load or {"load_energy_reason": NOT_LOADED}
            record = ModelLoad.from_info(self.worker, name, info, energy, load)
            record.residency = self.sweep.residency(name, info)
            if name in self.arm_states:
                record.arm_state = self.arm_states[name].info()
            record.identity_sha256 = self.identities.get(name)
            self._kept_out(record, backend)
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

    def _kept_out(self, record: ModelLoad, backend: Backend) -> None:
        """The record's parameter count (from the files when the model was not loaded), its
        VRAM check, skip and smoke run."""
        if record.parameters is not None:
            record.parameters_source = "loaded model"
        elif (count := parameters_of(backend)) is not None:
            record.parameters, record.parameters_source = count.parameters, count.source
        record.vram_check = self.fit_notes.get(record.model)
        record.skipped_reason = self.skipped.get(record.model)
        record.items_skipped = self.skipped_items.get(record.model, 0)
        record.smoke_items = self.smoke_items.get(record.model, 0)
        record.smoke_failure = self.smoke_failures.get(record.model)
        if record.smoke_failure is not None:
            record.items_errored = self.unavailable_items.get(record.model, 0)

    def close(self) -> None:
        """Release every backend and meter."""
        for backend in self.backends.values():
            backend.close()
        for meter in self.meters.values():
            meter.close()


def _describe(exc: BaseException) -> str:
    """A load error on one line with its type (what `ModelLoad.error` and the summary show)."""
    return f"{type(exc).__name__}: {one_line(exc, 1000)}"
