"""The generation cache's SQLite side: connections, the table, and its two statements.

- A read-write connection switches the database to WAL with ``synchronous=NORMAL`` (a
  committed transaction survives the death of its process; readers never block the writer)
  and creates the table; concurrent writers wait up to `BUSY_TIMEOUT_S` for one another.
- A read-only connection, for `--llmeval-cache read` or a directory the run may not write,
  opens the database immutable where SQLite cannot create its WAL index.
- Entries are read in chunks under SQLite's bound-parameter limit and written in one
  committed transaction.

Every function raises what SQLite raises: deciding what a failure means (corrupt, full,
read-only) is `GenerationCache`'s job (run/cache.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

BUSY_TIMEOUT_S = 30.0
CHUNK = 500  # keys per `IN (...)` query, well under SQLite's bound-parameter limit

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS generations "
    "(key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL NOT NULL)"
)

T = TypeVar("T")


def connect(target: str, *, uri: bool = False) -> sqlite3.Connection:
    """A connection that waits `BUSY_TIMEOUT_S` for other writers."""
    # isolation_level=None: no implicit transactions; `insert` manages its own.
    conn = sqlite3.connect(target, timeout=BUSY_TIMEOUT_S, isolation_level=None, uri=uri)
    conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    return conn


def set_up(path: Path, max_pages: int | None) -> sqlite3.Connection:
    """A read-write connection to the database in WAL mode, its table created; `max_pages`
    caps its size (for tests: "database or disk is full" the way a full disk says it)."""
    conn = connect(str(path))
    try:
        mode = retry_locked(lambda: conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"cannot switch to WAL journal mode ({mode})")
        conn.execute("PRAGMA synchronous = NORMAL")
        retry_locked(lambda: conn.execute(_SCHEMA))
        if max_pages is not None:
            conn.execute(f"PRAGMA max_page_count = {int(max_pages)}")
    except BaseException:
        conn.close()
        raise
    return conn


def open_read_only(path: Path) -> sqlite3.Connection | None:
    """A connection that cannot write, or None while there is no database (or table)."""
    if not path.is_file():
        return None
    uri = path.resolve().as_uri() + "?mode=ro"
    try:
        return _read_only_connection(uri)
    except sqlite3.OperationalError:
        if os.access(path.parent, os.W_OK):
            raise
    # Reading a WAL database needs its -shm file, which SQLite cannot create in a directory
    # it may not write; nothing can change the database there, so read it as immutable.
    return _read_only_connection(uri + "&immutable=1")


def _read_only_connection(uri: str) -> sqlite3.Connection | None:
    conn = connect(uri, uri=True)
    try:
        found = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'generations'"
        ).fetchone()
    except BaseException:
        conn.close()
        raise
    if found is None:  # a writer created the file but not yet the table: nothing cached
        conn.close()
        return None
    return conn


def retry_locked(step: Callable[[], T], attempts: int = 100, pause_s: float = 0.05) -> T:
    """Run a setup step, retrying while another process holds the lock.

    Switching a new database to WAL needs an exclusive lock, and SQLite reports "database is
    locked" at once instead of waiting for busy_timeout; xdist workers that open a fresh cache
    together hit exactly that.
    """
    for attempt in range(attempts):
        try:
            return step()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(pause_s)
    raise AssertionError("unreachable")


def select(conn: sqlite3.Connection, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The decodable stored entries among `keys`, in chunks under the parameter limit."""
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(keys), CHUNK):
        chunk = keys[start : start + CHUNK]
        marks = ",".join("?" * len(chunk))
        rows = conn.execute(f"SELECT key, value FROM generations WHERE key IN ({marks})", chunk)
        for key, text in rows:
            entry = _decode(text)
            if entry is not None:
                found[key] = entry
    return found


def insert(conn: sqlite3.Connection, rows: Sequence[tuple[str, str, float]]) -> None:
    """Store `rows` in one committed transaction (rolled back on any failure)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany(
            "INSERT OR REPLACE INTO generations (key, value, created) VALUES (?, ?, ?)", rows
        )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        raise


def _decode(text: Any) -> dict[str, Any] | None:
    """A stored value as a dict, or None when it is not a JSON object (counted as a miss)."""
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return None
    return value if isinstance(value, dict) else None
