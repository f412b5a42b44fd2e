"""What an OpenAI-compatible server says it is, read once per process (part of the cache key).

Two reads: the server's `/v1/models` entry for the model (which also shows the server kind
when option `server` is "auto"), and the `model` and `system_fingerprint` of one probe
request (`max_tokens` 1). The backend asks for them at every window, so each is read once
and remembered, a failure too: every later item gets the same error at once instead of
retrying a server that refused. A server that could not be reached at all is the exception:
it is declared down (`openai_health.py`), nothing is remembered, and the facts are read
again once it answers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pytest_llmeval.backends import BackendError
from pytest_llmeval.backends.openai_health import ServerHealth
from pytest_llmeval.backends.openai_http import ServerUnreachable, Transport
from pytest_llmeval.backends.openai_server import kind_of, models_entry


class ServerFacts:
    """The server's facts for one backend. `probe(kind)` sends the probe request to a server
    of that kind and returns its JSON answer (uncounted); `server` is the checked option
    ("auto": detected from the `/v1/models` entry)."""

    def __init__(
        self,
        http: Transport,
        health: ServerHealth,
        base_url: str,
        model: str,
        server: str,
        unreachable_after: int,
        probe: Callable[[str], dict[str, Any]],
    ) -> None:
        self.http = http
        self.health = health
        self.base_url = base_url
        self.model = model
        self.server = server
        self.unreachable_after = unreachable_after
        self._probe = probe
        self._entry: tuple[dict[str, Any] | None, str] | BackendError | None = None
        self._served: dict[str, Any] | BackendError | None = None

    @property
    def read(self) -> bool:
        """Whether the probe's facts were read (or failed for good) already."""
        return self._served is not None

    def kind(self) -> str:
        """ "vllm", "llama.cpp" or "openai" (generic): option `server`, else detected from the
        `/v1/models` entry (read once). Raises BackendError when the server is unreachable."""
        if self.server != "auto":
            return self.server
        return self.models_entry()[1]

    def known_kind(self) -> str | None:
        """The kind as far as known without asking the server (None: never learnt)."""
        if self.server != "auto":
            return self.server
        return self._entry[1] if isinstance(self._entry, tuple) else None

    def known_served(self) -> dict[str, Any] | None:
        """The served facts if they were read (None: not read, or could not be)."""
        return self._served if isinstance(self._served, dict) else None

    def models_entry(self) -> tuple[dict[str, Any] | None, str]:
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
                error = self._failed(exc)
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

    def served(self) -> dict[str, Any]:
        """The `/v1/models` entry plus the `model` and `system_fingerprint` of one probe
        request (`max_tokens` 1, greedy): what the server says it is; read once."""
        if self._served is None:
            kind = self.kind()  # these two raise (and remember) their own failures
            entry = self.models_entry()[0]
            try:
                data = self._probe(kind)
            except BackendError as exc:
                error = self._failed(exc)
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

    def _failed(self, exc: BackendError) -> BackendError:
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
