"""HTTP for the openai backend: the configured connection, retries and secret scrubbing.

Connection errors, timeouts, HTTP 429 and 5xx are retried with exponential backoff (429/503
wait for `Retry-After` when the server sends it, at most 60 s); a request whose last attempt
could not connect raises `ServerUnreachable`, which the backend counts towards declaring the
server down (`openai_health.py`). The API key and long header values are scrubbed from every
message, since servers echo requests in error bodies.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import os
import re
import threading
import time
import warnings
from collections.abc import Mapping, Sequence
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter

from pytest_llmeval.backends import BackendError
from pytest_llmeval.declare.redact import is_secret_name

log = logging.getLogger("pytest_llmeval.backends.openai_backend")

MAX_BACKOFF_S = 30.0
MAX_RETRY_AFTER_S = 60.0


class ServerUnreachable(BackendError):
    """The request's last attempt could not connect (refused, reset, DNS, connect timeout):
    nothing answered at all, unlike a read timeout or an HTTP error. `reason` says why."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class Transport:
    """One pooled HTTP session with the backend's headers, timeouts and retry policy; its
    counters (`requests_sent`, `retries_done`) count generation requests only."""

    def __init__(
        self,
        *,
        headers: Mapping[str, str],
        api_key: str | None,
        connect_timeout: float,
        read_timeout: float,
        max_retries: int,
        backoff_s: float,
        pool_size: int,
        params: Sequence[tuple[str, str]] = (),
    ) -> None:
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        extra = dict(headers)
        self._headers = {**extra, **({"Authorization": f"Bearer {api_key}"} if api_key else {})}
        # Scrubbed from every message: servers echo requests in error bodies, and a long
        # extra header value may be a credential too.
        self._secrets = [v for v in extra.values() if len(v) >= 8] + ([api_key] if api_key else [])
        # The base URL's query goes with every request (and its key-like values nowhere else).
        self._secrets += [value for name, value in params if is_secret_name(name) and value]
        self._session = requests.Session()
        self._session.params = dict(params)
        adapter = HTTPAdapter(pool_connections=2, pool_maxsize=pool_size)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._lock = threading.Lock()  # guards the counters (updated from worker threads)
        self.requests_sent = 0
        self.retries_done = 0

    def send(
        self,
        method: str,
        url: str,
        body: dict[str, Any] | None,
        *,
        counted: bool = True,
        any_status: bool = False,
    ) -> tuple[requests.Response, str]:
        """The first response not worth retrying (2xx, or a 4xx other than 429: the request
        itself is wrong; `any_status`: every response) and "after N attempts"; connection
        errors, timeouts, 429 and 5xx are retried and raise BackendError once the retries
        are spent. `counted`: a generation request (the counters leave out the requests for
        the server's facts)."""
        attempts_allowed = self.max_retries + 1
        for attempt in range(1, attempts_allowed + 1):
            if counted:
                with self._lock:
                    self.requests_sent += 1
            after = f"after {attempt} attempt{'s' if attempt > 1 else ''}"
            wait = min(self.backoff_s * 2 ** (attempt - 1), MAX_BACKOFF_S)
            unreached = None  # why nothing answered, when nothing did
            try:
                response = self._session.request(
                    method,
                    url,
                    json=body,
                    headers=self._headers,
                    timeout=(self.connect_timeout, self.read_timeout),
                )
            except requests.Timeout as exc:  # before ConnectionError: ConnectTimeout is both
                kind = "connect" if isinstance(exc, requests.ConnectTimeout) else "read"
                failure = (
                    f"timed out {after} to {url} ({kind} timeout; connect_timeout "
                    f"{self.connect_timeout} s, read_timeout {self.read_timeout} s)"
                )
                if kind == "connect":
                    unreached = f"connect timeout ({self.connect_timeout} s)"
            except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
                failure = f"connection failed to {url} {after}: {_reason(exc)}"
                if isinstance(exc, requests.ConnectionError):
                    unreached = _reason(exc)
            else:
                if any_status or (response.status_code != 429 and response.status_code < 500):
                    return response, after
                excerpt = self.scrub(response.text)[:200]
                failure = f"HTTP {response.status_code} from {url} {after}: {excerpt}"
                if response.status_code in (429, 503):
                    wait = _retry_after(response.headers.get("Retry-After"), wait)
            if attempt == attempts_allowed:
                if unreached is not None:
                    raise ServerUnreachable(self.scrub(failure), self.scrub(unreached))
                raise BackendError(failure)
            log.info("retrying in %.2f s: %s", wait, self.scrub(failure))
            if counted:
                with self._lock:
                    self.retries_done += 1
            time.sleep(wait)
        raise AssertionError("unreachable: the loop returns or raises")

    def reachable(self, url: str) -> str | None:
        """One GET of `url` without retries: None when anything answers (any HTTP status:
        the server is up), else why it could not connect."""
        try:
            self._session.get(url, headers=self._headers, timeout=(self.connect_timeout, 5.0))
        except requests.ConnectTimeout:
            return f"connect timeout ({self.connect_timeout} s)"
        except requests.ConnectionError as exc:
            return self.scrub(_reason(exc))  # a URL in it carries the query
        except requests.RequestException:
            return None  # it answered, if slowly or badly: up
        return None

    def scrub(self, text: str) -> str:
        """`text` with every secret replaced by `***`."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def close(self) -> None:
        """Close the connection pool."""
        self._session.close()


def split_model_id(model_id: str, base_url: str | None) -> tuple[str, str]:
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


def split_query(url: str) -> tuple[str, list[tuple[str, str]]]:
    """A base URL without its query string, and the query's parameters (sent with every
    request: `?api-version=...`, or a gateway's `?key=...`)."""
    parts = urlsplit(url)
    base = urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))
    return base, parse_qsl(parts.query, keep_blank_values=True)


_warned_hosts: set[str] = set()


def warn_plain_http(url: str, model: str, credentials: bool) -> None:
    """Warn, once per host and process, when `credentials` go over plain http:// to a host
    other than this machine: anyone on the network path can read them."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if not credentials or parts.scheme != "http" or _loopback(host) or host in _warned_hosts:
        return
    _warned_hosts.add(host)
    warnings.warn(
        f"llmeval: model {model} sends its API key to {host} over plain http://, readable "
        "by anyone on the network path; use https:// (or a server on this machine)",
        stacklevel=3,
    )


def _loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def at_least(name: str, value: float, minimum: float) -> float:
    """A numeric option checked against its lower bound (its type was checked on parsing)."""
    if not math.isfinite(value) or value < minimum:
        kind = "an integer" if isinstance(value, int) else "a number"
        raise BackendError(
            f"openai backend: option {name!r} must be {kind} >= {minimum}, got {value!r}"
        )
    return float(value)


def api_key(env_name: str | None, base_url: str) -> str | None:
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
