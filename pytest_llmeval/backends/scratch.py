"""Scratch directories of model conversions: named after their owner, cleaned once it is gone.

Converting the embedded GGUF writes a 514 MiB checkpoint into a scratch directory beside the
target and renames it into place. A run killed meanwhile (Ctrl-C twice, kill -9, an OOM kill)
leaves the scratch directory behind, one per converting process. Each is named
``.convert-<host>-<pid>-<random>``, so the next start removes those whose process on this
host is gone; a live process's scratch (another xdist worker converting right now) and other
hosts' (a cache directory shared over the network) are never touched. Directories named by
older versions (``.convert-<random>``, no owner) are removed once a day old.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import tempfile
import time
from pathlib import Path

PREFIX = ".convert-"
LEGACY_AGE_S = 24 * 3600
_OWNED = re.compile(rf"^{re.escape(PREFIX)}(?P<host>.+)-(?P<pid>\d+)-[^-]+$")


def make_scratch(parent: Path) -> Path:
    """A new, empty scratch directory in `parent`, named after this host and process."""
    return Path(tempfile.mkdtemp(prefix=f"{PREFIX}{_host()}-{os.getpid()}-", dir=parent))


def remove_stale_scratch(parent: Path) -> list[Path]:
    """Remove the scratch directories in `parent` whose owner is gone (see the module
    docstring); returns those removed. Safe while other processes convert or clean."""
    try:
        candidates = [p for p in parent.iterdir() if p.name.startswith(PREFIX) and p.is_dir()]
    except OSError:  # no such directory yet, or unreadable: nothing to clean
        return []
    removed = []
    for path in candidates:
        if _stale(path):
            # Another cleaner may be removing it too: whatever is left is gone either way.
            shutil.rmtree(path, ignore_errors=True)
            if not path.exists():
                removed.append(path)
    return removed


def _stale(path: Path) -> bool:
    owned = _OWNED.match(path.name)
    if owned is None:
        try:
            return time.time() - path.stat().st_mtime > LEGACY_AGE_S
        except OSError:
            return False
    if owned["host"] != _host():
        return False
    return not _alive(int(owned["pid"]))


def _alive(pid: int) -> bool:
    """Whether a process with this id runs on this host (a zombie counts as running)."""
    if pid == os.getpid():
        return True
    if os.name == "nt":  # os.kill(pid, 0) would send CTRL_C_EVENT there: assume it runs
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _host() -> str:
    """This host's name as it can appear in a file name."""
    return re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname()) or "host"
