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
    headers = { X-Team = "eval" }
    base_url = "..."             # only when `model` has no '@URL'

Connection errors, timeouts, HTTP 429 and 5xx are retried (429/503 wait for `Retry-After`
when the server sends it, at most 60 s); other 4xx and malformed 200 responses fail at once.
When some requests of a batch fail for good, `generate` raises `BatchPartiallyFailed`, which
carries every request's result or error in order. The API key appears in no message or report.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from email.utils import parsedate_to_datetime
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from pytest_llmeval.backends import (
    BackendError,
    BatchPartiallyFailed,
    GenerationRequest,
    GenerationResult,
)
from pytest_llmeval.declare.models import ModelSpec
from pytest_llmeval.declare.task import Message

log = logging.getLogger(__name__)

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
    headers: Mapping[str, str] = field(default_factory=dict)


MAX_BACKOFF_S = 30.0
MAX_RETRY_AFTER_S = 60.0


class OpenAIBackend:
    """Sends each request to an OpenAI-compatible endpoint, `concurrency` at a time."""

    options_type = OpenAIOptions

    def __init__(self, spec: ModelSpec, options: OpenAIOptions) -> None:
        self.spec = spec
        self.options = options
        self.model, self.base_url = _split_model_id(spec.model_id, options.base_url)
        self.endpoint = options.endpoint
        if self.endpoint not in ENDPOINTS:
            raise BackendError(
                f"openai backend: option 'endpoint' must be chat or completions, "
                f"got {options.endpoint!r}"
            )
        self.concurrency = int(_at_least("concurrency", options.concurrency, 1))
        self.connect_timeout = _at_least("connect_timeout", options.connect_timeout, 0.001)
        self.read_timeout = _at_least("read_timeout", options.read_timeout, 0.001)
        self.max_retries = int(_at_least("max_retries", options.max_retries, 0))
        self.backoff_s = _at_least("backoff_s", options.backoff_s, 0)
        self.url = f"{self.base_url}/{ENDPOINTS[self.endpoint]}"
        self.default_batch_size = self.concurrency
        headers = dict(options.headers)
        self.api_key_env = options.api_key_env
        key = _api_key(self.api_key_env, self.base_url)
        self._headers = {**headers, **({"Authorization": f"Bearer {key}"} if key else {})}
        # Scrubbed from every message: servers echo requests in error bodies, and a long
        # extra header value may be a credential too.
        self._secrets = [v for v in headers.values() if len(v) >= 8] + ([key] if key else [])
        self._session = requests.Session()
        adapter = HTTPAdapter(pool_connections=2, pool_maxsize=max(self.concurrency, 10))
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._lock = threading.Lock()  # guards the counters below (updated from workers)
        self.requests_sent = 0
        self.retries_done = 0
        self._usage_counted = 0
        self._uncounted = 0

    def __repr__(self) -> str:
        return f"OpenAIBackend(model={self.model!r}, url={self.url!r})"

    def identity(self) -> Mapping[str, Any]:
        """Server URL, model name and endpoint (part of the cache key; never the API key)."""
        return {
            "backend": "openai",
            "base_url": self.base_url,
            "model": self.model,
            "endpoint": self.endpoint,
        }

    def render(self, messages: list[Message]) -> str:
        """For "completions", the prompt sent: one `role: content` line per message, then a
        line `assistant:`. For "chat", the messages as canonical JSON (sorted keys, no
        spaces): what identifies the prompt in the cache key and in reports."""
        if self.endpoint == "chat":
            return json.dumps(messages, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        lines = [f"{m.get('role', 'user')}: {m.get('content', '')}" for m in messages]
        return "\n".join([*lines, "assistant:"])

    def info(self) -> Mapping[str, Any]:
        """The identity plus the connection settings and request counters, for the report."""
        method = "usage where the server sent it, else not counted"
        if not (self._uncounted and self._usage_counted):
            method = "not counted (no usage from the server)" if self._uncounted else "usage"
        return {
            **self.identity(),
            "concurrency": self.concurrency,
            "connect_timeout_s": self.connect_timeout,
            "read_timeout_s": self.read_timeout,
            "max_retries": self.max_retries,
            "backoff_s": self.backoff_s,
            "api_key_env": self.api_key_env,
            "token_count_method": method,
            "requests_sent": self.requests_sent,
            "retries_done": self.retries_done,
            "model_loads": 0,
            "load_time_s": 0,
        }

    def generate(
        self, requests: Sequence[GenerationRequest], batch_id: str
    ) -> list[GenerationResult]:
        """All requests concurrently (at most `concurrency` in flight), results in order;
        raises BatchPartiallyFailed when any request failed after its retries."""
        started = time.perf_counter()
        with ThreadPoolExecutor(max(1, min(self.concurrency, len(requests)))) as pool:
            outcomes = list(pool.map(lambda r: self._attempt(r, batch_id, len(requests)), requests))
        wall = round(time.perf_counter() - started, 6)
        results = [
            replace(o, batch_wall_s=wall) if isinstance(o, GenerationResult) else o
            for o in outcomes
        ]
        done = [r for r in results if isinstance(r, GenerationResult)]
        if len(done) < len(results):
            raise BatchPartiallyFailed(results)
        return done

    def load(self) -> None:
        """Nothing to load here: the model runs behind an HTTP server."""

    def energy_devices(self) -> None:
        """None: a remote backend; no local device's energy is its own."""

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._session.close()

    def _body(self, request: GenerationRequest) -> dict[str, Any]:
        settings = request.settings
        body: dict[str, Any] = {"model": self.model}
        if self.endpoint == "chat":
            body["messages"] = request.messages
        else:
            body["prompt"] = self.render(request.messages)
        body |= {
            "max_tokens": settings.max_new_tokens,
            "temperature": settings.temperature,
            "top_p": settings.top_p,
            "seed": settings.seed,
        }
        if settings.stop:
            body["stop"] = list(settings.stop)
        return body

    def _attempt(
        self, request: GenerationRequest, batch_id: str, batch_size: int
    ) -> GenerationResult | BackendError:
        """One request with its retries (batch_wall_s still 0), or the error that ended it.
        Never raises: it runs in a worker thread and must not hide its siblings' results."""
        started = time.perf_counter()
        try:
            text, tokens, finish = self._post_with_retries(self._body(request))
        except BackendError as exc:
            return BackendError(self._scrub(str(exc)))
        except Exception as exc:  # a bug or an unforeseen failure stays this item's error
            return BackendError(self._scrub(f"request to {self.url} failed: {exc!r}"))
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
        )

    def _post_with_retries(self, body: dict[str, Any]) -> tuple[str, tuple[int, int] | None, str]:
        attempts_allowed = self.max_retries + 1
        for attempt in range(1, attempts_allowed + 1):
            with self._lock:
                self.requests_sent += 1
            after = f"after {attempt} attempt{'s' if attempt > 1 else ''}"
            wait = min(self.backoff_s * 2 ** (attempt - 1), MAX_BACKOFF_S)
            try:
                response = self._session.post(
                    self.url,
                    json=body,
                    headers=self._headers,
                    timeout=(self.connect_timeout, self.read_timeout),
                )
            except requests.Timeout as exc:  # before ConnectionError: ConnectTimeout is both
                kind = "connect" if isinstance(exc, requests.ConnectTimeout) else "read"
                failure = (
                    f"timed out {after} to {self.url} ({kind} timeout; connect_timeout "
                    f"{self.connect_timeout} s, read_timeout {self.read_timeout} s)"
                )
            except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
                failure = f"connection failed to {self.url} {after}: {_reason(exc)}"
            else:
                if response.ok:
                    return self._parse(response)
                excerpt = self._scrub(response.text)[:200]
                failure = f"HTTP {response.status_code} from {self.url} {after}: {excerpt}"
                if response.status_code != 429 and response.status_code < 500:
                    raise BackendError(failure)  # the request itself is wrong: retry won't help
                if response.status_code in (429, 503):
                    wait = _retry_after(response.headers.get("Retry-After"), wait)
            if attempt == attempts_allowed:
                raise BackendError(failure)
            log.info("retrying in %.2f s: %s", wait, self._scrub(failure))
            with self._lock:
                self.retries_done += 1
            time.sleep(wait)
        raise AssertionError("unreachable: the loop returns or raises")

    def _parse(self, response: requests.Response) -> tuple[str, tuple[int, int] | None, str]:
        try:
            data = response.json()
        except ValueError:
            raise BackendError(
                f"malformed JSON from {self.url}: {self._scrub(response.text)[:200]!r}"
            ) from None
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
                f"{self._scrub(response.text)[:200]!r}"
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

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


def _split_model_id(model_id: str, base_url: str | None) -> tuple[str, str]:
    """`MODEL@URL` split at the last '@', or a bare `MODEL` with option `base_url`."""
    model, sep, embedded = model_id.rpartition("@")
    url = embedded if sep else base_url
    if not sep:
        model = model_id
    elif base_url is not None and base_url.rstrip("/") != embedded.rstrip("/"):
        raise BackendError(f"openai backend: option 'base_url' contradicts the URL in {model_id!r}")
    if url is None:
        raise BackendError(
            f"openai backend: no server URL for {model_id!r}: use MODEL@BASE_URL "
            "(e.g. gpt-4o@http://127.0.0.1:8000/v1) or set option 'base_url'"
        )
    if not re.match(r"https?://[^/\s]+", url):
        raise BackendError(f"openai backend: option 'base_url' must be an http(s) URL, got {url!r}")
    if not model:
        raise BackendError(f"openai backend: no model name before '@' in {model_id!r}")
    return model, url.rstrip("/")


def _at_least(name: str, value: float, minimum: float) -> float:
    """A numeric option checked against its lower bound (its type was checked on parsing)."""
    if not math.isfinite(value) or value < minimum:
        kind = "an integer" if isinstance(value, int) else "a number"
        raise BackendError(
            f"openai backend: option {name!r} must be {kind} >= {minimum}, got {value!r}"
        )
    return float(value)


def _api_key(env_name: str | None, base_url: str) -> str | None:
    """The key from the environment variable named by option `api_key_env` (None: no key)."""
    if env_name is None:
        return None
    if not isinstance(env_name, str) or not env_name:
        raise BackendError(
            "openai backend: option 'api_key_env' must be the NAME of an environment variable"
        )
    key = os.environ.get(env_name, "")
    if not key:
        raise BackendError(
            f"openai backend: environment variable {env_name} is unset or empty; "
            f"set {env_name} to the API key for {base_url}"
        )
    return key


def _retry_after(header: str | None, default: float) -> float:
    """Seconds the server asked us to wait (a number or an HTTP date), capped at 60 s."""
    if not header:
        return default
    try:
        seconds = float(header)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(header).timestamp() - time.time()
        except (TypeError, ValueError):
            return default
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S) if math.isfinite(seconds) else default


def _reason(exc: Exception) -> str:
    """The useful part of a requests connection error (urllib3 wraps it in pool reprs)."""
    errno = re.search(r"\[Errno -?\d+\][^'\")]*", str(exc))
    return errno.group(0).strip() if errno else str(exc)[:200]
