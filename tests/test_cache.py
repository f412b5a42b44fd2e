"""The generation cache: stable keys, round trips, persistence, crash safety, concurrent
writers, cache modes, and degrading to one warning when the cache location is unusable."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path
from typing import Any

import pytest

from pytest_llmeval.backends import GenerationRequest
from pytest_llmeval.declare.task import Generation
from pytest_llmeval.run.cache import DB_NAME, CacheUnavailableWarning, GenerationCache
from pytest_llmeval.run.cache_key import cache_key
from pytest_llmeval.run.cache_sqlite import CHUNK

REPO_ROOT = Path(__file__).resolve().parent.parent

IDENTITY = {
    "backend": "transformers",
    "model": "org/model",
    "revision": "abc123",
    "dtype": "bfloat16",
    "chat_template": "deadbeef",
}


def entry(i: int, text: str = "answer") -> dict[str, Any]:
    return {"text": f"{text} {i}", "tokens_out": i, "finish_reason": "stop"}


def run_python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO_ROOT,
    )


def test_cache_key_is_stable_sha256_hex() -> None:
    key = cache_key(IDENTITY, "prompt", Generation())
    assert key == cache_key(dict(reversed(IDENTITY.items())), "prompt", Generation())
    assert key == cache_key(IDENTITY, "prompt", Generation(), 0)
    assert len(key) == 64 and int(key, 16) >= 0


@pytest.mark.parametrize("field", sorted(IDENTITY))
def test_cache_key_changes_with_each_identity_field(field: str) -> None:
    changed = {**IDENTITY, field: IDENTITY[field] + "x"}
    assert cache_key(changed, "p", Generation()) != cache_key(IDENTITY, "p", Generation())


@pytest.mark.parametrize(
    "settings",
    [
        Generation(max_new_tokens=255),
        Generation(temperature=0.7),
        Generation(top_p=0.9),
        Generation(stop=("\n",)),
        Generation(seed=1),
    ],
    ids=["max_new_tokens", "temperature", "top_p", "stop", "seed"],
)
def test_cache_key_changes_with_each_generation_field(settings: Generation) -> None:
    assert cache_key(IDENTITY, "p", settings) != cache_key(IDENTITY, "p", Generation())


def test_cache_key_changes_with_prompt_and_sample_index() -> None:
    base = cache_key(IDENTITY, "p", Generation())
    assert cache_key(IDENTITY, "p ", Generation()) != base
    assert cache_key(IDENTITY, "p", Generation(), sample_index=1) != base
    # Extra identity facts matter too (e.g. a quantization the caller adds).
    assert cache_key({**IDENTITY, "quant": "q4"}, "p", Generation()) != base


def test_cache_key_compares_numbers_by_value() -> None:
    assert cache_key(IDENTITY, "p", Generation(temperature=0, top_p=1)) == cache_key(
        IDENTITY, "p", Generation(temperature=0.0, top_p=1.0)
    )
    assert cache_key(IDENTITY, "p", Generation(stop=["a"])) == cache_key(  # type: ignore[arg-type]
        IDENTITY, "p", Generation(stop=("a",))
    )


def test_round_trip_and_stats(tmp_path: Path) -> None:
    cache = GenerationCache(tmp_path / "cache")
    assert cache.path == tmp_path / "cache" / DB_NAME
    assert cache.get("k0") is None
    cache.put_many([(f"k{i}", entry(i)) for i in range(3)])
    assert cache.get("k1") == entry(1)
    assert cache.get_many(["k0", "k2", "nope", "k0"]) == {"k0": entry(0), "k2": entry(2)}
    assert cache.get_many([]) == {}
    assert cache.stats.as_dict() == {"hits": 3, "misses": 2, "writes": 3}
    assert cache.usable
    cache.close()


def test_get_many_with_more_keys_than_one_query_takes(tmp_path: Path) -> None:
    n = CHUNK * 2 + 37
    with GenerationCache(tmp_path) as cache:
        cache.put_many([(f"k{i}", entry(i)) for i in range(n)])
        keys = [f"k{i}" for i in range(n)] + [f"missing{i}" for i in range(CHUNK)]
        found = cache.get_many(keys)
    assert found == {f"k{i}": entry(i) for i in range(n)}
    assert cache.stats.hits == n and cache.stats.misses == CHUNK


def test_insert_or_replace_overwrites(tmp_path: Path) -> None:
    with GenerationCache(tmp_path) as cache:
        cache.put_many([("k", entry(1, "old")), ("other", entry(2))])
        cache.put_many([("k", entry(1, "new"))])
        assert cache.get("k") == entry(1, "new")
        assert cache.get("other") == entry(2)
    rows = sqlite3.connect(tmp_path / DB_NAME).execute("SELECT count(*) FROM generations")
    assert rows.fetchone()[0] == 2


def test_new_instance_sees_entries(tmp_path: Path) -> None:
    with GenerationCache(tmp_path) as cache:
        cache.put_many([("a", entry(1)), ("b", entry(2))])
    with GenerationCache(tmp_path) as again:
        assert again.get_many(["a", "b"]) == {"a": entry(1), "b": entry(2)}


def test_committed_batch_survives_sigkill(tmp_path: Path) -> None:
    # Batch 1 goes through put_many; batch 2 is mid-transaction when the process is killed.
    code = """
        import os, signal, sys
        from pathlib import Path
        from pytest_llmeval.run.cache import GenerationCache

        cache = GenerationCache(Path(sys.argv[1]))
        cache.put_many([(f"done{i}", {"text": str(i)}) for i in range(20)])
        conn = cache._connection()
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO generations VALUES (?, '{}', 0)", [(f"torn{i}",) for i in range(20)]
        )
        os.kill(os.getpid(), signal.SIGKILL)
    """
    result = run_python(code, str(tmp_path))
    assert result.returncode == -9, result.stderr
    with GenerationCache(tmp_path) as cache:
        found = cache.get_many([f"done{i}" for i in range(20)] + [f"torn{i}" for i in range(20)])
        assert found == {f"done{i}": {"text": str(i)} for i in range(20)}
        cache.put_many([("after", {"text": "ok"})])  # the killed writer left no lock behind
        assert cache.get("after") == {"text": "ok"}
        assert cache.usable


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    # Each writer waits at a barrier (the "go" file) so that all open and write at once.
    code = """
        import sys, time, warnings
        from pathlib import Path
        from pytest_llmeval.run.cache import GenerationCache

        warnings.simplefilter("error")  # a CacheUnavailableWarning fails the writer
        root, worker = Path(sys.argv[1]), int(sys.argv[2])
        (root / f"ready{worker}").touch()
        deadline = time.monotonic() + 30
        while not (root / "go").exists():
            assert time.monotonic() < deadline, "no go signal"
            time.sleep(0.001)
        cache = GenerationCache(root / "cache")
        for batch in range(50):
            cache.put_many(
                [(f"w{worker}b{batch}i{i}", {"text": f"{worker}/{batch}/{i}"}) for i in range(10)]
            )
        assert cache.stats.writes == 500 and cache.usable
        cache.close()
    """
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code), str(tmp_path), str(w)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO_ROOT,
        )
        for w in range(4)
    ]
    try:
        deadline = time.monotonic() + 30
        while not all((tmp_path / f"ready{w}").exists() for w in range(4)):
            assert time.monotonic() < deadline, "writers did not start"
            assert all(p.poll() is None for p in writers), [p.communicate() for p in writers]
            time.sleep(0.005)
        (tmp_path / "go").touch()
        outcomes = [p.communicate(timeout=60) for p in writers]
    finally:
        for p in writers:
            if p.poll() is None:
                p.kill()
    for p, (_, err) in zip(writers, outcomes, strict=True):
        assert p.returncode == 0, err
    keys = [f"w{w}b{b}i{i}" for w in range(4) for b in range(50) for i in range(10)]
    with GenerationCache(tmp_path / "cache", mode="read") as cache:
        found = cache.get_many(keys)
    assert len(found) == 2000
    assert found["w3b49i9"] == {"text": "3/49/9"}


def test_read_mode_reads_and_never_writes(tmp_path: Path) -> None:
    with GenerationCache(tmp_path) as cache:
        cache.put_many([("old", entry(1))])
    with GenerationCache(tmp_path, mode="read") as reader:
        assert reader.get("old") == entry(1)
        reader.put_many([("new", entry(2)), ("old", entry(3, "changed"))])
        assert reader.stats.writes == 0
    with GenerationCache(tmp_path) as fresh:
        assert fresh.get_many(["old", "new"]) == {"old": entry(1)}


def test_read_mode_without_a_database_creates_nothing(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cache = GenerationCache(tmp_path / "absent", mode="read")
        assert cache.get("k") is None
        cache.put_many([("k", entry(1))])
        assert cache.get_many(["k"]) == {}
        cache.close()
    assert not (tmp_path / "absent").exists()
    assert cache.usable


def test_off_mode_touches_no_disk(tmp_path: Path) -> None:
    with GenerationCache(tmp_path, mode="off") as cache:
        cache.put_many([("k", entry(1))])
        assert cache.get("k") is None
        assert cache.get_many(["k", "j"]) == {}
        assert cache.stats.as_dict() == {"hits": 0, "misses": 3, "writes": 0}
    assert list(tmp_path.iterdir()) == []
    with GenerationCache(tmp_path / "sub", mode="off") as cache:
        cache.put_many([("k", entry(1))])
    assert not (tmp_path / "sub").exists()


def test_bad_mode_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cache mode"):
        GenerationCache(tmp_path, mode="yes")  # type: ignore[arg-type]


def test_unwritable_location_warns_once_and_runs_uncached(tmp_path: Path) -> None:
    # A regular file where the directory should be: mkdir fails, even for root.
    blocker = tmp_path / "cache"
    blocker.write_text("not a directory")
    cache = GenerationCache(blocker)
    with pytest.warns(CacheUnavailableWarning) as record:
        cache.put_many([("k", entry(1))])
        assert cache.get("k") is None
        cache.put_many([("k", entry(1))])
        assert cache.get_many(["k", "j"]) == {}
        cache.close()
        cache.put_many([("k", entry(1))])
    assert len(record) == 1
    message = str(record[0].message)
    assert str(blocker) in message and "continues uncached" in message
    assert record[0].filename == __file__  # points at the caller, not at the cache module
    assert not cache.usable
    assert cache.stats.writes == 0
    assert blocker.read_text() == "not a directory"


def test_read_only_directory_warns_once_and_keeps_reading(tmp_path: Path) -> None:
    with GenerationCache(tmp_path / "cache") as cache:
        cache.put_many([("old", entry(1))])
    directory = tmp_path / "cache"
    directory.chmod(0o555)
    try:
        try:
            (directory / "probe").touch()
        except PermissionError:
            pass
        else:
            pytest.skip("chmod does not stop this user (root) from writing")
        cache = GenerationCache(directory)
        with pytest.warns(CacheUnavailableWarning) as record:
            cache.put_many([("new", entry(2))])
            assert cache.get("old") == entry(1)
            cache.put_many([("new", entry(2))])
            assert cache.get("new") is None
        assert len(record) == 1 and str(directory) in str(record[0].message)
        assert not cache.usable
        cache.close()
    finally:
        directory.chmod(0o755)


def test_full_disk_warns_once_and_keeps_what_was_written(tmp_path: Path) -> None:
    cache = GenerationCache(tmp_path, max_pages=12)  # 12 pages of 4 KiB
    cache.put_many([(f"early{i}", entry(i)) for i in range(5)])
    big = "x" * 2000
    with pytest.warns(CacheUnavailableWarning, match="full") as record:
        for batch in range(40):  # ~80 KB in all, several times the cap
            cache.put_many([(f"b{batch}i{i}", {"text": big}) for i in range(2)])
        cache.put_many([("late", entry(0))])
        assert cache.get_many([f"early{i}" for i in range(5)]) == {
            f"early{i}": entry(i) for i in range(5)
        }
    assert len(record) == 1
    assert str(tmp_path) in str(record[0].message)
    assert not cache.usable
    assert cache.get("late") is None
    written = cache.stats.writes
    assert 5 < written < 5 + 80 and (written - 5) % 2 == 0  # whole batches only
    cache.close()
    with GenerationCache(tmp_path) as fresh:  # no cap: a full-size disk again
        stored = fresh.get_many([f"b{b}i{i}" for b in range(40) for i in range(2)])
        assert len(stored) == written - 5
        assert sorted(stored) == sorted(
            f"b{b}i{i}" for b in range((written - 5) // 2) for i in range(2)
        )
        fresh.put_many([("late", entry(0))])
        assert fresh.get("late") == entry(0)


def test_value_that_is_not_json_raises_and_stores_nothing(tmp_path: Path) -> None:
    with GenerationCache(tmp_path) as cache:
        with pytest.raises(TypeError):
            cache.put_many([("ok", entry(1)), ("bad", {"text": object()})])
        assert cache.get_many(["ok", "bad"]) == {}
        assert cache.usable


def test_forked_child_opens_its_own_connection(tmp_path: Path) -> None:
    if not hasattr(os, "fork"):
        pytest.skip("no fork on this platform")
    cache = GenerationCache(tmp_path)
    cache.put_many([("parent", entry(1))])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            inherited = cache._conn
            cache.put_many([("child", entry(2))])
            ok = cache._conn is not inherited and cache.get("parent") == entry(1)
            code = 0 if ok and cache.usable else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert cache.get("child") == entry(2)
    cache.put_many([("parent2", entry(3))])
    assert cache.get("parent2") == entry(3)
    cache.close()


def test_sampled_generations_are_keyed_by_their_own_seed() -> None:
    sampled = Generation(temperature=0.7, seed=3)
    first = GenerationRequest([{"role": "user", "content": "q"}], sampled, item_id="t/test/0001")
    other = GenerationRequest([{"role": "user", "content": "q"}], sampled, item_id="t/test/0002")
    again = GenerationRequest([{"role": "user", "content": "q"}], sampled, item_id="t/test/0001")
    assert first.seed is not None and first.seed == again.seed
    assert first.seed != other.seed  # same prompt, another item: another draw
    assert cache_key(IDENTITY, "q", sampled, 0, first.seed) != cache_key(
        IDENTITY, "q", sampled, 0, other.seed
    )
    # Greedy decoding has no seed: two items with one prompt share one generation.
    greedy = GenerationRequest([{"role": "user", "content": "q"}], Generation(), item_id="a")
    assert greedy.seed is None
