"""A backend for any OpenAI-compatible HTTP server: `--model openai:MODEL@BASE_URL`.

For models served elsewhere (vLLM, llama.cpp server, Ollama, TGI, a hosted API), e.g.
`--model openai:gpt-4o@http://127.0.0.1:8000/v1`. The model id is split at its last '@' into
the model name sent to the server and the base URL. Options come from a pyproject alias::

    [tool.llmeval.models.served]
    backend = "openai"
    model = "qwen2.5-7b@http://gpu-box:8000/v1"
    api_key_env = "MY_API_KEY"   # name of the variable holding the key (never the key itself)
    endpoint = "chat"            # "chat" (/chat/completions) or "completions" (/completions)
    concurrency = 8              # requests in flight; also the default batch size
    connect_timeout = 5          # seconds
    read_timeout = 120           # seconds
    max_retries = 4              # retries after the first attempt
    backoff_s = 0.5              # first retry delay, doubled each retry, capped at 30 s
    unreachable_after = 3        # requests in a row unable to connect: the server is down
    headers = { X-Team = "eval" }
    base_url = "..."             # only when `model` has no '@URL'
    version = "2024-06"          # your own label for the served weights (part of the cache key)
    server = "auto"              # "vllm", "llama.cpp" or "openai" (standard fields only)
    extra_body = { repeat_penalty = 1.0 }  # merged into every request body, last (wins)
    tokenizer = "org/model"      # completions: where the chat template comes from
    chat_template = "tpl.jinja"  # completions: a template file (wins over the tokenizer's)

The cache key holds the URL, model name, endpoint, `version`, `extra_body`, the server kind,
the chat template's hash (completions) and what the server says about itself, read once per
process: its `/v1/models` entry without the fields that change per call (see
`openai_server.VOLATILE_FIELDS`) and the `model` and `system_fingerprint` of one probe
request (`max_tokens` 1). A server that cannot be reached for these facts serves nothing from
the cache: its items are errors saying so.

Connection errors, timeouts, HTTP 429 and 5xx are retried (429/503 wait for `Retry-After`
when the server sends it, at most 60 s); other 4xx and malformed 200 responses fail at once.
A server that is down fails fast: after `unreachable_after` requests in a row could not
connect (0: never), each batch first checks GET /models once and, while nothing answers, its
items fail at once ("server URL unreachable: ...; not run"); the run resumes when it answers
(`openai_health.py`).
When some requests of a batch fail for good, `generate` raises `BatchPartiallyFailed`, which
carries every request's result or error in order. The harness uses `generate_stream`: a
worker's whole share goes through the pool at once (`concurrency` in flight), each answer
committed to the cache as it arrives. The API key appears in no message or report.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from typing import Any

from pytest_llmeval.backends import (
    BackendError,
    BatchPartiallyFailed,
    Finished,
    GenerationRequest,
    GenerationResult,
)
from pytest_llmeval.backends.openai_health import (
    DEFAULT_UNREACHABLE_AFTER,
    ServerHealth,
    SharedCheck,
)
from pytest_llmeval.backends.openai_http import (
    ServerUnreachable,
    Transport,
    api_key,
    at_least,
    split_model_id,
    split_query,
    warn_plain_http,
)
from pytest_llmeval.backends.openai_refusal import refusal
from pytest_llmeval.backends.openai_server import (
    check_extra_body,
    check_kind,
    decoding_fields,
    kind_of,
    models_entry,
)
from pytest_llmeval.backends.prompt_template import ChatTemplate, load_template
from pytest_llmeval.declare.models import ModelSpec
from pytest_llmeval.declare.redact import is_secret_name, redact, redact_mapping
from pytest_llmeval.declare.task import Generation, Message

ENDPOINTS = {"chat": "chat/completions", "completions": "completions"}


@dataclass(frozen=True)
class OpenAIOptions:
    """Per-model options of the openai backend: the extra keys of its pyproject alias (see the
    module docstring). `--llmeval-device` and `--llmeval-dtype` do not apply to a server."""

    base_url: str | None = None
    api_key_env: str | None = None
    endpoint: str = "chat"
    concurrency: int = 8
    connect_timeout: float = 5.0
    read_timeout: float = 120.0
    max_retries: int = 4
    backoff_s: float = 0.5
    unreachable_after: int = DEFAULT_UNREACHABLE_AFTER
    headers: Mapping[str, str] = field(default_factory=dict)
    version: str | None = None
    server: str = "auto"
    extra_body: Mapping[str, Any] = field(default_factory=dict)
    tokenizer: str | None = None
    chat_template: str | None = None


# The probe request that asks the server who it is (its answer's `model`, fingerprint).
PROBE = Generation(max_new_tokens=1)


class OpenAIBackend:
    """Sends each request to an OpenAI-compatible endpoint, `concurrency` at a time."""

    options_type = OpenAIOptions

    def __init__(self, spec: ModelSpec, options: OpenAIOptions) -> None:
        self.spec = spec
        self.options = options
        self.model, url = split_model_id(spec.model_id, options.base_url)
        # Requests go to the base URL with its query (if any) as parameters; identity, report
        # and messages show it with key-like values masked (`?api_key=***`).
        self.base_url, params = split_query(url)
        self.shown_url = redact(url.rstrip("/"))
        self.endpoint = options.endpoint
        if self.endpoint not in ENDPOINTS:
            raise BackendError(
                f"openai backend: option 'endpoint' must be chat or completions, "
                f"got {options.endpoint!r}"
            )
        self.concurrency = int(at_least("concurrency", options.concurrency, 1))
        self.url = f"{self.base_url}/{ENDPOINTS[self.endpoint]}"
        self.server = check_kind(options.server)
        self.extra_body = check_extra_body(options.extra_body)
        self.shown_extra_body = redact_mapping(self.extra_body)  # identity, report, records
        self.version = options.version
        # Completions need the model's own prompt format: found now, or a clear error now.
        self.template: ChatTemplate | None = None
        if self.endpoint == "completions":
            self.template = load_template(self.model, options.tokenizer, options.chat_template)
        self.default_batch_size = self.concurrency
        self.api_key_env = options.api_key_env
        self.connect_timeout = at_least("connect_timeout", options.connect_timeout, 0.001)
        self.read_timeout = at_least("read_timeout", options.read_timeout, 0.001)
        self.max_retries = int(at_least("max_retries", options.max_retries, 0))
        self.backoff_s = at_least("backoff_s", options.backoff_s, 0)
        self.unreachable_after = int(at_least("unreachable_after", options.unreachable_after, 0))
        key = api_key(self.api_key_env, self.shown_url)
        secret_header = any(is_secret_name(name) for name in options.headers)
        secret_param = any(is_secret_name(name) for name, _ in params)
        warn_plain_http(url, spec.name, bool(key) or secret_header or secret_param)
        self.http = Transport(
            headers=options.headers,
            params=params,
            api_key=key,
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            max_retries=self.max_retries,
            backoff_s=self.backoff_s,
            pool_size=max(self.concurrency, 10),
        )
        self.health = ServerHealth(
            self.shown_url,
            self.unreachable_after,
            lambda: self.http.reachable(f"{self.base_url}/models"),
        )
        self._lock = threading.Lock()  # guards the token-count counters (updated from workers)
        self._usage_counted = 0
        self._uncounted = 0
        # The server's facts, read once (the engine asks for the identity every window); a
        # failure is remembered too, so that each item does not retry a dead server again.
        self._entry: tuple[dict[str, Any] | None, str] | BackendError | None = None
        self._served: dict[str, Any] | BackendError | None = None

    def __repr__(self) -> str:
        return f"OpenAIBackend(model={self.model!r}, url={self.url!r})"

    def identity(self) -> Mapping[str, Any]:
        """Everything that changes the server's answers (part of the cache key; never the API
        key): the configuration plus the server's own facts, read at the first call. Raises
        BackendError when the server cannot be reached for them."""
        if self._served is None:  # not read yet: while the server is down, at once
            down = self.health.check(1)
            if down is not None:
                raise BackendError(down)
        try:
            kind = self.server_kind()
            served = self._served_facts()
        except BackendError as exc:
            raise BackendError(
                f"openai backend: cannot read the server's facts from {self.shown_url} (part of "
                f"the cache key; nothing is served from the cache without them): {exc}"
            ) from None
        return {**self._configured(), "server": kind, "served": served}

    def _configured(self) -> dict[str, Any]:
        """The identity's part that needs no server."""
        configured: dict[str, Any] = {
            "backend": "openai",
            "base_url": self.shown_url,  # its key-like query values masked: not in the key
            "model": self.model,
            "endpoint": self.endpoint,
            "version": self.version,
            "extra_body": self.shown_extra_body,
        }
        if self.template is not None:
            configured["chat_template_sha256"] = self.template.sha256
            configured["template_stop"] = list(self.template.stop)
        return configured

    def render(self, messages: list[Message]) -> str:
        """For "completions", the prompt sent: the model's chat template applied, with the
        assistant's header. For "chat", the messages as canonical JSON (sorted keys, no
        spaces): what identifies the prompt in the cache key and in reports."""
        if self.template is None:
            return json.dumps(messages, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return self.template.render(messages)

    def server_kind(self) -> str:
        """ "vllm", "llama.cpp" or "openai" (generic): option `server`, else detected from the
        `/v1/models` entry (read once). Raises BackendError when the server is unreachable."""
        if self.server != "auto":
            return self.server
        return self._models_entry()[1]

    def info(self) -> Mapping[str, Any]:
        """The configuration, the server facts read so far (None when they could not be
        read), the connection settings and request counters, for the report."""
        method = "usage where the server sent it, else not counted"
        if not (self._uncounted and self._usage_counted):
            method = "not counted (no usage from the server)" if self._uncounted else "usage"
        kind = self.server if self.server != "auto" else None
        if isinstance(self._entry, tuple):
            kind = kind or self._entry[1]
        return {
            **self._configured(),
            "server": kind,  # None: never learnt (the server could not be reached)
            "served": self._served if isinstance(self._served, dict) else None,
            "concurrency": self.concurrency,
            "connect_timeout_s": self.connect_timeout,
            "read_timeout_s": self.read_timeout,
            "max_retries": self.max_retries,
            "backoff_s": self.backoff_s,
            "unreachable_after": self.unreachable_after,
            "health_checks": self.health.health_checks,  # GET /models while it was down
            "not_run_server_down": self.health.not_run,  # items failed at once meanwhile
            "api_key_env": self.api_key_env,
            "token_count_method": method,
            "requests_sent": self.http.requests_sent,
            "retries_done": self.http.retries_done,
            "model_loads": 0,
            "load_time_s": 0,
        }

    def generate(
        self, requests: Sequence[GenerationRequest], batch_id: str
    ) -> list[GenerationResult]:
        """All requests concurrently (at most `concurrency` in flight), results in order;
        raises BatchPartiallyFailed when any request failed after its retries."""
        started = time.perf_counter()
        down = self.health.check(len(requests))
        if down is not None:
            raise BatchPartiallyFailed([BackendError(down) for _ in requests])
        try:
            kind = self.server_kind()  # before the threads: read once, by one of them
        except BackendError as exc:
            raise BatchPartiallyFailed([exc for _ in requests]) from None
        with ThreadPoolExecutor(max(1, min(self.concurrency, len(requests)))) as pool:
            outcomes = list(
                pool.map(lambda r: self._attempt(r, kind, batch_id, len(requests)), requests)
            )
        wall = round(time.perf_counter() - started, 6)
        results = [
            replace(o, batch_wall_s=wall) if isinstance(o, GenerationResult) else o
            for o in outcomes
        ]
        done = [r for r in results if isinstance(r, GenerationResult)]
        if len(done) < len(results):
            raise BatchPartiallyFailed(results)
        return done

    @property
    def max_in_flight(self) -> int:
        """The most streamed requests sent and unanswered at once: `concurrency`."""
        return self.concurrency

    def generate_stream(self, requests: Sequence[GenerationRequest]) -> Iterator[Finished]:
        """A worker's whole share through the pool (`concurrency` in flight, sent in order),
        each answer or final error yielded as it arrives, so that the engine commits it at
        once. While the server is down requests fail at once, one health check per
        `concurrency` of them.
        Closing the stream early cancels the requests not yet sent."""
        down = self.health.check(len(requests))
        if down is not None:
            yield [(i, BackendError(down)) for i in range(len(requests))]
            return
        try:
            kind = self.server_kind()  # before the threads: read once, by one of them
        except BackendError as exc:
            yield [(i, exc) for i in range(len(requests))]
            return
        total = len(requests)
        health = SharedCheck(self.health, self.concurrency)
        with ThreadPoolExecutor(max(1, min(self.concurrency, total))) as pool:
            futures = {
                pool.submit(self._streamed, request, kind, total, health): index
                for index, request in enumerate(requests)
            }
            try:
                for future in as_completed(futures):
                    yield [(futures[future], future.result())]
            finally:
                for future in futures:
                    future.cancel()  # a killed or abandoned stream sends nothing more

    def _streamed(
        self, request: GenerationRequest, kind: str, total: int, health: SharedCheck
    ) -> GenerationResult | BackendError:
        """One streamed request: failed at once while the server is down, else attempted."""
        down = health.check()
        if down is not None:
            return BackendError(down)
        return self._attempt(request, kind, "", total)

    def load(self) -> None:
        """Nothing to load here: the model runs behind an HTTP server."""

    def energy_devices(self) -> None:
        """None: a remote backend; no local device's energy is its own."""

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self.http.close()

    def _body(self, request: GenerationRequest, kind: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """The request body, and the decoding settings it carries (the record's `decoding`)."""
        stop = request.settings.stop + (self.template.stop if self.template else ())
        settings = replace(request.settings, stop=tuple(dict.fromkeys(stop)))
        fields, left = decoding_fields(settings, request.seed, kind, self.extra_body)
        body: dict[str, Any] = {"model": self.model}
        if self.template is None:
            body["messages"] = request.messages
        else:
            body["prompt"] = self.template.render(request.messages)
            if kind == "vllm":
                # vLLM's completions API adds special tokens by default: a template that
                # starts with BOS (Llama-3, Gemma) would get a second one.
                body["add_special_tokens"] = False
        decoding = {**fields, "seed": fields.get("seed"), "server": kind, "server_defaults": left}
        decoding |= redact_mapping({k: v for k, v in self.extra_body.items() if k in decoding})
        if self.template is not None:
            decoding["chat_template_sha256"] = self.template.sha256
        return body | fields, decoding

    def _models_entry(self) -> tuple[dict[str, Any] | None, str]:
        """The server's `/v1/models` entry for the model and the kind it shows; read once.
        The entry is None when the server lists no such model or answers with an HTTP error
        (some have no such endpoint; `transformers serve` answers 500 when it cannot scan
        its cache): the probe's facts still identify it. Raises BackendError only when the
        server cannot be reached."""
        if self._entry is None:
            try:
                url = f"{self.base_url}/models"
                response, _ = self.http.send("GET", url, None, counted=False, any_status=True)
            except BackendError as exc:
                error = self._facts_failed(exc)
                if not isinstance(error, ServerUnreachable):
                    self._entry = error
                raise error from None
            self.health.connected()
            try:
                listing = response.json() if response.ok else None
            except ValueError:
                listing = None
            entry = models_entry(listing, self.model)
            self._entry = (entry, kind_of(entry))
        if isinstance(self._entry, BackendError):
            raise self._entry
        return self._entry

    def _served_facts(self) -> dict[str, Any]:
        """The `/v1/models` entry plus the `model` and `system_fingerprint` of one probe
        request (`max_tokens` 1, greedy): what the server says it is; read once."""
        if self._served is None:
            kind = self.server_kind()  # these two raise (and remember) their own failures
            entry = self._models_entry()[0]
            try:
                probe = GenerationRequest([{"role": "user", "content": "Hi"}], PROBE)
                data = self._answer(self._body(probe, kind)[0], counted=False)
            except BackendError as exc:
                error = self._facts_failed(exc)
                if isinstance(error, ServerUnreachable):
                    raise error from None
                self._served = error
            else:
                self._served = {
                    "models_entry": entry,
                    "response_model": data.get("model"),
                    "system_fingerprint": data.get("system_fingerprint"),
                }
        if isinstance(self._served, BackendError):
            raise self._served
        return self._served

    def _facts_failed(self, exc: BackendError) -> BackendError:
        """The error to raise (scrubbed) when the server's facts could not be read. When the
        server could not be reached (and `unreachable_after` is not 0) it is down from now on
        and the error is a ServerUnreachable, not to be remembered: the facts are read again
        once the server answers, and the health check fails the items at once meanwhile.
        Any other error is remembered by the caller: every later item gets it at once."""
        message = self.http.scrub(str(exc))
        if isinstance(exc, ServerUnreachable) and self.unreachable_after:
            self.health.unreachable(exc.reason, at_once=True)
            return ServerUnreachable(message, exc.reason)
        return BackendError(message)

    def _attempt(
        self, request: GenerationRequest, kind: str, batch_id: str, batch_size: int
    ) -> GenerationResult | BackendError:
        """One request with its retries (batch_wall_s still 0), or the error that ended it.
        Never raises: it runs in a worker thread and must not hide its siblings' results."""
        started = time.perf_counter()
        try:
            body, decoding = self._body(request, kind)
            text, tokens, finish = self._parse(self._answer(body))
        except ServerUnreachable as exc:
            self.health.unreachable(exc.reason)
            return BackendError(self.http.scrub(str(exc)))
        except BackendError as exc:
            return BackendError(self.http.scrub(str(exc)))
        except Exception as exc:  # a bug or an unforeseen failure stays this item's error
            return BackendError(self.http.scrub(f"request to {self.url} failed: {exc!r}"))
        latency = time.perf_counter() - started
        with self._lock:
            self._uncounted += tokens is None
            self._usage_counted += tokens is not None
        # A server that sends no usage leaves the counts unknown: words are not tokens.
        return GenerationResult(
            text=text,
            prompt=self.render(request.messages),
            tokens_in=None if tokens is None else tokens[0],
            tokens_out=None if tokens is None else tokens[1],
            latency_s=round(latency, 6),
            finish_reason=finish,
            batch_id=batch_id,
            batch_size=batch_size,
            batch_wall_s=0.0,
            latency_method=(
                "per-request: wall time of this item's HTTP request, retries and backoff "
                f"included, with up to {self.concurrency} requests in flight"
            ),
            decoding=decoding,
        )

    def _answer(self, body: dict[str, Any], *, counted: bool = True) -> dict[str, Any]:
        """The JSON answer to a POST of `body` to the endpoint, after retries."""
        response, after = self.http.send("POST", self.url, body, counted=counted)
        self.health.connected()  # it answered, whatever it said
        if not response.ok:
            text = self.http.scrub(response.text)
            raise BackendError(refusal(response.status_code, f"{self.url} {after}", text, body))
        try:
            data = response.json()
        except ValueError:
            raise BackendError(
                f"malformed JSON from {self.url}: {self.http.scrub(response.text)[:200]!r}"
            ) from None
        if not isinstance(data, dict):
            raise BackendError(
                f"unexpected response from {self.url} (not a JSON object): "
                f"{self.http.scrub(response.text)[:200]!r}"
            )
        return data

    def _parse(self, data: dict[str, Any]) -> tuple[str, tuple[int, int] | None, str]:
        """Text, (tokens in, tokens out) from usage if given, and finish reason."""
        try:
            choice = data["choices"][0]
            if self.endpoint == "chat":
                message = choice["message"]
                text = message.get("content") or ""
                reasoning = message.get("reasoning_content") or message.get("reasoning")
            else:
                text, reasoning = choice["text"], None
            if not isinstance(text, str):
                raise TypeError("text is not a string")
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            raise BackendError(
                f"unexpected response from {self.url} (no usable choices[0]: {exc!r}): "
                f"{self.http.scrub(json.dumps(data))[:200]!r}"
            ) from None
        if isinstance(reasoning, str) and reasoning:
            # Keep the server-separated reasoning where the reasoning splitter looks for it.
            text = f"<think>{reasoning}</think>{text}"
        usage = data.get("usage")
        tokens = None
        if isinstance(usage, dict):
            counted = usage.get("prompt_tokens"), usage.get("completion_tokens")
            if isinstance(counted[0], int) and isinstance(counted[1], int):
                tokens = (counted[0], counted[1])
        return text, tokens, str(choice.get("finish_reason") or "unknown")
