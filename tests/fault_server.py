"""A real local OpenAI-compatible HTTP server that misbehaves on purpose, for backend tests.

    with FaultServer() as server:
        server.add(Fault.status_code(500), times=2)     # the first two requests get HTTP 500
        server.add(Fault.slow(1.0), when="SLOW")        # requests whose body contains SLOW
        url = server.base_url                           # http://127.0.0.1:PORT/v1

It answers POST /v1/chat/completions and /v1/completions on 127.0.0.1 (an ephemeral port) with
a deterministic reply, "echo: " plus the last message's content (chat) or the whole prompt
(completions), `finish_reason` "stop" and usage counts of 100 + words in and 50 + words out (the
offsets tell server usage apart from a client-side word count). Each request consumes the first
rule that matches it (in the order added, until its `times` run out); no rule means a normal
answer. Every request is recorded (path, headers, parsed body, arrival time) and the most
requests in flight at once is kept. All sleeps are short and the server stops on exit;
`kill_after_answers` kills it right after its Nth answer (mid-run, whatever the client does).

`kind` emulates what real servers do beyond the standard API (what the backend must cope with):

- "openai" (also the official API and `transformers serve`): a request with a field outside
  the standard ones gets HTTP 422 "Unexpected fields in the request"; `GET /v1/models` lists
  the model with `owned_by` "fault" and `created` "now" (volatile).
- "vllm": accepts `top_k` and `repetition_penalty`; its `/v1/models` entry has `owned_by`
  "vllm", the weights path in `root`, `max_model_len` and a per-call `permission` id.
- "llama.cpp": accepts any field, answers under its own alias whatever model was asked for,
  and applies `repeat_penalty` 1.1 unless told otherwise; the reply says which penalty
  applied (" [repeat_penalty 1.1]"). Its entry has `owned_by` "llamacpp" and `meta`.

`root` (the weights the server claims) and `fingerprint` (`system_fingerprint` of each
response, left out when None) can be changed between runs to emulate a relaunch with other
weights under the same name; `port` reuses a port (same base URL).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

MAX_SLEEP_S = 3.0
STANDARD_FIELDS = {
    "model", "messages", "prompt", "max_tokens", "temperature", "top_p", "stop", "seed",
    "frequency_penalty", "presence_penalty", "n", "stream", "user", "logprobs",
}  # fmt: skip
KIND_FIELDS = {"openai": set(), "vllm": {"top_k", "repetition_penalty", "add_special_tokens"}}
LLAMA_ALIAS = "model.gguf"
_permission_ids = itertools.count(1)


@dataclass(frozen=True)
class Fault:
    """What to do with one request: kind is ok, status, slow, drop, malformed, no_usage or
    reasoning."""

    kind: str
    status: int = 200
    seconds: float = 0.0
    headers: tuple[tuple[str, str], ...] = ()
    body: str = ""

    def __post_init__(self) -> None:
        assert 0 <= self.seconds < MAX_SLEEP_S, "fault server sleeps stay short"

    @classmethod
    def status_code(cls, code: int, body: str = "", retry_after: str | None = None) -> Fault:
        """Answer HTTP `code` with `body` (default: an OpenAI-style error JSON)."""
        headers = (("Retry-After", retry_after),) if retry_after is not None else ()
        text = body or json.dumps({"error": {"message": f"injected {code}", "code": code}})
        return cls("status", status=code, headers=headers, body=text)

    @classmethod
    def slow(cls, seconds: float) -> Fault:
        """Sleep `seconds` before answering normally (longer than a client's read timeout)."""
        return cls("slow", seconds=seconds)

    @classmethod
    def drop(cls) -> Fault:
        """Read the request, then close the connection without any response."""
        return cls("drop")

    @classmethod
    def malformed(cls, body: str = '{"choices": [ this is not json') -> Fault:
        """HTTP 200 with a body that is not JSON."""
        return cls("malformed", body=body)

    @classmethod
    def no_usage(cls) -> Fault:
        """A normal answer without the `usage` object."""
        return cls("no_usage")

    @classmethod
    def reasoning(cls, thought: str) -> Fault:
        """A normal chat answer whose message also carries `reasoning_content`."""
        return cls("reasoning", body=thought)


@dataclass
class Rule:
    fault: Fault
    times: int | None  # None: every matching request
    when: str | None  # substring of the raw request body; None: any request


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: Any
    at: float  # time.perf_counter() on arrival


@dataclass
class FaultServer:
    """The server; use as a context manager. `delay_s` delays every answer (to see overlap)."""

    delay_s: float = 0.0
    kind: str = "openai"
    root: str = "/weights/a"
    fingerprint: str | None = None
    port: int = 0
    received: list[Received] = field(default_factory=list)
    models_listed: int = 0  # GET /v1/models answered (not in `received`)
    max_in_flight: int = 0
    # Die like a killed process right after sending this many POST answers (None: never);
    # a request answered by no one after that gets its connection cut.
    kill_after_answers: int | None = None
    answered: int = 0
    _killed: bool = False
    _rules: list[Rule] = field(default_factory=list)
    _in_flight: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _httpd: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    _open: set[socket.socket] = field(default_factory=set)  # connections being served

    def add(self, fault: Fault, *, times: int | None = 1, when: str | None = None) -> FaultServer:
        with self._lock:
            self._rules.append(Rule(fault, times, when))
        return self

    @property
    def base_url(self) -> str:
        assert self._httpd is not None, "server not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def count(self, when: str | None = None) -> int:
        """Requests received (whose raw body contains `when`, if given)."""
        with self._lock:
            return sum(when is None or when in json.dumps(r.body) for r in self.received)

    def __enter__(self) -> FaultServer:
        assert self.delay_s < MAX_SLEEP_S
        assert self.kind in ("openai", "vllm", "llama.cpp"), self.kind
        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), _handler_for(self))
        self._httpd.daemon_threads = True
        # A short poll interval: shutdown() waits up to one interval.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def kill(self) -> None:
        """Die like a killed process: stop listening and cut every open connection (a
        kept-alive connection would otherwise still be answered by its handler thread)."""
        self.__exit__(None, None, None)
        with self._lock:
            open_now, self._open = list(self._open), set()
        for connection in open_now:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def models(self) -> dict[str, Any]:
        """The `GET /v1/models` answer for this server's kind."""
        entry: dict[str, Any] = {"id": "test-model", "object": "model", "created": time.time()}
        if self.kind == "vllm":
            permission = {"id": f"modelperm-{next(_permission_ids)}", "created": time.time()}
            entry |= {"owned_by": "vllm", "root": self.root, "parent": None}
            entry |= {"max_model_len": 2048, "permission": [permission]}
        elif self.kind == "llama.cpp":
            meta = {"vocab_type": 2, "n_vocab": 49152, "n_ctx_train": 8192, "n_params": 134515008}
            # Other weights under the same alias show in `meta` (here: a size made from root).
            size = 10**8 + sum(map(ord, self.root))
            entry |= {"id": LLAMA_ALIAS, "owned_by": "llamacpp", "meta": {**meta, "size": size}}
        else:
            entry |= {"owned_by": "fault", "root": self.root}
        return {"object": "list", "data": [entry]}

    def _take(self, raw: str) -> Fault:
        with self._lock:
            for rule in self._rules:
                if rule.times == 0 or (rule.when is not None and rule.when not in raw):
                    continue
                if rule.times is not None:
                    rule.times -= 1
                return rule.fault
        return Fault("ok")

    def _arrived(self, entry: Received) -> None:
        with self._lock:
            self.received.append(entry)
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)


def down_url() -> str:
    """A base URL where nothing listens: a port bound, read and released again."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def _unexpected(server: FaultServer, body: Any) -> set[str]:
    """Fields this kind of server rejects (llama.cpp ignores what it does not know)."""
    if server.kind == "llama.cpp" or not isinstance(body, dict):
        return set()
    return set(body) - STANDARD_FIELDS - KIND_FIELDS[server.kind]


def _reply(server: FaultServer, path: str, body: Any, fault: Fault) -> dict[str, Any]:
    """The deterministic answer to a well-formed request."""
    if path.endswith("/chat/completions"):
        source = str(body["messages"][-1]["content"])
    else:
        source = str(body["prompt"])
    answer = f"echo: {source}"
    if server.kind == "llama.cpp" and body.get("repeat_penalty", 1.1) != 1.0:
        answer += f" [repeat_penalty {body.get('repeat_penalty', 1.1)}]"
    if path.endswith("/chat/completions"):
        message: dict[str, Any] = {"role": "assistant", "content": answer}
        if fault.kind == "reasoning":
            message["reasoning_content"] = fault.body
        choice: dict[str, Any] = {"index": 0, "message": message, "finish_reason": "stop"}
    else:
        choice = {"index": 0, "text": answer, "finish_reason": "stop"}
    model = LLAMA_ALIAS if server.kind == "llama.cpp" else body.get("model")
    reply: dict[str, Any] = {"id": "fault-1", "model": model, "choices": [choice]}
    if server.fingerprint is not None:
        reply["system_fingerprint"] = server.fingerprint
    if fault.kind != "no_usage":
        reply["usage"] = {
            "prompt_tokens": 100 + len(source.split()),
            "completion_tokens": 50 + len(answer.split()),
        }
    return reply


def _handler_for(server: FaultServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, like real servers
        timeout = 5  # an idle kept-alive connection frees its thread

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the tests read `server.received` instead."""

        @property
        def route(self) -> str:
            """The path without its query string."""
            return self.path.split("?")[0]

        def setup(self) -> None:
            super().setup()
            with server._lock:
                server._open.add(self.connection)

        def finish(self) -> None:
            with server._lock:
                server._open.discard(self.connection)
            with contextlib.suppress(OSError):
                super().finish()

        def do_GET(self) -> None:
            if self.route != "/v1/models":
                self._send(Fault.status_code(404))
                return
            with server._lock:
                server.models_listed += 1
            self._send(Fault("json", body=json.dumps(server.models())))

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
            try:
                body: Any = json.loads(raw)
            except ValueError:
                body = raw
            server._arrived(Received(self.path, dict(self.headers), body, time.perf_counter()))
            fault = server._take(raw)
            time.sleep(server.delay_s + fault.seconds)
            # Counted out before answering: once the client has its answer it may send the
            # next request, which must not overlap this one in the count.
            with server._lock:
                server._in_flight -= 1
                killed = server._killed
                if not killed:
                    server.answered += 1
                last = server.answered == server.kill_after_answers and not killed
                server._killed = killed or last
            if killed:  # the server is dying: nothing answers any more
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)
                return
            # OSError: the client gave up (its read timeout), nothing left to answer.
            with contextlib.suppress(OSError):
                self._answer(fault, body)
            if last:
                server.kill()

        def _answer(self, fault: Fault, body: Any) -> None:
            if fault.kind == "drop":
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if not self.route.endswith(("/chat/completions", "/completions")):
                fault = Fault.status_code(404)
            elif fault.kind not in ("status", "malformed") and _unexpected(server, body):
                detail = f"Unexpected fields in the request: {sorted(_unexpected(server, body))}"
                fault = Fault.status_code(422, json.dumps({"detail": detail}))
            elif fault.kind not in ("status", "malformed"):
                try:
                    fault = Fault("json", body=json.dumps(_reply(server, self.route, body, fault)))
                except (KeyError, IndexError, TypeError, AttributeError):
                    fault = Fault.status_code(400, '{"error": {"message": "bad request body"}}')
            self._send(fault)

        def _send(self, fault: Fault) -> None:
            payload = fault.body.encode()
            self.send_response(fault.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in fault.headers:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

    return Handler
