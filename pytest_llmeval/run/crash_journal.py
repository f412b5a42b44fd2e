"""What an xdist worker is generating right now, on disk, so a crash is blamed correctly.

When a worker dies, xdist blames the item it was running; but with batching the culprit may
be any item of the batch being generated (a prompt that segfaults the model, one that runs
out of memory). Before each batch the worker writes the batch's engine keys to its own file
in a directory the controller hands out (`workerinput["llmeval_journal"]`) and removes it when
the window is done. On a crash the controller reads the dead worker's file:

- no file: the worker died outside generation; the running item is blamed (as xdist does);
- a batch of one of the running item: that item crashes its worker by itself: it is blamed;
- a batch of several: nobody is blamed yet; the running item is rescheduled and the batch's
  items go to the replacement as `workerinput["llmeval_alone"]`, generated one at a time, so
  a second crash names the culprit.

Writes are tiny and atomic (a temporary file renamed over the old one); a journal that
cannot be written (a worker on another machine, a full disk) is switched off, and crashes
are then blamed as xdist does.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

JOURNAL_KEY = "llmeval_journal"
"""workerinput key: the directory of the workers' journal files (set by the controller)."""
ALONE_KEY = "llmeval_alone"
"""workerinput key: engine keys a replacement worker must generate one at a time."""


class BatchJournal:
    """One worker's journal file: the keys of the batch it is generating, if any."""

    def __init__(self, directory: str | os.PathLike[str], worker: str) -> None:
        self.path = journal_path(directory, worker)
        self.enabled = True

    def begin(self, keys: Sequence[str]) -> None:
        """Record the batch about to be generated (before the backend is called)."""
        if not self.enabled:
            return
        scratch = self.path.with_suffix(".tmp")
        try:
            scratch.write_text(json.dumps(list(keys)), encoding="utf-8")
            os.replace(scratch, self.path)
        except OSError:
            self.enabled = False  # not reachable from here: crashes are blamed as xdist does

    def clear(self) -> None:
        """Nothing is being generated any more (the window is done)."""
        if not self.enabled:
            return
        try:
            self.path.unlink(missing_ok=True)
        except OSError:
            self.enabled = False


def journal_path(directory: str | os.PathLike[str], worker: str) -> Path:
    """The journal file of `worker` (gw0, gw1...) in `directory`."""
    return Path(directory) / f"{worker}.json"


def read_batch(directory: str | os.PathLike[str], worker: str) -> list[str] | None:
    """The keys `worker` was generating when it stopped, or None (no batch, no readable file)."""
    try:
        keys = json.loads(journal_path(directory, worker).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(keys, list) or not all(isinstance(key, str) for key in keys):
        return None
    return keys


def belongs_to(key: str, nodeid: str) -> bool:
    """Whether engine key `key` is a request of test `nodeid`: the item's own, its reference
    request (`<nodeid>@reference`) or a hand-written test's generation (`<nodeid>#n`)."""
    return key == nodeid or key.startswith((f"{nodeid}@", f"{nodeid}#"))
