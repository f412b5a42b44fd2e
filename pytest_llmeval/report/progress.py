"""What a long run shows while it works: model loading as it happens, then a progress line
(a bar with ETA in a terminal) at most once per interval.

Pure state with an injectable clock; the controller feeds it finished records and, in
process, the engine's events (a model starts or ends loading, a model's first batch starts),
and prints what it returns. Every model of the run has its own part of the line, the
reference side of an agreement run included, with its generated tokens per second: counted
from both sides of a record and only for generations made in this run (a cached one cost no
time), and from when its first batch started, so a burst of results after a long batch
gives a rate at once instead of "pending".
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from pytest_llmeval.analyze.record import ItemRecord


@dataclass
class _Model:
    """One model's side of the run, as seen so far."""

    items: int = 0
    generated: int = 0  # items whose generation was made in this run (not cached)
    tokens: int | None = None  # generated tokens; None while the backend counted none
    # Its first batch started (an engine event in this process). Under xdist the controller
    # hears of no batch: rates then count from the run's start, loading included (a low
    # estimate that converges), never from the first record, which ends a batch's burst.
    started: float | None = None
    loading_since: float | None = None


@dataclass
class Progress:
    """Counts finished items per model and worker; returns the lines to print."""

    interval_s: float
    total: Callable[[], int]
    shares: Callable[[], Mapping[str, int]] = dict
    clock: Callable[[], float] = time.monotonic
    bar: bool = False
    """Render the periodic line as a text progress bar with ETA (tqdm's meter)."""
    width: int = 120
    """Characters the bar line may take (the terminal's width)."""
    models: dict[str, _Model] = field(default_factory=dict)
    workers: dict[str, int] = field(default_factory=dict)
    last_printed: float | None = None

    def __post_init__(self) -> None:
        self.started = self.clock()

    @property
    def done(self) -> int:
        """Eval items finished so far."""
        return sum(self.workers.values())

    def add(self, record: ItemRecord) -> str | None:
        """Count one finished item; return a progress line when one is due, else None."""
        now = self.clock()
        worker = record.worker or "main"
        self.workers[worker] = self.workers.get(worker, 0) + 1
        self._count(record.model, bool(record.cached), record.tokens_out, now)
        comparison = record.comparison
        if comparison is not None and comparison.reference_error is None:
            self._count(
                comparison.reference_model,
                bool(comparison.reference_cached),
                comparison.reference_tokens_out,
                now,
            )
        return self._due(now)

    def _count(self, name: str, cached: bool, tokens: int | None, now: float) -> None:
        model = self.models.setdefault(name, _Model())
        model.items += 1
        if cached:
            return
        model.generated += 1
        if tokens is not None:
            model.tokens = (model.tokens or 0) + int(tokens)

    def event(self, kind: str, model: str, facts: Mapping[str, object]) -> str | None:
        """An engine event in this process: the line to print at once, if any.

        `loading` and `loaded`/`load_failed` (with `seconds`, `error`) and `unloaded` (with
        `freed`) are always said;
        `batch` (with `items`) starts the model's clock and is said for its first batch.
        """
        if self.interval_s <= 0:  # progress turned off: silent, events included
            return None
        now = self.clock()
        state = self.models.setdefault(model, _Model())
        if kind == "loading":
            state.loading_since = now
            return f"llmeval: loading model {model} ({facts.get('backend', '?')})"
        if kind == "load_failed":
            state.loading_since = None
            return f"llmeval: model {model} failed to load: {facts.get('error')}"
        if kind == "loaded":
            state.loading_since = None
            seconds = facts.get("seconds")
            took = _duration(seconds) if isinstance(seconds, int | float) else "?"
            return f"llmeval: model {model} loaded in {took}"
        if kind == "unloaded":  # model sweeps: released before the next model loads
            freed = facts.get("freed")
            said = (
                "freed" if freed is True else "still referenced" if freed is False else "released"
            )
            return f"llmeval: model {model} unloaded ({said})"
        if kind == "batch" and state.started is None:
            state.started = now
            return f"llmeval: model {model} generating its first batch ({facts.get('items')} items)"
        # Later batches: a long run's heartbeat even while one slow window yields no record.
        return self._due(now) if kind == "batch" else None

    def _due(self, now: float) -> str | None:
        if self.interval_s <= 0:
            return None
        if now - (self.last_printed or self.started) < self.interval_s:
            return None
        self.last_printed = now
        return self.render(now)

    def render(self, now: float | None = None) -> str:
        """The progress text now: a bar (when `bar`) or a plain line."""
        now = self.clock() if now is None else now
        return self.bar_line(now) if self.bar else self.line(now)

    def line(self, now: float) -> str:
        """`llmeval progress 2m10s: 300/1319 items (23%), 138.5 items/min, ETA 7m22s; ...`"""
        done, total = self.done, self.total()
        percent = f" ({100 * done / total:.0f}%)" if total else ""
        head = f"llmeval progress {_duration(now - self.started)}: {done}/{total or '?'} items"
        rate = self._items_per_s(now)
        pace = ""
        if rate:
            pace = f", {rate * 60:.1f} items/min"
            if total and total > done:
                pace += f", ETA {_duration((total - done) / rate)}"
        return "; ".join([head + percent + pace, *self._parts(now)])

    def bar_line(self, now: float) -> str:
        """The same facts as tqdm's meter: `llmeval:  23%|███  | 300/1319 [02:10<07:22, ...]`."""
        from tqdm import tqdm  # only when a terminal shows it

        total = self.total() or None
        return str(
            tqdm.format_meter(
                self.done,
                total,
                now - self.started,
                ncols=self.width,
                prefix="llmeval",
                unit=" items",
                rate=self._items_per_s(now),
                postfix="; ".join(self._parts(now)) or None,
            )
        )

    def _parts(self, now: float) -> list[str]:
        parts = [
            self._model_part(name, state, now, self.started) for name, state in self.models.items()
        ]
        if len(self.workers) > 1 or self.shares():
            shares = self.shares()
            parts.append(
                ", ".join(
                    f"{name} {count}" + (f"/{shares[name]}" if name in shares else "")
                    for name, count in sorted(self.workers.items())
                )
            )
        return parts

    @staticmethod
    def _model_part(name: str, state: _Model, now: float, origin: float) -> str:
        if state.loading_since is not None:
            return f"{name} loading for {_duration(now - state.loading_since)}"
        part = f"{name} {state.items} items"
        if state.items and not state.generated:
            return part + " (cached)"
        span = now - (state.started if state.started is not None else origin)
        if state.tokens is not None and span > 0:
            part += f", {state.tokens / span:.0f} tok/s"
        return part

    def _items_per_s(self, now: float) -> float | None:
        """Items per second since the first batch of any model (or the run's start)."""
        starts = [m.started for m in self.models.values() if m.started is not None]
        span = now - min(starts, default=self.started)
        if not self.done or span <= 0:
            return None
        return self.done / span


def _duration(seconds: float) -> str:
    """`0.4s`, `42s`, `7m22s`, `1h05m`."""
    if seconds < 9.95:
        return f"{max(0.0, seconds):.1f}s"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
