"""Whether the server of an openai backend is down, so that a dead server fails fast.

A request retries a connection failure for seconds (`max_retries`, `backoff_s`): right for a
blip, ruinous for a server that is gone (every item paying the full retries). After
`unreachable_after` requests in a row ended unable to connect (or the server's facts could not
be read for that reason), the server counts as down: from then on each batch first sends one
GET `/models` without retries. While nothing answers, the batch's items fail at once with one
message; when anything answers (any HTTP status), the server is up again and the run resumes.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

DEFAULT_UNREACHABLE_AFTER = 3


class ServerHealth:
    """Connection failures in a row to one server, and the health checks made while it is down.

    Counters for the report: `health_checks` (GETs sent while down) and `not_run` (items
    failed at once). Thread-safe: requests report from the backend's worker threads.
    """

    def __init__(self, base_url: str, threshold: int, probe: Callable[[], str | None]) -> None:
        self.base_url = base_url
        self.threshold = threshold  # 0: never declared down (every request retries)
        self._probe = probe
        self._lock = threading.Lock()
        self.in_a_row = 0
        self.down: str | None = None  # why it is down (the last reason); None: up
        self._failures_at_down = 0
        self._warned = False  # this down spell already warned about
        self.health_checks = 0
        self.not_run = 0

    def connected(self) -> None:
        """Something answered (a response of any status): the server is up."""
        with self._lock:
            self.in_a_row = 0
            self.down = None
            self._warned = False

    def unreachable(self, reason: str, *, at_once: bool = False) -> None:
        """A request ended unable to connect (its retries spent); `at_once`: the server's facts
        could not be read, so nothing can run until it answers: down without waiting for more."""
        with self._lock:
            self.in_a_row += 1
            if self.threshold and (at_once or self.in_a_row >= self.threshold):
                if self.down is None:
                    self._failures_at_down = self.in_a_row
                self.down = reason

    def not_run_at_once(self, items: int) -> None:
        """Count `items` failed at once on a health check made for others (`SharedCheck`)."""
        with self._lock:
            self.not_run += items

    def check(self, items: int) -> str | None:
        """None when the server is up (no request made unless it was down); else, after one
        health check that found it still down, the message for the `items` not run."""
        if self.down is None:
            return None
        reason = self._probe()
        with self._lock:
            self.health_checks += 1
            if reason is None:
                self.in_a_row, self.down, self._warned = 0, None, False
                return None
            self.down = reason
            self.not_run += items
            warn, self._warned = not self._warned, True
            failures = self._failures_at_down
        if warn:
            warnings.warn(
                f"llmeval: server {self.base_url} unreachable ({reason}) after {failures} "
                f"connection failure{'s' if failures != 1 else ''} in a row: its items fail at "
                "once while it stays down (one health check per batch) and run again when it "
                "answers",
                stacklevel=3,
            )
        return (
            f"server {self.base_url} unreachable: {reason}; not run (health check GET "
            f"{self.base_url}/models failed): rerun when the server is back, finished items "
            "come from the cache"
        )


@dataclass
class SharedCheck:
    """Health checks for one stream of requests (a whole share through the pool): while the
    server is down, one check answers for `every` requests (a batch's worth, as on the
    batch path), so a dead server costs one GET per `concurrency` items, not one per item."""

    health: ServerHealth
    every: int
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _verdict: str | None = None
    _left: int = 0

    def check(self) -> str | None:
        """None when the server is up; else the message for this request, not run."""
        if self.health.down is None:
            return None
        with self._lock:
            if self._verdict is not None and self._left > 0:
                self._left -= 1
                self.health.not_run_at_once(1)
                return self._verdict
            self._verdict = self.health.check(1)
            self._left = self.every - 1 if self._verdict is not None else 0
            return self._verdict
