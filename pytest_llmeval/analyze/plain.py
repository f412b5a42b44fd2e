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
from typing import Any

from pytest_llmeval.analyze.record import Comparison, ItemRecord


class RecordValueError(ValueError):
    """A record field holds a value with no plain JSON form."""


def plain_record(record: ItemRecord) -> ItemRecord:
    """`record` with every field a builtin JSON type; raises RecordValueError naming the field."""
    changes = {
        name: plain_nested(value, name)
        for name, value in vars(record).items()
        if name != "comparison"
    }
    comparison = record.comparison
    if comparison is not None:
        changes["comparison"] = Comparison(
            **{
                name: plain_value(value, f"comparison.{name}")
                for name, value in vars(comparison).items()
            }
        )
    return dataclasses.replace(record, **changes)


def plain_nested(value: Any, field: str) -> Any:
    """A scalar as `plain_value` makes it, or a dict (string keys) or list of such values,
    converted all the way down (e.g. `decoding`, the backend's settings)."""
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                raise RecordValueError(f"record field {field!r} has a non-string key {key!r}")
        return {key: plain_nested(item, f"{field}.{key}") for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_nested(item, f"{field}[{i}]") for i, item in enumerate(value)]
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
