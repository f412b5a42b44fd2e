"""Secrets out of what a run writes down: key-like values replaced by `***`.

What counts as a secret is decided by its name: a URL query parameter, a `name=value` pair or
a command-line option with a word of its name (split at `_`, `-`, `.`) that is or ends in
`key` or `token`, or is `secret`, `password`, `sig`, `signature`, `auth`, `credential`...
(`?api_key=`, `&access_token=`, `&sig=`, `--hf-token`, `--openai-api-key=`, `-o my_token=`;
not `max_tokens` or `tokenizer`), and the password of a URL's `user:password@`. The
value itself is never needed for that, so `--model openai:m@https://h/v1?key=...` becomes
`openai:m@https://h/v1?key=***` wherever the model's name is shown, and argv as recorded in
the report keeps its shape with the values masked. Pure functions: no pytest, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

MASK = "***"

_SECRET_WORDS = frozenset(
    {"secret", "password", "passwd", "pwd", "passphrase", "sig", "signature", "auth"}
    | {"authorization", "credential", "credentials", "bearer", "cookie"}
)
_WORD = re.compile(r"[_.\-]+")
# The `name=` of a `name=value` pair: a name starts after `?`, `&`, `;`, `-`, a space, a quote or
# at the start. `>=`, `<=`, `==` make no pair (gates, -k expressions). A secret value runs to
# the next separator; a pair with another name is left alone and searched on (`--model=...?key=`).
_NAME = re.compile(r"(?<![\w.\-])([\w.\-]+)=(?!=)")
_VALUE = re.compile(r"[^&;,\s'\"#]*")
_USERINFO = re.compile(r"(?P<head>\b[a-z][a-z0-9+.\-]*://[^/\s:@]+:)[^/\s@]+(?=@)", re.IGNORECASE)


def is_secret_name(name: str) -> bool:
    """Whether a parameter or option name (`api_key`, `--hf-token`, `X-Api-Key`) says its value
    is a credential."""
    words = [w for w in _WORD.split(name.lower()) if w]
    return any(w in _SECRET_WORDS or w.endswith(("key", "token")) for w in words)


def redact(text: str) -> str:
    """`text` with the value of every key-like `name=value` pair (URL query parameters,
    `--opt=value`, `opt=value`) and every URL password replaced by `***`."""

    shown, done = [], 0
    for name in _NAME.finditer(text):
        if name.start() < done or not is_secret_name(name[1]):
            continue
        value = _VALUE.match(text, name.end())
        if value is None or not value[0]:
            continue
        shown += [text[done : name.end()], MASK]
        done = value.end()
    return _USERINFO.sub(rf"\g<head>{MASK}", "".join(shown) + text[done:])


def redact_argv(argv: Sequence[str]) -> list[str]:
    """A command line as it may be shown: every argument redacted, and the value after a
    key-like option written with a space (`--hf-token VALUE`) masked as well."""
    shown: list[str] = []
    after_secret_option = False
    for arg in argv:
        arg = str(arg)
        if after_secret_option and not arg.startswith("--"):
            shown.append(MASK)
        else:
            shown.append(redact(arg))
        after_secret_option = arg.startswith("--") and "=" not in arg and is_secret_name(arg)
    return shown


def redact_mapping(values: Mapping[str, Any]) -> dict[str, Any]:
    """`values` with the value of each key-like key masked (nested mappings too), e.g. an
    alias's `extra_body = { api_key = "..." }` as it is shown and hashed."""
    shown: dict[str, Any] = {}
    for name, value in values.items():
        if is_secret_name(str(name)) and value is not None:
            shown[name] = MASK
        elif isinstance(value, Mapping):
            shown[name] = redact_mapping(value)
        else:
            shown[name] = value
    return shown
