"""A progress line for long runs: items done / total per worker and current throughput.

Printed by the controller at most once per interval (default 30 s), so a long run shows a
heartbeat without flooding CI logs; a short run prints nothing.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from pytest_llmeval.analyze.record import ItemRecord


@dataclass
class _Worker:
    done: int = 0
    tokens: int = 0
    recent: deque[tuple[float, int, int]] = field(default_factory=deque)  # (time, items, tokens)


@dataclass
class Progress:
    """Counts finished items per worker; `line()` is the text to print when one is due."""

    interval_s: float
    total: Callable[[], int]
    shares: Callable[[], Mapping[str, int]]
    clock: Callable[[], float] = time.monotonic
    workers: dict[str, _Worker] = field(default_factory=dict)
    last_printed: float | None = None

    def __post_init__(self) -> None:
        self.started = self.clock()

    def add(self, record: ItemRecord) -> str | None:
        """Count one finished item; return a progress line when one is due, else None."""
        worker = self.workers.setdefault(record.worker or "main", _Worker())
        worker.done += 1
        worker.tokens += int(record.tokens_out or 0) if not record.cached else 0
        now = self.clock()
        worker.recent.append((now, worker.done, worker.tokens))
        # Throughput over the last interval: the current rate, not the run's average. Entries
        # arrive in time order, so the stale ones are at the left.
        while now - worker.recent[0][0] > self.interval_s:
            worker.recent.popleft()
        if self.interval_s <= 0:
            return None
        if now - (self.last_printed or self.started) < self.interval_s:
            return None
        self.last_printed = now
        return self.line(now)

    def line(self, now: float) -> str:
        """The progress line: items done of the total, then per worker its count and rates."""
        done = sum(w.done for w in self.workers.values())
        total = self.total()
        percent = f" ({100 * done / total:.0f}%)" if total else ""
        shares = self.shares()
        parts = []
        for name in sorted(self.workers):
            worker = self.workers[name]
            share = f"/{shares[name]}" if name in shares else ""
            parts.append(f"{name} {worker.done}{share} {self._rates(worker, now)}")
        elapsed = now - self.started
        return (
            f"llmeval progress {elapsed:.0f}s: {done}/{total or '?'} items{percent}; "
            + "; ".join(parts)
        )

    @staticmethod
    def _rates(worker: _Worker, now: float) -> str:
        first_time, first_items, first_tokens = worker.recent[0]
        span = now - first_time
        if span <= 0 or len(worker.recent) < 2:
            return "(rate pending)"
        items = (worker.done - first_items) * 60 / span
        tokens = (worker.tokens - first_tokens) / span
        return f"({items:.1f} items/min, {tokens:.0f} tok/s)"
