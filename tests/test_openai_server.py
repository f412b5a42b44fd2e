"""What the OpenAI-compatible backend learns from the server and sends to it (issue 10, points
4, 8 and 12): the cache identity holds the server's own facts, the decoding settings are sent
under each server kind's names, and an alias's `extra_body` reaches every request."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fault_server import LLAMA_ALIAS, FaultServer, down_url

from pytest_llmeval.backends import (
    BackendError,
    BatchPartiallyFailed,
    GenerationRequest,
    create_backend,
)
from pytest_llmeval.backends.openai_backend import OpenAIBackend
from pytest_llmeval.declare.models import ModelSpec
from pytest_llmeval.declare.seeds import sample_seed
from pytest_llmeval.declare.task import Generation

FAST = {"connect_timeout": 1, "read_timeout": 2, "max_retries": 1, "backoff_s": 0.01}
MESSAGES = [{"role": "user", "content": "what is 2 + 2?"}]


def backend(url: str, **options: Any) -> OpenAIBackend:
    made = create_backend(
        ModelSpec("served", "openai", f"test-model@{url}", options={**FAST, **options}), {}
    )
    assert isinstance(made, OpenAIBackend)
    return made


def ask(run: OpenAIBackend, **settings: Any) -> Any:
    request = GenerationRequest(MESSAGES, Generation(**settings), item_id="t/0001")
    [result] = run.generate([request], "b1")
    return result


@pytest.fixture(params=["openai", "vllm", "llama.cpp"])
def server(request: pytest.FixtureRequest) -> Iterator[FaultServer]:
    with FaultServer(kind=request.param) as running:
        yield running


# --- point 4: the server's facts are part of the cache identity -------------------------------


def test_identity_holds_the_model_entry_and_the_probe_response() -> None:
    with FaultServer(kind="vllm", fingerprint="fp_1") as server:
        run = backend(server.base_url, version="2024-06")
        identity = run.identity()
        assert identity["served"] == {
            # `created` (the time of the call on vLLM and llama.cpp), `object` and
            # `permission` (fresh ids per call) are left out: they change on every call.
            "models_entry": {
                "id": "test-model",
                "owned_by": "vllm",
                "root": "/weights/a",
                "parent": None,
                "max_model_len": 2048,
            },
            "response_model": "test-model",
            "system_fingerprint": "fp_1",
        }
        assert identity["version"] == "2024-06" and identity["server"] == "vllm"
        # Memoized: the engine asks for the identity every window.
        assert run.identity() == identity
        assert server.models_listed == 1 and server.count() == 1
        [probe] = server.received
        assert probe.body["max_tokens"] == 1 and probe.body["temperature"] == 0
        json.dumps(run.info())


def test_llama_cpp_ignores_the_model_name_and_its_alias_and_meta_identify_it() -> None:
    with FaultServer(kind="llama.cpp") as server:
        served = backend(server.base_url).identity()["served"]
    assert served["response_model"] == LLAMA_ALIAS
    assert served["models_entry"]["id"] == LLAMA_ALIAS  # the one model it serves
    assert served["models_entry"]["meta"]["n_params"] == 134515008


def test_a_dead_server_gives_no_identity_and_a_clear_error() -> None:
    url = down_url()
    run = backend(url)
    with pytest.raises(BackendError) as caught:
        run.identity()
    message = str(caught.value)
    assert message.startswith(f"openai backend: cannot read the server's facts from {url}")
    assert "nothing is served from the cache" in message and "\n" not in message
    with pytest.raises(BackendError):  # remembered: no second round of retries per item
        run.identity()
    assert run.info()["served"] is None  # the report still gets its facts


CACHED_TEST = """
def test_ask(llmeval_backend):
    llmeval_backend.generate("what is 2 + 2?")
    print("CACHED", llmeval_backend.last.cached)
"""


def test_relaunched_server_or_new_version_is_not_served_from_the_cache(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_ask=CACHED_TEST)

    def cached(server: FaultServer, version: str | None = None) -> bool:
        pytester.makefile(
            ".toml",
            pyproject=f"""
            [tool.llmeval.models.served]
            backend = "openai"
            model = "test-model@{server.base_url}"
            {f'version = "{version}"' if version else ""}
            """,
        )
        result = pytester.runpytest(
            "--model", "served", "-s", "-W", "ignore::pytest.PytestAssertRewriteWarning"
        )
        result.assert_outcomes(passed=1)
        [line] = [x for x in result.outlines if "CACHED" in x]
        return "CACHED True" in line

    with FaultServer(kind="vllm", fingerprint="fp_1") as server:
        assert not cached(server)
        assert cached(server), "same server, same weights: served from the cache"
        server.root = "/weights/b"  # relaunched with other weights under the same name
        assert not cached(server)
        assert cached(server)
        server.fingerprint = "fp_2"  # same entry, another backend configuration
        assert not cached(server)
        assert not cached(server, version="2")
        assert cached(server, version="2")


# --- point 8: the same explicit settings, under each server's names ---------------------------

SENT = {
    "openai": {},
    "vllm": {"top_k": -1, "repetition_penalty": 1.0},
    "llama.cpp": {"top_k": 0, "repeat_penalty": 1.0},
}


def test_greedy_request_pins_every_setting_the_server_takes(server: FaultServer) -> None:
    result = ask(backend(server.base_url), max_new_tokens=32)
    assert "repeat_penalty" not in result.text  # llama.cpp's own 1.1 did not apply
    standard = {"max_tokens": 32, "temperature": 0.0, "top_p": 1.0}
    standard |= {"frequency_penalty": 0.0, "presence_penalty": 0.0}
    sent = server.received[-1].body
    assert sent == {"model": "test-model", "messages": MESSAGES, **standard, **SENT[server.kind]}
    left = [] if server.kind != "openai" else ["top_k", "repetition_penalty"]
    assert result.decoding == {
        **standard,
        **SENT[server.kind],
        "seed": None,
        "server": server.kind,
        "server_defaults": left,
    }


def test_sampled_request_sends_its_own_derived_seed(server: FaultServer) -> None:
    result = ask(backend(server.base_url), temperature=0.7, seed=7)
    seed = sample_seed(7, "t/0001", 0)
    assert seed != 7 and server.received[-1].body["seed"] == seed
    assert result.decoding["seed"] == seed


def test_non_neutral_settings_go_under_the_servers_names(server: FaultServer) -> None:
    run = backend(server.base_url)
    if server.kind == "openai":
        with pytest.raises(BatchPartiallyFailed) as caught:
            ask(run, top_k=40, repetition_penalty=1.2)
        assert str(caught.value) == (
            "openai backend: the server (kind 'openai') takes no top_k, repetition_penalty; "
            'the task asks top_k=40, repetition_penalty=1.2: set option server = "vllm" or '
            '"llama.cpp" if it accepts them, or pass them in extra_body'
        )
        assert server.count() == 0
        return
    result = ask(run, top_k=40, repetition_penalty=1.2)
    names = {"vllm": "repetition_penalty", "llama.cpp": "repeat_penalty"}
    assert server.received[-1].body["top_k"] == 40
    assert server.received[-1].body[names[server.kind]] == 1.2
    assert result.decoding["server_defaults"] == []


def test_server_option_overrides_detection() -> None:
    with FaultServer(kind="llama.cpp") as server:
        run = backend(server.base_url, server="openai")
        result = ask(run)
        assert server.models_listed == 0  # nothing to detect
        assert result.text.endswith("[repeat_penalty 1.1]")  # left to the server: its 1.1
        assert result.decoding["server_defaults"] == ["top_k", "repetition_penalty"]


def test_bad_server_option_is_named() -> None:
    with pytest.raises(BackendError, match="option 'server' must be one of auto, llama.cpp"):
        backend("http://127.0.0.1:9/v1", server="tgi")


# --- point 12: extra request fields ---------------------------------------------------------


def test_extra_body_reaches_every_request_and_wins() -> None:
    with FaultServer(kind="llama.cpp") as server:
        run = backend(server.base_url, server="openai", extra_body={"repeat_penalty": 1.0})
        result = ask(run)
        assert not result.text.endswith("]")  # 1.0 sent: the server's 1.1 did not apply
        assert server.received[-1].body["repeat_penalty"] == 1.0
        assert result.decoding["repeat_penalty"] == 1.0
        assert result.decoding["server_defaults"] == ["top_k"]
        assert run.identity()["extra_body"] == {"repeat_penalty": 1.0}
        assert server.received[-1].body["repeat_penalty"] == 1.0  # the probe gets it too

        wins = backend(server.base_url, extra_body={"top_k": 5, "repeat_penalty": 1.05})
        result = ask(wins, top_k=40)
        assert server.received[-1].body["top_k"] == 5
        assert result.decoding["top_k"] == 5 and result.decoding["repeat_penalty"] == 1.05


def test_extra_body_changes_the_identity() -> None:
    with FaultServer(kind="llama.cpp") as server:
        plain = backend(server.base_url).identity()
        extra = backend(server.base_url, extra_body={"repeat_penalty": 1.0}).identity()
    assert plain != extra and plain["extra_body"] == {}


@pytest.mark.parametrize("key", ["model", "messages", "prompt"])
def test_extra_body_cannot_replace_the_request_itself(key: str) -> None:
    with pytest.raises(BackendError, match=f"option 'extra_body' may not set {key!r}"):
        backend("http://127.0.0.1:9/v1", extra_body={key: "x"})
