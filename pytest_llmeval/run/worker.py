"""This process's model work, bound once at configure time: the engine (resident backends,
generation cache, energy meter) and the items queued to run after the current one.

Every process that runs items has one `Worker` (the only process without xdist, each xdist
worker with it); items reach it through `worker_of(config)`. Creating it does no I/O: the
cache opens and backends load on first use.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from pytest_llmeval.backends import Backend
from pytest_llmeval.declare.models import ModelSpec
from pytest_llmeval.declare.settings import Settings
from pytest_llmeval.run.cache import GenerationCache
from pytest_llmeval.run.crash_journal import ALONE_KEY, JOURNAL_KEY, BatchJournal
from pytest_llmeval.run.engine import Engine
from pytest_llmeval.run.smoke import SmokeRun
from pytest_llmeval.run.xdist_queue import XdistQueueUnavailable, is_xdist_worker, queued_indices

if TYPE_CHECKING:
    from pytest_llmeval.run.items import EvalItem

WORKER = pytest.StashKey["Worker"]()


class Worker:
    """The engine of this process and the view of its upcoming items."""

    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        self.config = config
        self.settings = settings
        cache = None
        if settings.cache_mode != "off":
            cache = GenerationCache(settings.cache_dir, settings.cache_mode)
        self.engine = Engine(
            make_backend=self._make_backend,
            batch_size=settings.batch_size,
            cache=cache,
            batch_invariant=settings.batch_invariant,
            vram_check=settings.vram_check,
        )
        self.smoke = SmokeRun(self.engine) if settings.smoke else None
        # xdist: the controller's crash journal and, for a replacement of a crashed worker,
        # the items of the batch that crashed (generated one at a time).
        workerinput = getattr(config, "workerinput", {})
        if workerinput.get(JOURNAL_KEY):
            self.engine.journal = BatchJournal(workerinput[JOURNAL_KEY], self.engine.worker)
        self.engine.alone = frozenset(workerinput.get(ALONE_KEY, ()))
        self._positions: dict[str, int] | None = None
        self._queue_warned = False

    @property
    def name(self) -> str:
        """`gw0`... under xdist, `main` otherwise."""
        return self.engine.worker

    def _make_backend(self, spec: ModelSpec) -> Backend:
        # The hook, so that a conftest's pytest_llmeval_make_backend wins over the registry.
        backend: Backend = self.config.hook.pytest_llmeval_make_backend(
            config=self.config, spec=spec
        )
        return backend

    def upcoming(self, item: pytest.Item) -> Iterator[EvalItem]:
        """Eval items this process will run after `item`, lazily, so they can share its batch."""
        from pytest_llmeval.run.items import EvalItem

        items = item.session.items
        for candidate in (items[i] for i in self._following(item)):
            if isinstance(candidate, EvalItem):
                yield candidate

    def _following(self, item: pytest.Item) -> Iterator[int]:
        if is_xdist_worker(self.config):
            try:
                yield from queued_indices(self.config)
            except XdistQueueUnavailable as exc:
                self._warn_once(exc)
            return
        # Positions are taken from the final item list (after -k, --lf, --ff and any
        # reordering plugin), at the first item that runs.
        if self._positions is None:
            self._positions = {each.nodeid: i for i, each in enumerate(item.session.items)}
        index = self._positions.get(item.nodeid)
        if index is not None:
            yield from range(index + 1, len(item.session.items))

    def _warn_once(self, exc: Exception) -> None:
        if not self._queue_warned:
            self._queue_warned = True
            warnings.warn(
                f"llmeval: {exc}; items are generated one at a time (slower, same results)",
                pytest.PytestWarning,
                stacklevel=2,
            )

    def close(self) -> None:
        """Release models, the cache and the meter (session end)."""
        self.engine.close()


def worker_of(config: pytest.Config) -> Worker:
    """This process's Worker (created by the plugin at configure time)."""
    return config.stash[WORKER]
