"""Declarations that keep their problem instead of raising at import.

`Task`, `DataSource` and `Generation` are written at module level in a test file. Raising
there would make pytest abandon the whole session over one typo (a collection error, exit 2,
healthy suites beside it never run), so each keeps a one-line `problem` and collection turns
it into one error item of its task. This module holds the shared part: assigning the given
values, naming unknown fields with their likely fix, and the value checks.
"""

from __future__ import annotations

import difflib
import numbers
from dataclasses import MISSING, Field, fields
from typing import Any


class DeclarationError(ValueError):
    """A declared value cannot be used; the message names the field and what it takes."""


def assign(obj: object, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    """Set every init field of the frozen dataclass `obj` (positional values in field order,
    then keywords, then defaults); return the problem with unknown or repeated fields, if any.
    """
    cls = type(obj)
    known: dict[str, Field[Any]] = {f.name: f for f in fields(cls) if f.init}  # type: ignore[arg-type]
    given = dict(zip(known, args, strict=False))
    problem = None
    if len(args) > len(known):
        problem = f"{cls.__name__} takes at most {len(known)} positional values, got {len(args)}"
    repeated = sorted(set(given) & set(kwargs))
    if repeated:
        problem = f"{cls.__name__} got {', '.join(map(repr, repeated))} twice"
    given.update(kwargs)
    for name, spec in known.items():
        if name in given:
            value = given[name]
        elif spec.default_factory is not MISSING:
            value = spec.default_factory()
        else:
            value = None if spec.default is MISSING else spec.default
        object.__setattr__(obj, name, value)
    unknown = sorted(set(given) - set(known))
    if unknown:
        hints = [
            f"{name!r} (did you mean {match[0]!r}?)"
            if (match := difflib.get_close_matches(name, known, n=1))
            else repr(name)
            for name in unknown
        ]
        problem = (
            f"{cls.__name__} got unknown field {', '.join(hints)}; known fields: {', '.join(known)}"
        )
    return problem


def keep_problem(obj: object, problem: str | None, check: Any) -> None:
    """Store `problem`, or else the DeclarationError that `check()` raises, on `obj`."""
    if problem is None:
        try:
            check()
        except DeclarationError as exc:
            problem = str(exc)
    object.__setattr__(obj, "problem", problem)


def is_int(value: object) -> bool:
    """An integer, not a bool (`True` is an int to Python, never a count to a user)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    """A real number, not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def require(ok: bool, message: str) -> None:
    """Raise DeclarationError(message) unless `ok`."""
    if not ok:
        raise DeclarationError(message)
