"""A backend that calls a Python function: `--model callable:package.module:function`.

For evaluating a pipeline that is not a bare model (retrieval plus a model, a rules engine,
a stub while a prompt is being written): the function receives the chat messages and the
generation settings and returns either the response text, or a dict with the text and the
token counts its model reported::

    {"text": "...", "tokens_in": 812, "tokens_out": 97}

The backend has no tokenizer of its own: without counts from the function, `tokens_in` and
`tokens_out` are None (and so is tok/s), never a word count passed off as tokens.

Cached answers are keyed on the contents of the module file named in the target and of the
module defining the function (for a `functools.partial`, the wrapped function's, plus its bound
arguments), and on the alias's `version`: editing those files invalidates them; a change
elsewhere (a helper in another module, a model behind an API, an index) needs a new `version`.

For sampled decoding (`temperature` > 0) the function receives the settings with `seed`
replaced by the item's own seed (derived from the task seed, the item id and the sample
index: `pytest_llmeval.declare.seeds.sample_seed`), so a function that seeds its model with it
draws the same whatever the batch, `-n` or resume point, and two items with the same prompt
draw differently. For greedy decoding it receives the task's settings unchanged. Each item's
record keeps what was passed (`decoding`: the settings as a dict, `seed` None for greedy).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from pytest_llmeval.backends import (
    BackendError,
    BatchPartiallyFailed,
    GenerationRequest,
    GenerationResult,
)
from pytest_llmeval.backends.fingerprint import import_target, source_identity
from pytest_llmeval.declare.models import ModelSpec
from pytest_llmeval.declare.task import Generation, Message

Responder = Callable[[list[Message], Generation], str | Mapping[str, Any]]
LATENCY_METHOD = "per-call: wall time of the function call for this item"


@dataclass(frozen=True)
class CallableOptions:
    """Per-model options of the callable backend (alias keys). The function owns the rest of
    its configuration, so any other alias key is reported as unknown, not silently ignored."""

    version: str | None = None
    """Part of the cache key: change it when the answers change for a reason the source hash
    cannot see (a helper in another module, a model behind an API, a new retrieval index)."""


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
        # Hashed once, as imported: the code that runs is the code the key describes.
        self._source = source_identity(spec.model_id, self.function)

    def identity(self) -> Mapping[str, Any]:
        """The target, its source identity (module file hashes, a partial's bound arguments)
        and the alias's `version`: the part of the cache key that stands for the function."""
        return {
            "backend": "callable",
            "target": self.spec.model_id,
            "source": self._source,
            "version": self.options.version,
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
            "token_count_method": "reported by the function (a dict with tokens_in and "
            "tokens_out), else not counted",
        }

    def generate(
        self, requests: Sequence[GenerationRequest], batch_id: str
    ) -> list[GenerationResult]:
        """Call the function once per request, in order; results in request order.

        A call that raises does not stop the others: when any failed, `BatchPartiallyFailed`
        carries each request's result or exception, so the engine keeps the successes (a
        paid API is not asked twice) and tries only the failed requests again, once each."""
        timed: list[tuple[GenerationRequest, _Reply | Exception, float]] = []
        batch_started = time.perf_counter()
        for request in requests:
            settings = _settings_for(request)
            started = time.perf_counter()
            self.calls += 1
            try:
                reply: _Reply | Exception = _reply(
                    self.spec.model_id, self.function(request.messages, settings)
                )
            except Exception as exc:  # the function's own failure, e.g. a flaky API call
                reply = exc
            timed.append((request, reply, time.perf_counter() - started))
        wall = time.perf_counter() - batch_started
        results = [
            reply
            if isinstance(reply, Exception)
            else GenerationResult(
                text=reply.text,
                prompt=self.render(request.messages),
                tokens_in=reply.tokens_in,
                tokens_out=reply.tokens_out,
                latency_s=round(latency, 6),
                finish_reason="stop",
                batch_id=batch_id,
                batch_size=len(requests),
                batch_wall_s=round(wall, 6),
                latency_method=LATENCY_METHOD,
                decoding=_decoding(request),
            )
            for request, reply, latency in timed
        ]
        done = [r for r in results if isinstance(r, GenerationResult)]
        if len(done) < len(results):
            raise BatchPartiallyFailed(results, retry_alone=True)
        return done

    def load(self) -> None:
        """Nothing to load here: the model runs behind a Python callable."""

    def energy_devices(self) -> None:
        """None: a remote backend; no local device's energy is its own."""

    def close(self) -> None:
        """Nothing to release."""


def _settings_for(request: GenerationRequest) -> Generation:
    """What the function receives: a sampled request's settings carry the item's own seed."""
    seed = request.seed
    return request.settings if seed is None else replace(request.settings, seed=seed)


def _decoding(request: GenerationRequest) -> dict[str, Any]:
    """The settings passed to the function as plain JSON, `seed` None for greedy decoding
    (the record's convention: no draw, no seed)."""
    passed = _settings_for(request).draw_dict()
    return {**passed, "stop": list(passed["stop"]), "seed": request.seed}


@dataclass(frozen=True)
class _Reply:
    text: str
    tokens_in: int | None
    tokens_out: int | None


def _reply(target: str, value: Any) -> _Reply:
    """The function's return value checked: a str, or a dict with `text` and optional
    integer `tokens_in` / `tokens_out`."""
    if isinstance(value, str):
        return _Reply(value, None, None)
    if not isinstance(value, Mapping):
        raise BackendError(
            f"{target} returned {type(value).__name__}, expected str or a dict with 'text'"
        )
    unknown = set(value) - {"text", "tokens_in", "tokens_out"}
    if unknown:
        raise BackendError(
            f"{target} returned unknown keys {sorted(unknown)}; known: text, tokens_in, tokens_out"
        )
    text = value.get("text")
    if not isinstance(text, str):
        raise BackendError(f"{target} returned a dict whose 'text' is not a str: {text!r}")
    counts = []
    for key in ("tokens_in", "tokens_out"):
        count = value.get(key)
        if count is not None and (
            isinstance(count, bool) or not isinstance(count, int) or count < 0
        ):
            raise BackendError(f"{target} returned {key}={count!r}, expected an int >= 0")
        counts.append(count)
    return _Reply(text, counts[0], counts[1])


def _import_function(target: str) -> Responder:
    responder: Responder = import_target(target, "callable backend")
    return responder
