"""Loading a task's rows: local files under the data directory, the Hugging Face Hub, or code.

Local jsonl is read line by line so that one malformed line becomes one error item instead of
failing the whole dataset. Hub datasets go through `datasets.load_dataset` (imported lazily).
When neither a local copy nor the Hub is available, `DataUnavailable` carries a one-line reason
that says how to provide the data; the plugin turns it into a skipped task.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from pytest_llmeval.declare.task import DataSource, TaskError

DATA_DIR_ENV = "LLMEVAL_DATA_DIR"
LOCAL_FORMATS = (".jsonl", ".json", ".csv", ".parquet")


class DataUnavailable(Exception):
    """The data cannot be found here; the message is one line saying how to provide it."""


@dataclass(frozen=True)
class RowError:
    """A row that could not be read; it becomes an error item, the other rows still run."""

    message: str


@dataclass(frozen=True)
class LoadedRows:
    """A task's rows in file order (unreadable ones as RowError), and where they came from."""

    rows: list[Mapping[str, Any] | RowError]
    origin: str
    split: str
    kind: Literal["file", "hub", "generated"] = "generated"
    path: str | None = None
    """The local file read, for `file`."""


def load_rows(source: DataSource, data_dir: Path | None, hub: bool | None = None) -> LoadedRows:
    """Rows of `source`, trying local files, then the Hub, then the generator.

    `hub` is the run's decision whether the Hub is reachable, made once by the controller so
    that every worker loads the same source; None asks `hub_reachable()` here.
    Raises DataUnavailable when no source can be reached, TaskError when a source exists but
    is unusable (unknown format, no rows).
    """
    if source.problem:
        raise TaskError(source.problem)
    local = _local_path(source, data_dir)
    if local is not None:
        rows = _read_local(local, source.csv_sep)
        loaded = LoadedRows(rows, f"file:{local}", source.split, "file", str(local))
    elif source.hub is not None and (hub_reachable() if hub is None else hub):
        loaded = LoadedRows(_read_hub(source), _hub_origin(source), source.split, "hub")
    elif source.generate is not None:
        loaded = LoadedRows([dict(row) for row in source.generate()], "generated", source.split)
    else:
        raise DataUnavailable(_how_to_provide(source, data_dir))
    if source.transform is not None:
        loaded = replace(loaded, rows=_transformed(loaded.rows, source))
    if not loaded.rows:
        raise TaskError(f"dataset {loaded.origin} has no rows; check the file or split")
    return loaded


def _transformed(
    rows: list[Mapping[str, Any] | RowError], source: DataSource
) -> list[Mapping[str, Any] | RowError]:
    assert source.transform is not None
    out: list[Mapping[str, Any] | RowError] = []
    for index, row in enumerate(rows):
        if isinstance(row, RowError):
            out.append(row)
            continue
        try:
            out.append(source.transform(row))
        except Exception as exc:  # one odd row is an error item, not a lost dataset
            out.append(RowError(f"row {index}: transform failed: {type(exc).__name__}: {exc}"))
    return out


def _local_path(source: DataSource, data_dir: Path | None) -> Path | None:
    if source.files is None:
        return None
    path = Path(source.files).expanduser()
    if not path.is_absolute():
        if data_dir is None:
            return None
        path = data_dir / path
    if path.is_dir():
        # Not a missing file: skipping the task (or trying the Hub) would hide the mistake.
        raise TaskError(
            f"{path} is a directory; files= must name one data file ({', '.join(LOCAL_FORMATS)})"
        )
    return path if path.is_file() else None


def _how_to_provide(source: DataSource, data_dir: Path | None) -> str:
    ways = []
    if source.files is not None:
        where = f" (looked in {data_dir})" if data_dir is not None else ""
        ways.append(
            f"put {source.files} under a data dir and pass --llmeval-data-dir DIR "
            f"or set {DATA_DIR_ENV}{where}"
        )
    if source.hub is not None:
        ways.append(f"make the Hub reachable for {source.hub} (HF_HUB_OFFLINE unset, network on)")
    return "data not found: " + "; or ".join(ways)


def _read_local(path: Path, csv_sep: str) -> list[Mapping[str, Any] | RowError]:
    try:
        return _read_local_file(path, csv_sep)
    except UnicodeDecodeError as exc:
        # A binary file, or text in another encoding: name the file and the first bad byte.
        raise TaskError(
            f"{path} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset "
            f"{exc.start}: {exc.reason}); save it as UTF-8, or check that it is the data file"
        ) from None


def _read_local_file(path: Path, csv_sep: str) -> list[Mapping[str, Any] | RowError]:
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return _read_jsonl(path)
    if suffix == ".json":
        return _read_json(path)
    if suffix not in LOCAL_FORMATS:
        raise TaskError(f"{path}: unknown data format {suffix!r}; use one of {LOCAL_FORMATS}")
    import pandas as pd  # heavy: only when a task actually reads such a file

    try:
        frame = _read_csv(pd, path, csv_sep) if suffix == ".csv" else pd.read_parquet(path)
    except pd.errors.EmptyDataError:
        return []
    except UnicodeDecodeError:
        raise
    except (ValueError, OSError) as exc:
        raise TaskError(f"{path}: cannot read {suffix} file: {exc}") from None
    return [dict(record) for record in frame.to_dict(orient="records")]


def _read_csv(pd: Any, path: Path, sep: str) -> Any:
    """Every cell as the text written in the file: a CSV has no types, and guessing them
    turned the target `007` into 7 and an empty cell into NaN (whose text "nan" then matched)."""
    return pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, encoding="utf-8")


def _read_json(path: Path) -> list[Mapping[str, Any] | RowError]:
    """A JSON file holding a list of row objects (values kept as written: "2" stays "2")."""
    text = path.read_text(encoding="utf-8-sig")
    if not text.strip():
        return []
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TaskError(f"{path}: malformed JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(value, list):
        raise TaskError(f"{path}: expected a JSON list of row objects, got {type(value).__name__}")
    return [
        row if isinstance(row, dict) else RowError(f"{path}: item {i} is not an object")
        for i, row in enumerate(value)
    ]


def _read_jsonl(path: Path) -> list[Mapping[str, Any] | RowError]:
    rows: list[Mapping[str, Any] | RowError] = []
    with path.open(encoding="utf-8-sig") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                rows.append(RowError(f"{path}:{line_no}: malformed JSON ({exc.msg})"))
                continue
            if isinstance(value, dict):
                rows.append(value)
            else:
                rows.append(
                    RowError(f"{path}:{line_no}: expected a JSON object, got {value!r:.40}")
                )
    return rows


def _hub_origin(source: DataSource) -> str:
    return f"hub:{source.hub}/{source.config or 'default'}/{source.split}"


def _read_hub(source: DataSource) -> list[Mapping[str, Any] | RowError]:
    import datasets  # heavy and network-bound: only when the Hub is the source

    try:
        dataset = datasets.load_dataset(
            source.hub, source.config, split=source.split, revision=source.revision
        )
    except (ConnectionError, OSError) as exc:
        raise DataUnavailable(f"{_hub_origin(source)} could not be loaded: {exc}") from None
    except ValueError as exc:
        if "split" not in str(exc).lower():
            raise
        # datasets: 'Unknown split "tset". Should be one of ['train', 'test'].'
        raise TaskError(
            f"{_hub_origin(source)}: {exc} Set DataSource(split=...) to one of them"
        ) from None
    return [dict(row) for row in dataset]


@functools.lru_cache(maxsize=1)
def hub_reachable() -> bool:
    """Whether the Hugging Face Hub answers within a few seconds (asked once per process).

    Checked up front because the Hub clients retry for tens of seconds before giving up.
    """
    if _env_flag("HF_HUB_OFFLINE") or _env_flag("HF_DATASETS_OFFLINE"):
        return False
    import requests

    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    try:
        requests.head(endpoint, timeout=3)
    except requests.RequestException:
        return False
    return True


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}
