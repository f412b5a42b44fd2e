"""The embedded default model (SmolLM2-135M-Instruct, CPU) on real GSM8K items."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import GSM8K_EVAL, assert_valid_run, shared_data_dir
from pytest_llmeval.backends import GenerationRequest
from pytest_llmeval.declare.models import resolve_model
from pytest_llmeval.declare.task import Generation


@pytest.fixture(scope="module")
def backend():  # type: ignore[no-untyped-def]
    from pytest_llmeval.backends.transformers_backend import (
        TransformersBackend,
        TransformersOptions,
    )

    loaded = TransformersBackend(resolve_model("smollm2-135m"), TransformersOptions())
    yield loaded
    loaded.close()


def request(question: str, max_new_tokens: int = 24) -> GenerationRequest:
    return GenerationRequest(
        messages=[{"role": "user", "content": question}],
        settings=Generation(max_new_tokens=max_new_tokens),
    )


def test_backend_loads_embedded_model_offline_with_chat_template(backend) -> None:  # type: ignore[no-untyped-def]
    info = backend.info()
    assert info["weights_source"] in ("hf-cache", "hub") or info["weights_source"].startswith(
        "gguf:"
    )
    assert info["device"] == "cpu" and info["dtype"] == "float32"
    assert len(info["chat_template_sha256"]) == 16
    backend.generate([request("Hi", 2)], "warm-up")  # the weights load on first use
    info = backend.info()
    assert info["model_loads"] == 1 and info["load_time_s"] is not None
    assert 130e6 < info["parameters"] < 140e6
    rendered = backend.render([{"role": "user", "content": "Hi"}])
    assert rendered.startswith("<|im_start|>system") and rendered.endswith(
        "<|im_start|>assistant\n"
    )


def test_batched_generation_matches_one_by_one(backend) -> None:  # type: ignore[no-untyped-def]
    questions = [
        "What is 2 + 3?",
        "Tom has 12 apples and gives 5 to Ann. How many apples does Tom have left? Explain.",
        "Name a color.",
    ]
    batched = backend.generate([request(q) for q in questions], "t-1")
    alone = [backend.generate([request(q)], f"t-{i + 2}")[0] for i, q in enumerate(questions)]
    # Greedy decoding with left padding must not change what each prompt produces.
    assert [r.text for r in batched] == [r.text for r in alone]
    assert all(r.batch_size == 3 for r in batched)
    assert [r.tokens_in for r in batched] == [r.tokens_in for r in alone]
    for result in batched:
        assert 0 < result.tokens_out <= 24
        assert 0 < result.latency_s <= result.batch_wall_s
        assert result.finish_reason in ("stop", "length")
        assert (result.finish_reason == "length") == (result.tokens_out == 24)


def test_tokens_out_leaves_out_the_end_token(backend) -> None:  # type: ignore[no-untyped-def]
    """One counting rule on every backend: tokens generated, the end-of-sequence token not
    counted (an HTTP server's usage does not count it either)."""
    [result] = backend.generate([request("Name a color.", 24)], "eos-1")
    assert result.finish_reason == "stop", result.text
    # The same greedy generation straight from transformers: its last new token is the EOS.
    encoded = backend.tokenizer(result.prompt, return_tensors="pt", add_special_tokens=False)
    with torch.inference_mode():
        output = backend.model.generate(
            **encoded, max_new_tokens=24, do_sample=False, temperature=None, top_p=None,
            top_k=None, pad_token_id=backend.tokenizer.pad_token_id,
        )  # fmt: skip
    new_tokens = output[0, encoded["input_ids"].shape[1] :].tolist()
    assert new_tokens[-1] in backend.stop_ids
    assert result.tokens_out == len(new_tokens) - 1
    assert result.text == backend.tokenizer.decode(new_tokens[:-1], skip_special_tokens=True)


def test_stop_sequence_cuts_the_response(backend) -> None:  # type: ignore[no-untyped-def]
    free = backend.generate([request("Count from 1 to 10, separated by commas.", 40)], "s-1")[0]
    assert "3" in free.text, free.text
    stop = GenerationRequest(
        messages=[{"role": "user", "content": "Count from 1 to 10, separated by commas."}],
        settings=Generation(max_new_tokens=40, stop=("3",)),
    )
    cut = backend.generate([stop], "s-2")[0]
    assert "3" not in cut.text and free.text.startswith(cut.text)
    assert cut.finish_reason == "stop" and cut.tokens_out < free.tokens_out


def test_gsm8k_items_run_end_to_end_on_the_embedded_model(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_gsm8k=GSM8K_EVAL)
    result = pytester.runpytest(
        "--limit",
        "3",
        f"--llmeval-data-dir={shared_data_dir()}",
        "--llmeval-report",
        "out/report.json",
        "-W",
        "ignore::pytest.PytestAssertRewriteWarning",
        "-v",
    )
    outcomes = result.parseoutcomes()
    assert outcomes.get("errors", 0) == 0, result.stdout.str()
    assert outcomes.get("passed", 0) + outcomes.get("failed", 0) == 4  # 3 items + 1 gate
    report = assert_valid_run(pytester.path / "out")
    items = [
        json.loads(x) for x in (pytester.path / "out" / "items.jsonl").read_text().splitlines()
    ]
    assert [i["id"].rsplit("/", 1)[0] for i in items] == ["gsm8k/test"] * 3
    for item in items:
        assert item["prompt"].startswith("<|im_start|>system")
        assert "#### <number>" in item["prompt"]
        assert item["response"] and item["tokens_out"] > 0 and item["outcome"] in ("pass", "fail")
        assert item["method"] in ("strict", "flexible", "none")
    assert len({i["latency_s"] for i in items}) > 1 or len({i["tokens_out"] for i in items}) == 1
    (load,) = report["model_loads"]
    assert load["model"] == "smollm2-135m" and load["error"] is None
    metrics = report["tasks"]["gsm8k"]["models"]["smollm2-135m"]["metrics"]
    assert metrics["n"] == 3 and metrics["partial"] and metrics["task_rows"] == 1319
    gate = report["gates"][0]
    assert gate["gate"] == "parse_rate>=0.8"
    assert result.ret == (0 if gate["passed"] else 1)
    assert (metrics["generated"], metrics["cached"]) == (3, 0)

    # The same run again: every generation comes from the cache and no model is loaded.
    again = pytester.runpytest(
        "--limit",
        "3",
        f"--llmeval-data-dir={shared_data_dir()}",
        "--llmeval-report",
        "again/report.json",
        "-W",
        "ignore::pytest.PytestAssertRewriteWarning",
    )
    assert again.ret == result.ret
    report2 = json.loads(Path(pytester.path / "again" / "report.json").read_text())
    metrics2 = report2["tasks"]["gsm8k"]["models"]["smollm2-135m"]["metrics"]
    assert (metrics2["generated"], metrics2["cached"]) == (0, 3)
    assert report2["model_loads"][0]["model_loads"] == 0
    items2 = [
        json.loads(x) for x in (pytester.path / "again" / "items.jsonl").read_text().splitlines()
    ]
    assert [(i["id"], i["response"], i["outcome"]) for i in items2] == [
        (i["id"], i["response"], i["outcome"]) for i in items
    ]


def test_out_of_memory_halves_the_batch_and_remembers(backend, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # Only the GPU's out-of-memory error is simulated: batches above 2 "do not fit".
    real_generate = backend.model.generate
    sizes: list[int] = []

    def generate_or_oom(**kwargs):  # type: ignore[no-untyped-def]
        sizes.append(kwargs["input_ids"].shape[0])
        if kwargs["input_ids"].shape[0] > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return real_generate(**kwargs)

    monkeypatch.setattr(backend.model, "generate", generate_or_oom)
    monkeypatch.setattr(backend, "batch_limit", None)
    questions = [f"What is {i} + {i}?" for i in range(5)]
    results = backend.generate([request(q, 4) for q in questions], "oom")
    assert len(results) == 5 and all(r.tokens_out > 0 for r in results)
    assert backend.batch_limit == 2
    assert sizes == [5, 2, 2, 1]
    # Still one batch to the engine (one energy window): one id, the whole size and wall.
    assert {(r.batch_id, r.batch_size) for r in results} == {("oom", 5)}
    sizes.clear()
    backend.generate([request(q, 4) for q in questions], "after")
    assert max(sizes) == 2, "the size that worked is used from then on"


def test_xdist_cpu_workers_share_the_cores(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import os

    from pytest_llmeval.backends.transformers_backend import _share_cpu_threads

    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "2")
        _share_cpu_threads()
        assert torch.get_num_threads() == max(1, (os.cpu_count() or 1) // 2)
    finally:
        torch.set_num_threads(before)


def test_a_failed_weights_load_is_not_retried(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from pytest_llmeval.backends import BackendError, hf_model
    from pytest_llmeval.backends import transformers_backend as module
    from pytest_llmeval.backends.weights import Weights

    fresh = module.TransformersBackend(resolve_model("smollm2-135m"), module.TransformersOptions())
    fresh.weights = Weights(path="/nonexistent/weights", source="test")
    calls = []
    real_load = hf_model.AutoModelForCausalLM.from_pretrained

    def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(args)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(hf_model.AutoModelForCausalLM, "from_pretrained", counted)
    for _ in range(3):
        with pytest.raises(BackendError, match="cannot load .* /nonexistent/weights"):
            fresh.generate([request("Hi", 2)], "fail")
    assert len(calls) == 1
