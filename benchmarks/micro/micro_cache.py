"""The generation cache (`run/cache.py`): put and get of 10,000 entries.

Values are what the engine stores: `GenerationResult.as_dict()` of a GSM8K-length response.
Puts commit one transaction per batch of 8, as the engine does after each batch (crash
safety), into a fresh database each round; gets read all 10,000 keys with `get_many`, as a
warm rerun looks up its items. The database lives in a temporary directory (the disk of
`$TMPDIR`): the figure depends on that disk's fsync.
"""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path
from typing import Any

import pytest

from pytest_llmeval.backends import GenerationResult
from pytest_llmeval.run.cache import GenerationCache

ENTRIES = 10_000
BATCH = 8
RESPONSE = (
    "Janet's ducks lay 16 eggs per day. She eats 3 for breakfast and bakes muffins with 4, "
    "so she has 16 - 3 - 4 = 9 eggs left. She sells them at $2 each: 9 * 2 = $18.\n#### 18"
)
_directories = itertools.count()


def entries(n: int) -> list[tuple[str, dict[str, Any]]]:
    result = GenerationResult(
        text=RESPONSE,
        prompt="<|im_start|>user\nJanet's ducks lay 16 eggs per day...<|im_end|>\n",
        tokens_in=180,
        tokens_out=64,
        latency_s=2.5,
        finish_reason="stop",
        batch_id="b0",
        batch_size=BATCH,
        batch_wall_s=3.0,
        latency_method="batch start until the item's last token",
        decoding={"do_sample": False, "max_new_tokens": 256, "seed": None},
    ).as_dict()
    return [(hashlib.sha256(str(i).encode()).hexdigest(), result) for i in range(n)]


def put_batches(cache: GenerationCache, rows: list[tuple[str, dict[str, Any]]]) -> None:
    for start in range(0, len(rows), BATCH):
        cache.put_many(rows[start : start + BATCH])
    cache.close()


def bench_cache_put_10k(benchmark: Any, tmp_path: Path, scale: int) -> None:
    rows = entries(ENTRIES // scale)

    def fresh() -> tuple[tuple[GenerationCache, list[tuple[str, dict[str, Any]]]], dict[str, Any]]:
        return (GenerationCache(tmp_path / f"db{next(_directories)}"), rows), {}

    benchmark.pedantic(put_batches, setup=fresh, rounds=5)


@pytest.fixture
def filled(tmp_path: Path, scale: int) -> tuple[Path, list[str]]:
    rows = entries(ENTRIES // scale)
    put_batches(GenerationCache(tmp_path), rows)
    return tmp_path, [key for key, _ in rows]


def bench_cache_get_10k(benchmark: Any, filled: tuple[Path, list[str]]) -> None:
    directory, keys = filled

    def get_all() -> int:
        with GenerationCache(directory) as cache:
            return len(cache.get_many(keys))

    assert benchmark(get_all) == len(keys)
