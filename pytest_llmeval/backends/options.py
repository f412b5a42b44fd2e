"""Typed per-model backend options: an alias's extra keys checked against a backend's dataclass.

Each backend class names its options as a frozen dataclass in `options_type`, e.g.::

    @dataclass(frozen=True)
    class TransformersOptions:
        device: str | None = None
        dtype: str | None = None

`parse_options` turns the extra keys of a `[tool.llmeval.models.<alias>]` table
(`ModelSpec.options`) into an instance of that dataclass, so that a misspelt key or a value of
the wrong type stops the run with a message naming it, instead of being silently ignored.
Values are checked with pydantic in strict mode: no coercion of "4096" to 4096 or of `true`
to 1, but an int is accepted (and widened) for a float.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from collections.abc import Mapping
from functools import cache
from typing import Any, ClassVar, Protocol, TypeVar

from pytest_llmeval.backends import BackendError
from pytest_llmeval.declare.models import ModelSpec


class OptionsDataclass(Protocol):
    """Any dataclass instance (what `options_type` must produce)."""

    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]


OptionsT = TypeVar("OptionsT", bound=OptionsDataclass)


def parse_options(
    options_type: type[OptionsT], spec: ModelSpec, overrides: Mapping[str, Any]
) -> OptionsT:
    """The options for `spec`'s model as an `options_type` instance; called by `create_backend`
    before the backend is instantiated.

    `spec.options` (the alias's extra keys) must name fields of `options_type` and match their
    annotations; otherwise raises `BackendError` naming the option and the known ones.
    `overrides` are the command-line settings (`device`, `dtype`; None when not given): a
    non-None override for a field `options_type` has replaces the alias's value, because the
    command line is the user's latest word; overrides for fields it lacks are ignored (e.g.
    `--llmeval-device` for a model served over HTTP). Fields given by neither keep their defaults.
    """
    where = f"model {spec.name!r} ({spec.backend} backend)"
    hints = typing.get_type_hints(options_type)
    names = [f.name for f in dataclasses.fields(options_type) if f.init]
    unknown = [key for key in spec.options if key not in names]
    if unknown:
        raise BackendError(f"{where}: {_unknown_message(unknown, names)}")
    values: dict[str, Any] = {}
    for name, value in spec.options.items():
        values[name] = _checked(where, "option", name, value, hints[name])
    for name, value in overrides.items():
        if name in names and value is not None:
            values[name] = _checked(where, "command-line setting", name, value, hints[name])
    return options_type(**values)


def _unknown_message(unknown: list[str], names: list[str]) -> str:
    """`unknown option 'dtyp' (did you mean 'dtype'?); known: device, dtype`."""
    parts = []
    for key in unknown:
        close = difflib.get_close_matches(key, names, n=1)
        parts.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    plural = "s" if len(unknown) > 1 else ""
    return f"unknown option{plural} {', '.join(parts)}; known: {', '.join(names) or 'none'}"


def _checked(where: str, source: str, name: str, value: Any, annotation: Any) -> Any:
    """`value` validated against its annotation (strict), or BackendError naming the option."""
    from pydantic import ValidationError

    try:
        return _adapter(annotation).validate_python(value, strict=True)
    except ValidationError as exc:
        first = exc.errors()[0]
        expected = str(first["msg"]).removeprefix("Input should be ")
        if first["loc"]:  # an entry of a table: its key, never its value (may be a secret)
            entry = f" entry {first['loc'][0]!r}"
            got = f"a value of type {type(first['input']).__name__}"
        else:
            entry, got = "", f"{value!r} ({type(value).__name__})"
        raise BackendError(
            f"{where}: {source} {name!r}{entry} must be {expected}, got {got}"
        ) from None


@cache
def _adapter(annotation: Any) -> Any:
    from pydantic import TypeAdapter  # only when a backend is created

    return TypeAdapter(annotation)
