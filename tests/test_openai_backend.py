"""The OpenAI-compatible backend against a real local server that misbehaves on purpose."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fault_server import Fault, FaultServer, down_url
from served_model import embedded_model_dir

from pytest_llmeval.backends import (
    BackendError,
    GenerationRequest,
    GenerationResult,
    create_backend,
)
from pytest_llmeval.backends.openai_backend import BatchPartiallyFailed, OpenAIBackend
from pytest_llmeval.backends.openai_http import _retry_after
from pytest_llmeval.declare.models import ModelSpec, resolve_model
from pytest_llmeval.declare.seeds import sample_seed
from pytest_llmeval.declare.task import Generation

SECRET = "sk-test-Zq8vN3xW7pLk2JtR9mYd"  # distinctive: any leak is found by substring
KEY_ENV = "LLMEVAL_TEST_OPENAI_KEY"
FAST = {"connect_timeout": 1, "read_timeout": 2, "max_retries": 2, "backoff_s": 0.01}


@pytest.fixture
def server() -> Iterator[FaultServer]:
    with FaultServer() as running:
        yield running


def make(spec: ModelSpec, **overrides: Any) -> OpenAIBackend:
    """The backend as the plugin creates it: options parsed, command-line overrides applied."""
    made = create_backend(spec, overrides)
    assert isinstance(made, OpenAIBackend)
    return made


def backend(url: str, model_id: str = "test-model", **options: Any) -> OpenAIBackend:
    spec = ModelSpec("served", "openai", f"{model_id}@{url}", options={**FAST, **options})
    return make(spec, device="cpu", dtype="auto")  # engine-wide options are ignored


def request(content: str, **settings: Any) -> GenerationRequest:
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": content}]
    return GenerationRequest(messages=messages, settings=Generation(**settings))


def failure(run: OpenAIBackend, *requests: GenerationRequest) -> BatchPartiallyFailed:
    with pytest.raises(BatchPartiallyFailed) as caught:
        run.generate(list(requests), "b1")
    return caught.value


# --- configuration ---------------------------------------------------------------------------


def test_model_id_splits_at_last_at_sign_and_options_apply() -> None:
    spec = resolve_model("openai:gpt-4o@http://127.0.0.1:8000/v1")
    plain = make(spec)
    assert (plain.model, plain.base_url, plain.url) == (
        "gpt-4o",
        "http://127.0.0.1:8000/v1",
        "http://127.0.0.1:8000/v1/chat/completions",
    )
    configured = ("backend", "base_url", "model", "endpoint", "version", "extra_body", "server")
    assert {key: plain.info()[key] for key in configured} == {
        "backend": "openai",
        "base_url": "http://127.0.0.1:8000/v1",
        "model": "gpt-4o",
        "endpoint": "chat",
        "version": None,
        "extra_body": {},
        "server": None,  # not learnt yet: nothing was asked of the server
    }
    assert plain.default_batch_size == 8
    assert (plain.http.connect_timeout, plain.http.read_timeout, plain.http.max_retries) == (
        5,
        120,
        4,
    )

    template = f"{embedded_model_dir()}/chat_template.jinja"  # completions need one
    tuned = backend(
        "https://h.example/v1/",
        "org/m@v2",
        endpoint="completions",
        concurrency=3,
        chat_template=template,
    )
    assert (tuned.model, tuned.base_url) == ("org/m@v2", "https://h.example/v1")
    assert tuned.url == "https://h.example/v1/completions"
    assert tuned.default_batch_size == 3

    spec = ModelSpec("x", "openai", "llama", options={"base_url": "http://h:1/v1"})
    assert make(spec).url == "http://h:1/v1/chat/completions"


@pytest.mark.parametrize(
    ("model_id", "options", "named"),
    [
        ("m@http://h:1/v1", {"concurrency": 0}, "'concurrency'"),
        ("m@http://h:1/v1", {"concurrency": "8"}, "'concurrency'"),
        ("m@http://h:1/v1", {"read_timeout": -1}, "'read_timeout'"),
        ("m@http://h:1/v1", {"connect_timeout": "5"}, "'connect_timeout'"),
        ("m@http://h:1/v1", {"max_retries": 1.5}, "'max_retries'"),
        ("m@http://h:1/v1", {"backoff_s": True}, "'backoff_s'"),
        ("m@http://h:1/v1", {"endpoint": "embeddings"}, "'endpoint'"),
        ("m@http://h:1/v1", {"headers": {"X-N": 1}}, "'headers'"),
        ("m@http://h:1/v1", {"api_key_env": 3}, "'api_key_env'"),
        ("m@http://h:1/v1", {"temprature": 0.5}, "temprature"),
        ("m@http://h:1/v1", {"base_url": "http://other:2/v1"}, "'base_url'"),
        ("m", {}, "'base_url'"),
        ("m@127.0.0.1:8000/v1", {}, "'base_url'"),
        ("@http://h:1/v1", {}, "no model name"),
    ],
)
def test_bad_configuration_names_the_option(
    model_id: str, options: dict[str, Any], named: str
) -> None:
    with pytest.raises(BackendError, match="openai backend") as caught:
        make(ModelSpec("served", "openai", model_id, options=options))
    assert named in str(caught.value)


def test_unset_api_key_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(BackendError, match=f"environment variable {KEY_ENV} is unset"):
        backend("http://127.0.0.1:9/v1", api_key_env=KEY_ENV)


# --- happy paths ----------------------------------------------------------------------------


def test_chat_batch_in_order_with_usage_latency_and_request_fields(server: FaultServer) -> None:
    run = backend(server.base_url, concurrency=4)
    settings = {"max_new_tokens": 32, "temperature": 0.7, "top_p": 0.9, "stop": ["###"], "seed": 7}
    batch = [request(f"question number {i}", **settings) for i in range(5)]
    results = run.generate(batch, "w-1")

    assert [r.text for r in results] == [f"echo: question number {i}" for i in range(5)]
    for result, sent in zip(results, batch, strict=True):
        assert result.prompt == run.render(sent.messages)
        assert (result.tokens_in, result.tokens_out) == (103, 54)  # the server's usage
        assert result.finish_reason == "stop"
        assert 0 < result.latency_s <= result.batch_wall_s
        assert (result.batch_id, result.batch_size) == ("w-1", 5)
        assert "retries" in result.latency_method
    assert len({r.batch_wall_s for r in results}) == 1

    by_content = {r.body["messages"][-1]["content"]: r for r in server.received}
    for sent in batch:
        seen = by_content[sent.messages[-1]["content"]]
        assert seen.path == "/v1/chat/completions"
        assert seen.body == {
            "model": "test-model",
            "messages": sent.messages,
            "max_tokens": 32,
            "temperature": 0.7,
            "top_p": 0.9,
            "stop": ["###"],
            "seed": sample_seed(7, "", 0),  # the item's own seed, not the task seed
            "frequency_penalty": 0.0,
            "presence_penalty": 0.0,
        }
        assert "Authorization" not in seen.headers
    info = run.info()
    assert info["requests_sent"] == 5 and info["retries_done"] == 0
    assert info["token_count_method"] == "usage"
    assert (info["model_loads"], info["load_time_s"]) == (0, 0)
    json.dumps(info)  # plain JSON
    run.close()


def test_chat_render_is_canonical_json() -> None:
    run = backend("http://127.0.0.1:9/v1")
    messages = request("héllo").messages
    rendered = run.render(messages)
    assert json.loads(rendered) == messages
    assert rendered == run.render([dict(reversed(m.items())) for m in messages])
    assert "héllo" in rendered


def test_concurrency_is_bounded() -> None:
    with FaultServer(delay_s=0.2) as server:
        run = backend(server.base_url, concurrency=2)
        results = run.generate([request(f"q{i}") for i in range(6)], "b1")
    assert [r.text for r in results] == [f"echo: q{i}" for i in range(6)]
    assert server.max_in_flight == 2
    assert results[0].batch_wall_s >= 0.55  # three waves of two


def test_reasoning_is_kept_in_think_tags(server: FaultServer) -> None:
    server.add(Fault.reasoning("add the two numbers"))
    [result] = backend(server.base_url).generate([request("q")], "b1")
    assert result.text == "<think>add the two numbers</think>echo: q"


def test_missing_usage_leaves_token_counts_unknown(server: FaultServer) -> None:
    server.add(Fault.no_usage())
    run = backend(server.base_url)
    [result] = run.generate([request("three word question")], "b1")
    # Not whitespace words standing in for tokens (issue 9, point 17).
    assert (result.tokens_in, result.tokens_out) == (None, None)
    assert run.info()["token_count_method"] == "not counted (no usage from the server)"


# --- faults ---------------------------------------------------------------------------------


def test_server_errors_are_retried_until_success(server: FaultServer) -> None:
    server.add(Fault.status_code(500), times=2)
    run = backend(server.base_url)
    [result] = run.generate([request("q")], "b1")
    assert result.text == "echo: q"
    assert server.count() == 3
    assert (run.info()["requests_sent"], run.info()["retries_done"]) == (3, 2)


def test_persistent_server_error_names_status_url_attempts_and_body(server: FaultServer) -> None:
    server.add(Fault.status_code(503, body="overloaded, try later"), times=None)
    error = failure(backend(server.base_url), request("q"))
    assert str(error) == (
        f"HTTP 503 from {server.base_url}/chat/completions after 3 attempts: overloaded, try later"
    )
    assert server.count() == 3


def test_429_waits_for_retry_after(server: FaultServer) -> None:
    server.add(Fault.status_code(429, retry_after="1"))
    started = time.perf_counter()
    [result] = backend(server.base_url).generate([request("q")], "b1")
    assert time.perf_counter() - started >= 0.9
    assert result.text == "echo: q" and result.latency_s >= 0.9
    first, second = server.received
    assert second.at - first.at >= 0.9


def test_retry_after_forms() -> None:
    assert _retry_after("2", 0.5) == 2.0
    assert _retry_after("3600", 0.5) == 60.0
    assert _retry_after(None, 0.5) == 0.5
    assert _retry_after("soon", 0.5) == 0.5
    assert _retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 0.5) == 0.0  # a date in the past
    future = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 10))
    assert 8 <= _retry_after(future, 0.5) <= 10


def test_read_timeout_fails_one_request_and_spares_its_sibling(server: FaultServer) -> None:
    server.add(Fault.slow(1.0), times=None, when="SLOW")
    run = backend(server.base_url, read_timeout=0.3, max_retries=1)
    error = failure(run, request("SLOW one"), request("fast one"))
    slow, fast = error.results
    assert isinstance(slow, BackendError) and isinstance(fast, GenerationResult)
    assert "timed out after 2 attempts" in str(slow) and "read_timeout 0.3 s" in str(slow)
    assert fast.text == "echo: fast one" and fast.batch_size == 2
    assert str(error).startswith("1 of 2 requests failed; timed out")
    assert server.count("SLOW") == 2 and server.count("fast") == 1


def test_dropped_connection_is_retried(server: FaultServer) -> None:
    server.add(Fault.drop())
    [result] = backend(server.base_url).generate([request("q")], "b1")
    assert result.text == "echo: q"
    assert server.count() == 2


def test_connection_dropped_every_time_is_a_connection_error(server: FaultServer) -> None:
    server.add(Fault.drop(), times=None)
    error = failure(backend(server.base_url, max_retries=1), request("q"))
    assert str(error).startswith(f"connection failed to {server.base_url}/chat/completions")
    assert "after 2 attempts" in str(error)
    assert server.count() == 2


def test_malformed_json_fails_at_once_with_an_excerpt(server: FaultServer) -> None:
    server.add(Fault.malformed(), times=None)
    error = failure(backend(server.base_url), request("q"))
    assert str(error).startswith(f"malformed JSON from {server.base_url}/chat/completions")
    assert "this is not json" in str(error)
    assert server.count() == 1


def test_response_without_choices_is_an_error(server: FaultServer) -> None:
    server.add(Fault.status_code(200, body='{"id": "x", "object": "chat.completion"}'))
    error = failure(backend(server.base_url), request("q"))
    assert "unexpected response" in str(error) and "chat.completion" in str(error)


def test_server_down_is_a_connection_error_after_all_attempts() -> None:
    url = down_url()
    run = backend(url, max_retries=2, server="openai")  # no server kind to detect first
    error = failure(run, request("q"))
    assert str(error).startswith(f"connection failed to {url}/chat/completions after 3 attempts")
    assert "refused" in str(error).lower()
    assert run.info()["requests_sent"] == 3

    # Detecting the server kind is the first request: its failure is every item's error.
    detecting = backend(url, max_retries=2)
    error = failure(detecting, request("q"), request("r"))
    assert str(error).startswith(
        f"2 of 2 requests failed; connection failed to {url}/models after 3 attempts"
    )
    assert detecting.info()["requests_sent"] == 0  # no generation request went out


def test_client_error_is_not_retried(server: FaultServer) -> None:
    server.add(Fault.status_code(400, body='{"error": "max_tokens too large"}'), times=None)
    error = failure(backend(server.base_url), request("q"))
    assert str(error) == (
        f"HTTP 400 from {server.base_url}/chat/completions after 1 attempt: "
        '{"error": "max_tokens too large"}'
    )
    assert server.count() == 1


# --- the API key ----------------------------------------------------------------------------


def test_api_key_is_sent_and_never_shown(
    server: FaultServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(KEY_ENV, SECRET)
    caplog.set_level(logging.DEBUG)
    run = backend(server.base_url, api_key_env=KEY_ENV, headers={"X-Team": "eval"})
    [result] = run.generate([request("q")], "b1")
    assert server.received[0].headers["Authorization"] == f"Bearer {SECRET}"
    assert server.received[0].headers["X-Team"] == "eval"

    # A server that echoes the credential in its error body, and one that is down.
    server.add(Fault.status_code(400, body=f'{{"error": "bad key Bearer {SECRET}"}}'))
    echoed = failure(run, request("q"))
    assert "***" in str(echoed)
    down = backend(down_url(), api_key_env=KEY_ENV, max_retries=1)
    refused = failure(down, request("q"), request("r"))

    shown = [
        json.dumps(run.identity()),
        json.dumps(run.info()),
        repr(run),
        str(run.__dict__.get("spec")),
        run.render(request("q").messages),
        json.dumps(result.as_dict()),
        str(echoed),
        repr(echoed),
        *(str(e) for e in echoed.results),
        str(refused),
        *(str(e) for e in refused.results),
        json.dumps(down.info()),
        caplog.text,
    ]
    assert caplog.text  # the retries were logged
    for text in shown:
        assert SECRET not in text
    assert run.info()["api_key_env"] == KEY_ENV


def test_single_request_failure_reads_as_its_own_error(server: FaultServer) -> None:
    server.add(Fault.status_code(404, body="no such model"))
    error = failure(backend(server.base_url), request("q"))
    [only] = error.results
    assert isinstance(only, BackendError) and str(error) == str(only)
    assert isinstance(error, BackendError)  # an unchanged engine still treats it as an error
