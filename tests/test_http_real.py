"""The HTTP backend against a real OpenAI-compatible server (`transformers serve` on loopback
serving the embedded model), and agreement between local transformers and that server."""

from __future__ import annotations

import pytest
from served_model import embedded_model_dir

from conftest import REPO_ROOT, assert_valid_run, shared_data_dir
from pytest_llmeval.backends import GenerationRequest
from pytest_llmeval.backends.openai_backend import OpenAIBackend, OpenAIOptions
from pytest_llmeval.declare.models import resolve_model
from pytest_llmeval.declare.task import Generation

SECRET = "sk-test-7f3a9c1e5b2d4680aa11"  # a made-up key that must never be written anywhere


@pytest.fixture(scope="module")
def server_url(embedded_server_url: str) -> str:
    return embedded_server_url


def test_chat_completions_from_the_real_server(server_url: str) -> None:
    # The server is pinned to one model and wants its path as the model name.
    spec = resolve_model(f"openai:{embedded_model_dir()}@{server_url}")
    backend = OpenAIBackend(spec, OpenAIOptions())
    requests = [
        GenerationRequest([{"role": "user", "content": q}], Generation(max_new_tokens=16))
        for i, q in enumerate(["What is 2 + 2?", "Name a primary color."])
    ]
    results = backend.generate(requests, "http-1")
    assert [r.batch_size for r in results] == [2, 2]
    for result in results:
        assert result.text.strip()
        assert result.tokens_in > 10 and 0 < result.tokens_out <= 16
        assert result.finish_reason in ("stop", "length")
        assert 0 < result.latency_s <= result.batch_wall_s
    assert backend.info()["token_count_method"] == "usage"
    backend.close()


def test_completions_with_the_chat_template_answer_as_chat_does(server_url: str) -> None:
    # Issue 10, point 11: the completions endpoint gets the model's own chat template (found
    # from the served model's local directory) and its end-of-turn stop token, so a greedy
    # completion is the chat endpoint's answer, not a runaway transcript.
    model = embedded_model_dir()
    chat = OpenAIBackend(resolve_model(f"openai:{model}@{server_url}"), OpenAIOptions())
    completions = OpenAIBackend(
        resolve_model(f"openai:{model}@{server_url}"), OpenAIOptions(endpoint="completions")
    )
    messages = [{"role": "user", "content": "Name a primary color."}]
    request = GenerationRequest(messages, Generation(max_new_tokens=48))
    [by_chat] = chat.generate([request], "chat-1")
    [by_completion] = completions.generate([request], "completions-1")
    assert by_completion.prompt.endswith("<|im_start|>assistant\n")
    assert by_completion.decoding is not None and "<|im_end|>" in by_completion.decoding["stop"]
    assert by_completion.text.strip() == by_chat.text.strip()
    assert "<|im_start|>" not in by_completion.text and "user" not in by_completion.text.lower()
    assert by_completion.tokens_out == by_chat.tokens_out
    # A generic server: the standard fields only (it rejects others with HTTP 422).
    assert by_chat.decoding is not None and by_chat.decoding["server"] == "openai"
    assert by_chat.decoding["server_defaults"] == ["top_k", "repetition_penalty"]
    served = completions.identity()["served"]
    assert served["response_model"].startswith(model)  # e.g. "<dir>@main"
    chat.close()
    completions.close()


def test_local_and_served_model_agree_on_toxicity(
    server_url: str, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMEVAL_TEST_KEY", SECRET)
    pytester.makepyfile(test_toxicity=(REPO_ROOT / "evals" / "test_toxicity.py").read_text())
    pytester.makefile(
        ".toml",
        pyproject=f"""
        [tool.llmeval.models.served]
        backend = "openai"
        model = "{embedded_model_dir()}@{server_url}"
        api_key_env = "LLMEVAL_TEST_KEY"
        concurrency = 4
        """,
    )
    result = pytester.runpytest_subprocess(
        "--limit",
        "8",
        f"--llmeval-data-dir={shared_data_dir()}",
        "--compare-backend",
        "served",
        "--llmeval-report",
        "out/report.json",
        "--junitxml",
        "out/junit.xml",
        "-p",
        "no:cacheprovider",
        "--html",
        "out/report.html",
        "--self-contained-html",
        "--gate",
        "toxicity:agreement>=0.95",
        "-rA",
    )
    report = assert_valid_run(pytester.path / "out")
    metrics = report["tasks"]["toxicity"]["models"]["smollm2-135m"]["metrics"]
    assert metrics["n"] == 8 and metrics["n_errors"] == 0, result.stdout.str()[-3000:]
    # Same weights, same chat template, greedy decoding: measured identical responses on all 8
    # items (agreement 1.0, response Indel similarity 1.0).
    assert metrics["agreement"] >= 0.95, metrics
    assert metrics["response_indel_similarity"] >= 0.95, metrics
    assert metrics["assessment"]["overall"] == "PASS"
    assert result.ret == (0 if all(g["passed"] for g in report["gates"]) else 1)
    # The key went over the wire only: nowhere in the outputs.
    outputs = [result.stdout.str(), result.stderr.str()]
    outputs += [
        p.read_text(errors="replace")
        for p in (pytester.path / "out").iterdir()
        if p.suffix != ".parquet"
    ]
    outputs += [(pytester.path / "out" / "agreement.parquet").read_bytes().decode("latin-1")]
    assert all(SECRET not in text for text in outputs)
