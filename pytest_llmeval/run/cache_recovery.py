"""A corrupt generation cache is moved aside once and rebuilt, safely under xdist workers.

A database that is not SQLite at all, or one truncated by a full disk or a bad copy, would
otherwise make every later run warn and run uncached. Instead the first process that finds it
corrupt renames it (with its -wal and -shm files) to ``generations.sqlite3.corrupt-<UTC
time>-<pid>``, says so in one warning, and starts a new database; the old file is kept for
inspection, never deleted.

Several xdist workers open the cache at the same moment. Opening and moving aside happen under
one lock file beside the database (``fcntl.flock``: released by the OS when a process dies), and
a file is moved only while it is still the very file (device and inode) that was found corrupt:
a worker that finds a corrupt file after another worker already replaced it opens the new one.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no flock; concurrent workers may each move a corrupt file
    fcntl = None  # type: ignore[assignment]

Identity = tuple[int, int]

_CORRUPT = {"SQLITE_CORRUPT", "SQLITE_NOTADB"}


def is_corrupt(exc: BaseException) -> bool:
    """Whether a SQLite error says the file is damaged (not a database, malformed image),
    rather than busy, read-only or full."""
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    name = getattr(exc, "sqlite_errorname", None)  # Python 3.11+
    if name is not None:
        return name in _CORRUPT
    text = str(exc)
    return "file is not a database" in text or "disk image is malformed" in text


def file_identity(path: Path) -> Identity | None:
    """(device, inode) of `path`, None when it does not exist."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return (stat.st_dev, stat.st_ino)


@contextlib.contextmanager
def cache_lock(database: Path) -> Iterator[None]:
    """Hold ``<database>.lock`` exclusively (blocking); not re-entrant within a process."""
    if fcntl is None:
        yield
        return
    handle = os.open(database.with_name(database.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)  # closing releases the lock


def move_aside(database: Path, found: Identity | None) -> Path | None:
    """Rename a corrupt `database` and its -wal/-shm files out of the way; call it holding
    `cache_lock`. `found` is the identity of the file found corrupt: when `database` is no
    longer that file (another process moved it aside already), nothing moves and this returns
    None; else the new name of the database file."""
    if found is None or file_identity(database) != found:
        return None
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = database.with_name(f"{database.name}.corrupt-{stamp}-{os.getpid()}")
    for suffix in ("-wal", "-shm"):
        # A log or index of the damaged file must not be replayed into the new database.
        with contextlib.suppress(FileNotFoundError):
            os.replace(f"{database}{suffix}", f"{target}{suffix}")
    os.replace(database, target)
    return target
