"""Plain JSON values in a record: numpy and pandas scalars coerced, anything else refused.

Scorers and datasets hand back numpy/pandas scalars (`np.float64`, `np.str_`, `pd.NA`). In
one process they would mostly survive `json.dumps`, but the xdist channel (execnet) accepts
only builtin types, so a single numpy float used to end the whole run in an INTERNALERROR.
The worker therefore coerces every record before it leaves the item, and a value that has no
JSON form makes that item an error naming the field instead of losing the run.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from pytest_llmeval.analyze.record import Comparison, Invariance, ItemRecord, SampleRecord, Votes


class RecordValueError(ValueError):
    """A record field holds a value with no plain JSON form."""


def plain_record(record: ItemRecord) -> ItemRecord:
    """`record` with every field a builtin JSON type; raises RecordValueError naming the field."""
    changes = {
        name: plain_value(value, name)
        for name, value in vars(record).items()
        if name not in ("comparison", "invariance", "decoding", "samples", "votes", "components")
    }
    changes["decoding"] = plain_tree(record.decoding, "decoding")
    changes["components"] = plain_tree(record.components, "components")
    comparison = record.comparison
    if comparison is not None:
        changes["comparison"] = Comparison(**_plain_part(comparison, "comparison"))
    if record.invariance is not None:
        changes["invariance"] = Invariance(**_plain_part(record.invariance, "invariance"))
    if record.samples is not None:
        changes["samples"] = [
            SampleRecord(**_plain_part(sample, f"samples[{i}]"))
            for i, sample in enumerate(record.samples)
        ]
    if record.votes is not None:
        changes["votes"] = Votes(**_plain_part(record.votes, "votes"))
    return dataclasses.replace(record, **changes)


def _plain_part(
    part: Comparison | Invariance | SampleRecord | Votes, prefix: str
) -> dict[str, Any]:
    """A flat part of a record (scalar fields only) as plain values."""
    return {name: plain_value(value, f"{prefix}.{name}") for name, value in vars(part).items()}


def plain_tree(value: Any, field: str) -> Any:
    """A JSON tree (objects with string keys, arrays, scalars) of builtin types: a field that
    holds structure by design, such as the decoding settings a backend sent."""
    if isinstance(value, Mapping):
        if not all(isinstance(key, str) for key in value):
            raise RecordValueError(
                f"record field {field!r} holds an object whose keys are not all strings"
            )
        return {key: plain_tree(item, f"{field}.{key}") for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain_tree(item, f"{field}[{i}]") for i, item in enumerate(value)]
    return plain_value(value, field)


def plain_value(value: Any, field: str) -> Any:
    """One scalar as str, int, float, bool or None (NaN and missing values become None)."""
    # Exact type checks: subclasses (np.str_, np.float64, IntEnum) are converted below so the
    # value that crosses the channel is a builtin.
    if value is None or type(value) in (str, bool):
        return value
    if type(value) is int:
        return value
    if type(value) is float:
        return None if not math.isfinite(value) else value
    if _is_missing(value):
        return None
    item = getattr(value, "item", None)  # numpy scalars, 0-d arrays
    if callable(item) and getattr(value, "ndim", 0) == 0:
        try:
            return plain_value(item(), field)
        except (TypeError, ValueError):
            pass
    for kind in (bool, str, int, float):
        if isinstance(value, kind):
            return plain_value(kind(value), field)
    raise RecordValueError(
        f"record field {field!r} holds a {type(value).__module__}.{type(value).__qualname__}, "
        "which cannot be stored as JSON; return str, int, float, bool or None"
    )


def _is_missing(value: Any) -> bool:
    """pandas' NA / NaT and numpy's NaT, without importing pandas or numpy."""
    module = type(value).__module__
    if not module.startswith(("pandas", "numpy")):
        return False
    try:
        return bool(value != value)  # NA and NaT compare unequal to themselves
    except (TypeError, ValueError):
        # pd.NA's comparison returns NA, whose truth value raises: it is the missing value.
        return type(value).__name__ in ("NAType", "NaTType")
