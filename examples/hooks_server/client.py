"""The two arms of the hooked-server A/B as `callable:` functions, and the patched arm's setup
and teardown.

- `baseline(messages, settings)`: `POST /api/generate` with `use_hooks: false`.
- `patched(messages, settings)`: the same with `use_hooks: true`.
- `install(arm)`: `POST /api/hooks` with the arm's patch payload (the bytes of its `patch`
  file, hashed into its cache key and the report); checks the server installed every hook.
- `remove(arm)`: `DELETE /api/hooks`; checks none is left.

The server's base URL comes from `HOOKS_SERVER_URL` (default `http://127.0.0.1:8765`). Wire
them up in pyproject.toml (see this folder's README.md)::

    [tool.llmeval.models.patched]
    backend = "callable"
    model = "examples.hooks_server.client:patched"
    setup = "examples.hooks_server.client:install"
    teardown = "examples.hooks_server.client:remove"
    patch = "examples/hooks_server/patch.json"
"""

from __future__ import annotations

import json
import os
from typing import Any

import requests

URL_ENV = "HOOKS_SERVER_URL"
DEFAULT_URL = "http://127.0.0.1:8765"
TIMEOUT_S = (5, 300)  # connect, read: a long generation on a CPU


def server_url() -> str:
    """The server's base URL (`HOOKS_SERVER_URL`), without a trailing slash."""
    return os.environ.get(URL_ENV, DEFAULT_URL).rstrip("/")


def baseline(messages: list[dict[str, str]], settings: Any) -> dict[str, Any]:
    """The unpatched model's answer: the installed hooks, if any, do not run."""
    return _generate(messages, settings, use_hooks=False)


def patched(messages: list[dict[str, str]], settings: Any) -> dict[str, Any]:
    """The patched model's answer: the installed hooks run."""
    return _generate(messages, settings, use_hooks=True)


def install(arm: Any) -> None:
    """Install the arm's patch payload on the server (called before each of its batches)."""
    if arm.payload is None:
        raise ValueError(f'arm {arm.name} has no patch file: add patch = "...json" to its alias')
    payload = json.loads(arm.payload)
    reply = _call("POST", "/api/hooks", payload)
    if len(reply["hooks"]) != len(payload["hooks"]):
        raise RuntimeError(f"server installed {reply['hooks']}, asked for {payload['hooks']}")


def remove(arm: Any) -> None:
    """Remove every hook from the server (called after each of the arm's batches)."""
    _call("DELETE", "/api/hooks", None)
    left = _call("GET", "/api/hooks", None)["hooks"]
    if left:
        raise RuntimeError(f"hooks still installed after DELETE /api/hooks: {left}")


def _generate(messages: list[dict[str, str]], settings: Any, use_hooks: bool) -> dict[str, Any]:
    if settings.temperature > 0:
        raise ValueError("the example server decodes greedily: use temperature 0")
    reply = _call(
        "POST",
        "/api/generate",
        {
            "messages": messages,
            "max_new_tokens": settings.max_new_tokens,
            "stop": list(settings.stop),
            "use_hooks": use_hooks,
        },
    )
    return {
        "text": reply["text"],
        "tokens_in": reply["tokens_in"],
        "tokens_out": reply["tokens_out"],
    }


def _call(method: str, path: str, body: Any) -> dict[str, Any]:
    response = requests.request(method, server_url() + path, json=body, timeout=TIMEOUT_S)
    if not response.ok:
        raise RuntimeError(f"{method} {path}: HTTP {response.status_code}: {response.text[:300]}")
    answer: dict[str, Any] = response.json()
    return answer
