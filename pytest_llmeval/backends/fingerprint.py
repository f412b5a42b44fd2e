"""Python callables named `module:function`: importing one (`import_target`) and its source
identity for the generation cache key: what its answers depend on besides the prompt, in a
form that is the same in every process (file hashes and rendered arguments, never memory
addresses), so an edit invalidates and a rerun hits."""

from __future__ import annotations

import functools
import hashlib
import importlib
import inspect
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pytest_llmeval.backends import BackendError

_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_DEPTH = 4  # how deep containers in a partial's arguments are rendered


def import_target(target: str, context: str) -> Callable[..., Any]:
    """The callable `target` (`module:function`) names; a one-line `BackendError` starting with
    `context` (who asked for it) when it is malformed, cannot be imported or is not callable."""
    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute:
        raise BackendError(f"{context} needs 'module:function', got {target!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackendError(f"{context} cannot import {module_name!r}: {exc}") from None
    function = getattr(module, attribute, None)
    if not callable(function):
        raise BackendError(f"{context}: {module_name!r} has no callable {attribute!r}")
    found: Callable[..., Any] = function
    return found


def source_identity(target: str, function: Any) -> dict[str, Any]:
    """The source identity of the callable `function` named by `target` (`module:attr`).

    `modules`: the name and the SHA-256 of the file contents of the module named in `target`
    and of every module defining the code that runs (the function, what a partial wraps, what a
    decorator wraps): editing any helper in those files changes it. `bound`: a partial's bound
    arguments rendered without memory addresses (None for a plain function). Helpers in other
    modules are not covered; the alias's `version` is for those.
    """
    code: list[Any] = []
    bound: list[str] = []
    current = function
    while isinstance(current, functools.partial):
        bound.append(_render_partial(current))
        current = current.func
    # A decorator made with functools.wraps keeps the wrapped function in `__wrapped__`.
    for layer in _unwrapped(current):
        code.append(getattr(layer, "__func__", layer))  # a bound method's function
    names = [target.partition(":")[0]]
    for obj in code:
        module = getattr(obj, "__module__", None) or getattr(type(obj), "__module__", None)
        if isinstance(module, str) and module not in names:
            names.append(module)
    return {
        "modules": [_module_digest(name, code) for name in names],
        "bound": "; ".join(bound) or None,
    }


def _unwrapped(function: Any) -> list[Any]:
    layers = [function]
    while hasattr(layers[-1], "__wrapped__") and len(layers) < 32:
        layers.append(layers[-1].__wrapped__)
    return layers


def _module_digest(name: str, code: list[Any]) -> dict[str, Any]:
    """`{"module", "sha256"}` of the module's source file; for a module without one (built in,
    in a zip, `__main__` of a REPL) the hash of what `inspect` can find of the code instead."""
    module = sys.modules.get(name)
    path = getattr(module, "__file__", None)
    if path and Path(path).suffix == ".py" and Path(path).is_file():
        return {"module": name, "sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest()}
    texts = []
    for obj in code:
        try:
            texts.append(inspect.getsource(obj))
        except (OSError, TypeError):
            texts.append(_qualified(obj))
    digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()
    return {"module": name, "sha256": digest}


def _render_partial(partial: functools.partial[Any]) -> str:
    args = [_render(value, _DEPTH) for value in partial.args]
    args += [f"{key}={_render(value, _DEPTH)}" for key, value in sorted(partial.keywords.items())]
    return f"partial({', '.join(args)})"


def _render(value: Any, depth: int) -> str:
    """`value` as text that is the same in every process: plain values by repr, containers
    item by item, functions and classes by qualified name, other objects by their repr without
    memory addresses."""
    if value is None or isinstance(value, bool | int | float | str | bytes):
        return repr(value)
    if depth <= 0:
        return type(value).__qualname__
    if isinstance(value, Mapping):
        pairs = sorted((_render(k, depth - 1), _render(v, depth - 1)) for k, v in value.items())
        return "{" + ", ".join(f"{k}: {v}" for k, v in pairs) + "}"
    if isinstance(value, list | tuple | set | frozenset):
        items = [_render(item, depth - 1) for item in value]
        if isinstance(value, set | frozenset):
            items.sort()
        return f"{type(value).__name__}[{', '.join(items)}]"
    if isinstance(value, functools.partial):
        return f"{_qualified(value.func)}:{_render_partial(value)}"
    if inspect.isroutine(value) or inspect.isclass(value):
        return _qualified(value)
    return _ADDRESS.sub("", repr(value))


def _qualified(obj: Any) -> str:
    module = getattr(obj, "__module__", None) or type(obj).__module__
    name = getattr(obj, "__qualname__", None) or type(obj).__qualname__
    return f"{module}.{name}"
