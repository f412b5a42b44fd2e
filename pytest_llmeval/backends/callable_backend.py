"""A backend that calls a Python function: `--model callable:package.module:function`.

For evaluating a pipeline that is not a bare model (retrieval plus a model, a rules engine,
a stub while a prompt is being written): the function receives the chat messages and the
generation settings and returns the response text. Token counts are whitespace-separated
words (the function has no tokenizer); the method is named in every result.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_llmeval.backends import BackendError, GenerationRequest, GenerationResult
from pytest_llmeval.declare.models import ModelSpec
from pytest_llmeval.declare.task import Generation, Message

Responder = Callable[[list[Message], Generation], str]
LATENCY_METHOD = "per-call: wall time of the function call for this item"


@dataclass(frozen=True)
class CallableOptions:
    """The callable backend takes no per-model options: the function owns its configuration,
    so any alias key is reported as unknown rather than silently ignored."""


class CallableBackend:
    """Calls `module:function` once per request, in order."""

    options_type = CallableOptions

    def __init__(self, spec: ModelSpec, options: CallableOptions) -> None:
        self.spec = spec
        self.options = options
        self.default_batch_size = 8
        started = time.perf_counter()
        self.function = _import_function(spec.model_id)
        self.load_time_s = time.perf_counter() - started
        self.calls = 0

    def identity(self) -> Mapping[str, Any]:
        """The target and a hash of the function's source (part of the cache key)."""
        # The function's source is part of the identity: editing the pipeline invalidates
        # its cached outputs.
        try:
            source = inspect.getsource(self.function)
        except (OSError, TypeError):
            source = repr(self.function)
        return {
            "backend": "callable",
            "target": self.spec.model_id,
            "source_sha256": hashlib.sha256(source.encode()).hexdigest()[:16],
        }

    def render(self, messages: list[Message]) -> str:
        """The messages as `[role] content` lines (the function receives them unrendered)."""
        return "\n".join(f"[{m.get('role', '?')}] {m.get('content', '')}" for m in messages)

    def info(self) -> Mapping[str, Any]:
        """The identity plus import time and the token count method, for the report."""
        return {
            **self.identity(),
            "model_loads": int(self.calls > 0),
            "load_time_s": round(self.load_time_s, 6),
            "token_count_method": "whitespace words",
        }

    def generate(
        self, requests: Sequence[GenerationRequest], batch_id: str
    ) -> list[GenerationResult]:
        """Call the function once per request, in order; results in request order."""
        timed: list[tuple[GenerationRequest, str, float]] = []
        batch_started = time.perf_counter()
        for request in requests:
            started = time.perf_counter()
            self.calls += 1
            text = self.function(request.messages, request.settings)
            if not isinstance(text, str):
                raise BackendError(
                    f"{self.spec.model_id} returned {type(text).__name__}, expected str"
                )
            timed.append((request, text, time.perf_counter() - started))
        wall = time.perf_counter() - batch_started
        return [
            GenerationResult(
                text=text,
                prompt=self.render(request.messages),
                tokens_in=sum(len(m.get("content", "").split()) for m in request.messages),
                tokens_out=len(text.split()),
                latency_s=round(latency, 6),
                finish_reason="stop",
                batch_id=batch_id,
                batch_size=len(requests),
                batch_wall_s=round(wall, 6),
                latency_method=LATENCY_METHOD,
            )
            for request, text, latency in timed
        ]

    def close(self) -> None:
        """Nothing to release."""


def _import_function(target: str) -> Responder:
    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute:
        raise BackendError(f"callable backend needs 'module:function', got {target!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackendError(f"callable backend cannot import {module_name!r}: {exc}") from None
    function = getattr(module, attribute, None)
    if not callable(function):
        raise BackendError(f"{module_name!r} has no callable {attribute!r}")
    responder: Responder = function
    return responder
