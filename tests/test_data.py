"""Unit tests for pytest_llmeval.declare.data (local files and generators only; never the network)."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_llmeval.declare import data
from pytest_llmeval.declare.data import DataUnavailable, LoadedRows, RowError, load_rows
from pytest_llmeval.declare.task import DataSource, TaskError


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Hub marked offline, the reachability cache cleared around the test, requests blocked."""
    import requests

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("test tried to reach the network")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(requests, "head", no_network)
    monkeypatch.setattr(requests, "get", no_network)
    data.hub_reachable.cache_clear()
    yield
    data.hub_reachable.cache_clear()


def _write_jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_jsonl_malformed_line_becomes_row_error_at_its_position(tmp_path: Path) -> None:
    path = _write_jsonl(
        tmp_path / "rows.jsonl",
        [
            json.dumps({"q": "a", "answer": 1}),
            "",  # blank lines are skipped but still count for line numbers
            '{"q": "b", "answer": ',
            json.dumps({"q": "c", "answer": 3}),
        ],
    )
    loaded = load_rows(DataSource(files="rows.jsonl"), tmp_path)
    assert isinstance(loaded, LoadedRows)
    assert loaded.origin == f"file:{path}"
    assert loaded.split == "test"
    assert len(loaded.rows) == 3
    assert loaded.rows[0] == {"q": "a", "answer": 1}
    assert loaded.rows[2] == {"q": "c", "answer": 3}
    error = loaded.rows[1]
    assert isinstance(error, RowError)
    assert f"{path}:3:" in error.message
    assert "malformed JSON" in error.message


def test_jsonl_non_object_line_is_row_error(tmp_path: Path) -> None:
    _write_jsonl(tmp_path / "rows.jsonl", [json.dumps({"q": "a"}), "[1, 2, 3]", '"text"'])
    rows = load_rows(DataSource(files="rows.jsonl"), tmp_path).rows
    assert rows[0] == {"q": "a"}
    assert isinstance(rows[1], RowError)
    assert isinstance(rows[2], RowError)
    assert ":2: expected a JSON object" in rows[1].message
    assert "[1, 2, 3]" in rows[1].message
    assert ":3: expected a JSON object" in rows[2].message


def test_csv_with_custom_separator(tmp_path: Path) -> None:
    (tmp_path / "rows.csv").write_text("text;label\nhello, world;1\nbye;0\n", encoding="utf-8")
    rows = load_rows(DataSource(files="rows.csv", csv_sep=";"), tmp_path).rows
    # Cells stay the text written: a CSV has no types (issue 11, point 8).
    assert rows == [{"text": "hello, world", "label": "1"}, {"text": "bye", "label": "0"}]


def test_json_via_pandas(tmp_path: Path) -> None:
    records = [{"question": "1+1", "answer": "2"}, {"question": "2+2", "answer": "4"}]
    (tmp_path / "rows.json").write_text(json.dumps(records), encoding="utf-8")
    rows = load_rows(DataSource(files="rows.json"), tmp_path).rows
    assert rows == records


def test_parquet_via_pandas(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    frame = pd.DataFrame({"text": ["x", "y", "z"], "label": [0, 1, 0]})
    frame.to_parquet(tmp_path / "rows.parquet")
    loaded = load_rows(DataSource(files="rows.parquet"), tmp_path)
    assert loaded.rows == [
        {"text": "x", "label": 0},
        {"text": "y", "label": 1},
        {"text": "z", "label": 0},
    ]
    assert all(isinstance(row, dict) for row in loaded.rows)


def test_unknown_suffix_raises_task_error(tmp_path: Path) -> None:
    (tmp_path / "rows.txt").write_text("hello\n", encoding="utf-8")
    with pytest.raises(TaskError, match=r"unknown data format '\.txt'"):
        load_rows(DataSource(files="rows.txt"), tmp_path)


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_empty_jsonl_raises_task_error(tmp_path: Path, content: str) -> None:
    (tmp_path / "rows.jsonl").write_text(content, encoding="utf-8")
    with pytest.raises(TaskError, match="no rows"):
        load_rows(DataSource(files="rows.jsonl"), tmp_path)


def test_header_only_csv_raises_task_error(tmp_path: Path) -> None:
    (tmp_path / "rows.csv").write_text("text,label\n", encoding="utf-8")
    with pytest.raises(TaskError, match="no rows"):
        load_rows(DataSource(files="rows.csv"), tmp_path)


@pytest.mark.parametrize("name", ["rows.csv", "rows.json"])
def test_zero_byte_pandas_file_raises_task_error(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_text("", encoding="utf-8")
    with pytest.raises(TaskError):
        load_rows(DataSource(files=name), tmp_path)


def test_missing_file_without_hub_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(DataUnavailable) as excinfo:
        load_rows(DataSource(files="nowhere/rows.jsonl"), tmp_path)
    message = str(excinfo.value)
    assert "--llmeval-data-dir" in message
    assert "LLMEVAL_DATA_DIR" in message
    assert "nowhere/rows.jsonl" in message
    assert str(tmp_path) in message
    assert "\n" not in message


def test_relative_file_without_data_dir_is_unavailable() -> None:
    with pytest.raises(DataUnavailable, match="LLMEVAL_DATA_DIR"):
        load_rows(DataSource(files="rows.jsonl"), None)


def test_missing_file_and_offline_hub_is_unavailable(tmp_path: Path, offline: None) -> None:
    source = DataSource(hub="org/dataset", files="rows.jsonl")
    with pytest.raises(DataUnavailable) as excinfo:
        load_rows(source, tmp_path)
    message = str(excinfo.value)
    assert "LLMEVAL_DATA_DIR" in message
    assert "org/dataset" in message


def test_hub_unreachable_when_offline(offline: None) -> None:
    assert data.hub_reachable() is False


def test_hub_unreachable_when_datasets_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    import requests

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("test tried to reach the network")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "true")
    monkeypatch.setattr(requests, "head", no_network)
    data.hub_reachable.cache_clear()
    try:
        assert data.hub_reachable() is False
    finally:
        data.hub_reachable.cache_clear()


def test_generator_source(tmp_path: Path) -> None:
    def generate() -> Iterator[dict[str, int]]:
        for i in range(3):
            yield {"a": i, "b": i * i}

    loaded = load_rows(DataSource(generate=generate, split="train"), tmp_path)
    assert loaded.origin == "generated"
    assert loaded.split == "train"
    assert loaded.rows == [{"a": 0, "b": 0}, {"a": 1, "b": 1}, {"a": 2, "b": 4}]


def test_generator_used_when_file_and_hub_missing(tmp_path: Path, offline: None) -> None:
    source = DataSource(hub="org/dataset", files="rows.jsonl", generate=lambda: [{"x": 1}])
    loaded = load_rows(source, tmp_path)
    assert loaded.origin == "generated"
    assert loaded.rows == [{"x": 1}]


def test_local_file_preferred_over_generator(tmp_path: Path) -> None:
    _write_jsonl(tmp_path / "rows.jsonl", [json.dumps({"x": "file"})])
    source = DataSource(files="rows.jsonl", generate=lambda: [{"x": "generated"}])
    assert load_rows(source, tmp_path).rows == [{"x": "file"}]


def test_empty_generator_raises_task_error() -> None:
    with pytest.raises(TaskError, match="no rows"):
        load_rows(DataSource(generate=lambda: []), None)


def test_relative_file_resolved_under_data_dir(tmp_path: Path) -> None:
    (tmp_path / "task").mkdir()
    path = _write_jsonl(tmp_path / "task" / "rows.jsonl", [json.dumps({"x": 1})])
    loaded = load_rows(DataSource(files="task/rows.jsonl"), tmp_path)
    assert loaded.origin == f"file:{path}"
    # The same relative name under another data dir is not found.
    with pytest.raises(DataUnavailable):
        load_rows(DataSource(files="task/rows.jsonl"), tmp_path / "task")


def test_absolute_file_used_directly(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "abs.jsonl", [json.dumps({"x": 2})])
    other = tmp_path / "elsewhere"
    other.mkdir()
    for data_dir in (None, other):
        loaded = load_rows(DataSource(files=str(path)), data_dir)
        assert loaded.rows == [{"x": 2}]
        assert loaded.origin == f"file:{path}"


def test_the_runs_hub_decision_is_followed_without_probing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    @functools.lru_cache(maxsize=1)  # the shared fixture clears the probe's cache after
    def probe() -> bool:
        raise AssertionError("the run decided already: no probe")

    monkeypatch.setattr(data, "hub_reachable", probe)
    monkeypatch.setattr(data, "_read_hub", lambda source: [{"q": "from the hub"}])
    source = DataSource(hub="example/rows", generate=lambda: [{"q": "generated"}])
    offline = load_rows(source, None, hub=False)
    assert (offline.kind, offline.rows) == ("generated", [{"q": "generated"}])
    online = load_rows(source, None, hub=True)
    assert (online.kind, online.rows) == ("hub", [{"q": "from the hub"}])
