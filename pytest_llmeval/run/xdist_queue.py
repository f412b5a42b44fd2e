"""The items queued on an xdist worker after the one it is running: the one place where
pytest_llmeval reads pytest-xdist internals.

xdist has no public way for a worker to see its queue, and batching needs it: the worker
generates its upcoming items together with the running one. The read is isolated here and
checked by a test that runs a real xdist worker, so an xdist release that renames these
attributes fails that test loudly; at run time the worker then warns once and generates
item by item (correct, slower) instead of breaking the run.
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pytest

# How far ahead a worker looks into its queue for items to batch with the current one.
LOOKAHEAD = 1024


class XdistQueueUnavailable(RuntimeError):
    """This xdist worker's queue cannot be read (xdist changed its internals)."""


def is_xdist_worker(config: pytest.Config) -> bool:
    """Whether this process is an xdist worker (xdist sets `workerinput` on its config)."""
    return hasattr(config, "workerinput")


def queued_indices(config: pytest.Config) -> list[int]:
    """Indices into `session.items` of the items queued on this xdist worker after the
    running one, in run order (at most LOOKAHEAD + 1).

    Raises XdistQueueUnavailable when xdist's `WorkerInteractor` (its `torun` queue and
    `nextitem_index`) is not where this version of pytest_llmeval expects it.
    """
    interactor = _worker_interactor(config)
    queue = getattr(interactor, "torun", None)
    following = getattr(interactor, "nextitem_index", None)
    lock = getattr(queue, "lock", None)
    if interactor is None or lock is None or not hasattr(interactor, "nextitem_index"):
        raise XdistQueueUnavailable(
            f"cannot read the xdist worker queue (pytest-xdist {_xdist_version()}: no "
            "WorkerInteractor with torun/nextitem_index)"
        )
    indices = [following] if isinstance(following, int) else []
    with lock() as pending:
        indices.extend(i for i in itertools.islice(pending, LOOKAHEAD) if isinstance(i, int))
    return indices


@dataclass
class QueueFollower:
    """This xdist worker's queue (the next item and those after it, the whole queue, not
    `LOOKAHEAD`), followed as items leave its front and arrive at its back: each index is
    read about once over the session instead of the whole queue after every item."""

    # What the queue held at the last `advance` (the next item first; xdist's end marker
    # included, so positions match), and which deque that was (xdist replaces it on a steal).
    mirror: deque[Any] = field(default_factory=deque)
    source: Any = None

    def advance(self, config: pytest.Config) -> tuple[list[int], list[int]]:
        """The indices that left the queue (ran or started) since the last call and those
        that joined it. Raises XdistQueueUnavailable like `queued_indices`."""
        interactor = _worker_interactor(config)
        lock = getattr(getattr(interactor, "torun", None), "lock", None)
        if interactor is None or lock is None or not hasattr(interactor, "nextitem_index"):
            raise XdistQueueUnavailable(
                f"cannot read the xdist worker queue (pytest-xdist {_xdist_version()}: no "
                "WorkerInteractor with torun/nextitem_index)"
            )
        following = interactor.nextitem_index
        with lock() as pending:
            size = (following is not None) + len(pending)
            left: list[Any] = []
            if pending is self.source and following is not None:
                # Items leave from the front in order: drop what ran until the next item.
                while self.mirror and self.mirror[0] != following:
                    left.append(self.mirror.popleft())
            arrived = size - len(self.mirror)
            if pending is not self.source or not self.mirror or arrived < 0:
                # First read, a replaced queue or one that no longer matches: read it whole
                # (the mirror emptied: what is there now is all new).
                left += list(self.mirror)
                now = ([following] if following is not None else []) + list(pending)
                self.mirror, added = deque(now), now
            else:
                added = list(itertools.islice(reversed(pending), arrived))[::-1]
                self.mirror.extend(added)
            self.source = pending
        return _ints(left), _ints(added)


def _ints(indices: list[Any]) -> list[int]:
    return [i for i in indices if isinstance(i, int) and not isinstance(i, bool)]


def _worker_interactor(config: pytest.Config) -> Any:
    # xdist registers it without a name: find it by its class name.
    return next(
        (p for p in config.pluginmanager.get_plugins() if type(p).__name__ == "WorkerInteractor"),
        None,
    )


def _xdist_version() -> str:
    try:
        return metadata.version("pytest-xdist")
    except metadata.PackageNotFoundError:
        return "not installed"
