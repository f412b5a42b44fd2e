"""A crash-safe, multi-process cache of generations, kept in one SQLite file.

Generations are expensive, so each finished batch is committed (`put_many`, one transaction)
before the next batch starts: a run killed with SIGKILL and restarted regenerates nothing that
finished, and a rerun whose every item is cached never needs to load a model.

The database is ``<directory>/generations.sqlite3`` in WAL mode with ``synchronous=NORMAL``:
a committed transaction survives the death of the process that wrote it (only an OS crash or
power loss can drop the last few), readers never block the writer, and concurrent writers
(pytest-xdist workers, each with its own `GenerationCache`) wait up to `BUSY_TIMEOUT_S` for
one another instead of failing.

The cache never breaks a run: when its location cannot be created or written (read-only
directory, permission denied, disk full), it emits one `CacheUnavailableWarning`, stops using
what failed, and the run continues uncached. A corrupt database file (not SQLite, truncated)
is moved aside and rebuilt, with one `CacheCorruptWarning` naming where it went
(`cache_recovery`), so later runs neither warn again nor run uncached.

Keys come from `cache_key` (run/cache_key.py): a hash of the backend identity, the chat
messages (for a backend whose identity names its chat template and tokenizer) or else the
rendered prompt, the generation settings and the sample index. The SQLite connections and
statements are in run/cache_sqlite.py. This module imports neither pytest nor torch.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from pytest_llmeval.declare.settings import CacheMode
from pytest_llmeval.run.cache_recovery import (
    Identity,
    cache_lock,
    file_identity,
    is_corrupt,
    move_aside,
)
from pytest_llmeval.run.cache_sqlite import insert, open_read_only, select, set_up

DB_NAME = "generations.sqlite3"

log = logging.getLogger(__name__)

# Connections inherited through fork() are never used nor closed in the child: closing one
# would drop the POSIX locks that the child's own connections hold on the same file.
_INHERITED: list[sqlite3.Connection] = []


class CacheUnavailableWarning(UserWarning):
    """The generation cache cannot be used (its directory is unwritable, the disk is full, ...);
    the run continues uncached."""


class CacheCorruptWarning(UserWarning):
    """The cache database was corrupt: it was moved aside (the warning names its new path) and
    a new, empty one took its place."""


@dataclass
class CacheStats:
    """Lookups that found an entry (`hits`) or did not (`misses`), and entries committed."""

    hits: int = 0
    misses: int = 0
    writes: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counters as plain JSON."""
        return asdict(self)


class GenerationCache:
    """Generations by `cache_key`, stored as JSON objects in ``directory / DB_NAME``.

    Opened lazily on first use, so a cache that is never consulted touches nothing. One
    instance per process and thread: xdist workers each create their own.

    `max_pages` is for tests: it caps the database size, which makes SQLite report
    "database or disk is full" the way a full disk does.
    """

    def __init__(
        self, directory: Path, mode: CacheMode = "on", *, max_pages: int | None = None
    ) -> None:
        if mode not in ("on", "off", "read"):
            raise ValueError(f"cache mode must be 'on', 'off' or 'read', got {mode!r}")
        self._directory = Path(directory)
        self._path = self._directory / DB_NAME
        self._mode: CacheMode = mode
        self._max_pages = max_pages
        self._conn: sqlite3.Connection | None = None
        self._pid = os.getpid()
        self._can_read = mode != "off"
        self._can_write = mode == "on"
        self._failed = False
        self._identity: Identity | None = None  # the database file the connection opened
        self._recovered = False
        self.stats = CacheStats()

    @property
    def path(self) -> Path:
        """The database file."""
        return self._path

    @property
    def mode(self) -> CacheMode:
        """on, read or off (off once the cache proved unusable)."""
        return self._mode

    @property
    def usable(self) -> bool:
        """False once the cache gave up (after its one `CacheUnavailableWarning`)."""
        return not self._failed

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored entry for `key`, or None."""
        return self.get_many([key]).get(key)

    def get_many(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The stored entries among `keys` (keys without an entry are left out)."""
        wanted = list(dict.fromkeys(keys))
        found: dict[str, dict[str, Any]] = {}
        conn = self._connection()
        while conn is not None:
            try:
                found = select(conn, wanted)
            except (sqlite3.Error, OSError) as exc:
                found = {}
                conn = self._recover(exc)  # a fresh database holds nothing: this once, empty
                if conn is None:
                    self._give_up(exc, reads=True)
                continue
            break
        self.stats.hits += len(found)
        self.stats.misses += len(wanted) - len(found)
        return found

    def put_many(self, entries: Sequence[tuple[str, Mapping[str, Any]]]) -> None:
        """Store `entries` (key, JSON-able mapping) in one transaction, committed before this
        returns; an existing entry with the same key is replaced. A value that is not plain
        JSON raises TypeError/ValueError and stores nothing of the batch."""
        if not entries or not self._can_write:
            return
        now = time.time()
        rows = [
            (key, json.dumps(dict(value), separators=(",", ":")), now) for key, value in entries
        ]
        conn = self._connection()
        while conn is not None and self._can_write:
            try:
                insert(conn, rows)
            except (sqlite3.Error, OSError) as exc:
                conn = self._recover(exc)  # the batch goes into the rebuilt database
                if conn is None:
                    self._give_up(exc, reads=False)
                continue
            self.stats.writes += len(rows)
            return

    def close(self) -> None:
        """Close the connection (a later call opens a new one)."""
        conn, self._conn = self._conn, None
        if conn is not None and self._pid == os.getpid():
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    def __enter__(self) -> GenerationCache:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"GenerationCache({str(self._directory)!r}, mode={self._mode!r})"

    # -- connection handling ------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection | None:
        """The open connection, opening it on first use; None when there is nothing to read."""
        if not self._can_read:
            return None
        if self._conn is not None and self._pid != os.getpid():
            _INHERITED.append(self._conn)  # forked: this process needs its own connection
            self._conn = None
        if self._conn is not None:
            return self._conn
        self._pid = os.getpid()
        if self._can_write:
            try:
                self._conn = self._open_read_write()
            except (sqlite3.Error, OSError) as exc:
                self._give_up(exc, reads=False)  # an existing database may still be readable
        if self._conn is None:
            try:
                self._conn = open_read_only(self._path)
            except (sqlite3.Error, OSError) as exc:
                self._give_up(exc, reads=True)
        return self._conn

    def _open_read_write(self) -> sqlite3.Connection:
        self._directory.mkdir(parents=True, exist_ok=True)
        # Under the lock: no other process moves the file aside while this one opens it, so
        # the identity taken here is the connection's file.
        with cache_lock(self._path):
            try:
                conn = set_up(self._path, self._max_pages)
            except sqlite3.DatabaseError as exc:
                if not is_corrupt(exc) or self._recovered:
                    raise
                self._recovered = True
                self._moved_aside(exc, move_aside(self._path, file_identity(self._path)))
                conn = set_up(self._path, self._max_pages)
            self._identity = file_identity(self._path)
        return conn

    def _recover(self, exc: BaseException) -> sqlite3.Connection | None:
        """After `exc` on an open connection: when it says the database is corrupt (and this
        cache may write), move the file aside, unless another process did already, and return
        a connection to a new database; else None. Once per cache."""
        if not (is_corrupt(exc) and self._can_write) or self._recovered:
            return None
        self._recovered = True
        self.close()
        try:
            with cache_lock(self._path):
                moved = move_aside(self._path, self._identity)
        except OSError:
            return None
        self._moved_aside(exc, moved)
        return self._connection()

    def _moved_aside(self, exc: BaseException, moved: Path | None) -> None:
        """Warn once that the corrupt database now lives at `moved` (None: another process
        moved it, and warns)."""
        if moved is None:
            return
        warnings.warn(
            f"generation cache database {self._path} was corrupt ({type(exc).__name__}: "
            f"{exc}); moved it to {moved} and started a new one",
            CacheCorruptWarning,
            stacklevel=_outside_stacklevel(),
        )

    def _give_up(self, exc: BaseException, *, reads: bool) -> None:
        """Stop writing (and reading, if `reads`); warn the first time only."""
        self._can_write = False
        if reads:
            self._can_read = False
            self.close()
        log.debug("generation cache at %s failed", self._directory, exc_info=exc)
        if self._failed:
            return
        self._failed = True
        still = "" if reads else "; entries already cached are still read where possible"
        warnings.warn(
            f"generation cache at {self._directory} is unavailable "
            f"({type(exc).__name__}: {exc}); the run continues uncached{still}",
            CacheUnavailableWarning,
            stacklevel=_outside_stacklevel(),
        )


def _outside_stacklevel() -> int:
    """The `stacklevel` that makes a warning point at the first caller outside this module."""
    frame = sys._getframe(1)  # the caller of warnings.warn
    level = 1
    while frame.f_back is not None and frame.f_globals.get("__name__") == __name__:
        frame = frame.f_back
        level += 1
    return level
