"""A corrupt generation cache is moved aside (named in one warning) and rebuilt, once, even
when several processes open it at the same moment."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import warnings
from pathlib import Path
from typing import Any

import pytest

from pytest_llmeval.run.cache import (
    DB_NAME,
    CacheCorruptWarning,
    CacheUnavailableWarning,
    GenerationCache,
)


def entry(i: int) -> dict[str, Any]:
    return {"text": f"answer {i}", "tokens_out": i}


def not_sqlite(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / DB_NAME).write_bytes(b"this is not a sqlite database at all" * 200)


def truncated(folder: Path) -> None:
    """A real cache of 300 entries cut to half its size (a full disk, an interrupted copy)."""
    with GenerationCache(folder) as cache:
        cache.put_many([(f"k{i}", {"text": "x" * 2000, "i": i}) for i in range(300)])
    path = folder / DB_NAME
    os.truncate(path, path.stat().st_size // 2)


def moved_files(folder: Path) -> list[Path]:
    return sorted(folder.glob(f"{DB_NAME}.corrupt-*"))


@pytest.mark.parametrize("damage", [not_sqlite, truncated])
def test_corrupt_database_is_moved_aside_once_and_rebuilt(tmp_path: Path, damage: Any) -> None:
    damage(tmp_path)
    original = (tmp_path / DB_NAME).read_bytes()
    cache = GenerationCache(tmp_path)
    with pytest.warns(CacheCorruptWarning) as record:
        assert cache.get("k") is None
        cache.put_many([("k", entry(1))])
        assert cache.get("k") == entry(1)
    (moved,) = moved_files(tmp_path)
    assert len(record) == 1
    assert str(record[0].message).startswith(f"generation cache database {tmp_path / DB_NAME}")
    assert f"moved it to {moved} and started a new one" in str(record[0].message)
    assert moved.read_bytes() == original  # kept as it was, for inspection
    assert cache.usable and cache.stats.writes == 1
    cache.close()

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the next run: no warning at all
        with GenerationCache(tmp_path) as later:
            assert later.get("k") == entry(1)
    assert len(moved_files(tmp_path)) == 1


def test_read_only_mode_leaves_a_corrupt_database_where_it_is(tmp_path: Path) -> None:
    not_sqlite(tmp_path)
    cache = GenerationCache(tmp_path, mode="read")
    with pytest.warns(CacheUnavailableWarning):
        assert cache.get("k") is None
    assert moved_files(tmp_path) == [] and (tmp_path / DB_NAME).is_file()


def _open_together(folder: str, index: int, barrier: Any, results: Any) -> None:
    """A worker process: wait for the other, then write through the (corrupt) cache."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        barrier.wait()
        with GenerationCache(Path(folder)) as cache:
            cache.put_many([(f"worker{index}", entry(index))])
    results.put((index, [w.category.__name__ for w in caught]))


@pytest.mark.parametrize("damage", [not_sqlite, truncated])
def test_two_processes_opening_a_corrupt_cache_move_it_once(tmp_path: Path, damage: Any) -> None:
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("needs fork")
    context = multiprocessing.get_context("fork")
    for attempt in range(3):  # a few rounds: the two opens race differently each time
        folder = tmp_path / str(attempt)
        damage(folder)
        barrier = context.Barrier(2)
        results = context.Queue()
        processes = [
            context.Process(target=_open_together, args=(str(folder), i, barrier, results))
            for i in range(2)
        ]
        for process in processes:
            process.start()
        outcomes = dict(results.get(timeout=60) for _ in processes)
        for process in processes:
            process.join(timeout=60)
            assert process.exitcode == 0
        warned = sorted(outcomes[i] for i in range(2))
        assert warned == [[], ["CacheCorruptWarning"]]  # one warning, from the mover
        assert len(moved_files(folder)) == 1
        with sqlite3.connect(folder / DB_NAME) as conn:
            keys = sorted(row[0] for row in conn.execute("SELECT key FROM generations"))
        assert keys == ["worker0", "worker1"]  # nobody moved the other's new database away
