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
    PromptRefused,
)
from pytest_llmeval.backends.openai_facts import ServerFacts
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
from pytest_llmeval.backends.openai_server import check_extra_body, check_kind
from pytest_llmeval.backends.openai_wire import (
    ENDPOINTS,
    answer_json,
    parse_answer,
    rendered,
    request_body,
)
from pytest_llmeval.backends.prompt_template import ChatTemplate, load_template
from pytest_llmeval.declare.models import ModelSpec
from pytest_llmeval.declare.redact import is_secret_name, redact, redact_mapping
from pytest_llmeval.declare.task import Generation, Message


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
        self.facts = ServerFacts(
            self.http,
            self.health,
            self.base_url,
            self.model,
            self.server,
            self.unreachable_after,
            self._probe,
        )

    def __repr__(self) -> str:
        return f"OpenAIBackend(model={self.model!r}, url={self.url!r})"

    def identity(self) -> Mapping[str, Any]:
        """Everything that changes the server's answers (part of the cache key; never the API
        key): the configuration plus the server's own facts, read at the first call. Raises
        BackendError when the server cannot be reached for them."""
        if not self.facts.read:  # not read yet: while the server is down, at once
            down = self.health.check(1)
            if down is not None:
                raise BackendError(down)
        try:
            kind = self.facts.kind()
            served = self.facts.served()
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
        return rendered(messages, self.template)

    def server_kind(self) -> str:
        """ "vllm", "llama.cpp" or "openai" (generic): option `server`, else detected from the
        `/v1/models` entry (read once). Raises BackendError when the server is unreachable."""
        return self.facts.kind()

    def info(self) -> Mapping[str, Any]:
        """The configuration, the server facts read so far (None when they could not be
        read), the connection settings and request counters, for the report."""
        method = "usage where the server sent it, else not counted"
        if not (self._uncounted and self._usage_counted):
            method = "not counted (no usage from the server)" if self._uncounted else "usage"
        return {
            **self._configured(),
            "server": self.facts.known_kind(),  # None: never learnt (server not reached)
            "served": self.facts.known_served(),
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

    def _probe(self, kind: str) -> dict[str, Any]:
        """The answer to the probe request that asks the server who it is (uncounted)."""
        probe = GenerationRequest([{"role": "user", "content": "Hi"}], PROBE)
        body = request_body(self.model, probe, kind, self.template, self.extra_body)[0]
        return self._post(body, counted=False)

    def _attempt(
        self, request: GenerationRequest, kind: str, batch_id: str, batch_size: int
    ) -> GenerationResult | BackendError:
        """One request with its retries (batch_wall_s still 0), or the error that ended it.
        Never raises: it runs in a worker thread and must not hide its siblings' results."""
        started = time.perf_counter()
        try:
            body, decoding = request_body(self.model, request, kind, self.template, self.extra_body)
            data = self._post(body)
            text, tokens, finish = parse_answer(data, self.endpoint, self.url, self.http.scrub)
        except ServerUnreachable as exc:
            self.health.unreachable(exc.reason)
            return BackendError(self.http.scrub(str(exc)))
        except BackendError as exc:
            # Scrubbed, keeping a context refusal's kind (an item error, not the model's).
            error_type = PromptRefused if isinstance(exc, PromptRefused) else BackendError
            return error_type(self.http.scrub(str(exc)))
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

    def _post(self, body: dict[str, Any], *, counted: bool = True) -> dict[str, Any]:
        """The JSON answer to a POST of `body` to the endpoint, after retries."""
        response, after = self.http.send("POST", self.url, body, counted=counted)
        self.health.connected()  # it answered, whatever it said
        return answer_json(response, self.url, after, body, self.http.scrub)
