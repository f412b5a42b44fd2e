"""Bad input about size and loading, as whole pytest runs: a prompt longer than the model's
context, a model directory that is empty or has a broken config. Each ends in a one-line
message naming the input and the fix, no traceback, a non-zero exit, and nothing finished lost.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from conftest import TASK_MODULE, mini_rows, run_evals

CONTEXT = 128  # the tiny model's max_position_embeddings


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weights one-layer Llama with a 128-token context and the default model's
    tokenizer and chat template: loads and generates in well under a second on the CPU."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from pytest_llmeval.backends.weights import embedded_checkpoint

    folder = tmp_path_factory.mktemp("tiny-model")
    tokenizer = AutoTokenizer.from_pretrained(embedded_checkpoint())
    tokenizer.save_pretrained(folder)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=CONTEXT,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


def run_model(pytester: pytest.Pytester, model: Path | str, *args: str) -> pytest.RunResult:
    """The project's evals on `model` (a directory), with its own generation cache."""
    return pytester.runpytest(
        f"--model={model}",
        "--llmeval-data-dir=data",
        "--llmeval-report",
        "out/report.json",
        "--llmeval-cache-dir=gencache",
        "-W",
        "ignore::pytest.PytestAssertRewriteWarning",
        *args,
    )


def items_of(pytester: pytest.Pytester) -> list[dict[str, Any]]:
    lines = (pytester.path / "out" / "items.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def cached_generations(folder: Path) -> int:
    with sqlite3.connect(folder / "gencache" / "generations.sqlite3") as conn:
        count: int = conn.execute("SELECT COUNT(*) FROM generations").fetchone()[0]
    return count


def no_traceback(result: pytest.RunResult) -> None:
    output = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in output and "INTERNALERROR" not in output


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    """The mini task (no gates: only errors decide the exit) over 4 rows."""
    pytester.makepyfile(test_mini=TASK_MODULE.replace('gates=["accuracy >= 0.5"],', ""))
    (pytester.path / "data").mkdir()
    (pytester.path / "data" / "mini.jsonl").write_text(mini_rows(n=4))
    return pytester


def test_prompt_longer_than_the_context_is_an_item_error_before_generation(
    project: pytest.Pytester, tiny_model: Path
) -> None:
    rows = mini_rows(n=4).splitlines()
    # A 2 KB question: ~400 tokens against a 128-token context (a 1 MB one ran away in memory).
    rows[2] = json.dumps({"question": "1 + 1 " + "and " * 500, "answer": "2", "kind": "odd"})
    (project.path / "data" / "mini.jsonl").write_text("\n".join(rows) + "\n")

    result = run_model(project, tiny_model, "-v")

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "*mini/test/0002 ERROR*",
            f"*PromptTooLong: prompt is * tokens, model context is {CONTEXT} (max_new_tokens 16): "
            "shorten the prompt or use a model with a longer context",
        ]
    )
    no_traceback(result)
    items = items_of(project)
    assert [i["outcome"] == "error" for i in items] == [False, False, True, False]
    assert all(i["response"] is not None for i in items if i["outcome"] != "error")
    assert cached_generations(project.path) == 3  # the three that fit were generated and kept


def test_prompt_plus_max_new_tokens_over_the_context_says_what_fits(
    project: pytest.Pytester, tiny_model: Path
) -> None:
    # Prompts of ~30 tokens fit the 128-token context, but not with 200 new tokens.
    source = TASK_MODULE.replace('gates=["accuracy >= 0.5"],', "").replace(
        "max_new_tokens=16", "max_new_tokens=200"
    )
    project.makepyfile(test_mini=source)

    result = run_model(project, tiny_model)

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(errors=4)
    result.stdout.fnmatch_lines(
        [
            f"*PromptTooLong: prompt is * tokens, model context is {CONTEXT} "
            "(max_new_tokens 200): shorten the prompt or lower max_new_tokens to *"
        ]
    )
    no_traceback(result)
    assert [i["outcome"] for i in items_of(project)] == ["error"] * 4
    report = json.loads((project.path / "out" / "report.json").read_text())
    assert report["model_loads"][0]["model_loads"] == 0  # refused before loading any weights


def test_empty_model_directory_is_reported_once_with_the_items_it_took(
    project: pytest.Pytester,
) -> None:
    (project.path / "emptymodel").mkdir()

    result = run_model(project, "./emptymodel")

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(errors=4)
    folder = (project.path / "emptymodel").resolve()
    result.stdout.fnmatch_lines(
        [
            "*llmeval summary*",
            "ERROR model ./emptymodel did not load (4 items errored): BackendError: "
            f"no model files in {folder}: expected config.json and *.safetensors*",
        ]
    )
    no_traceback(result)
    # The whole error twice (the first item, the summary); the other items refer to it.
    # Counted before pytest's short summary, which truncates lines only outside CI.
    before_short_summary = result.stdout.str().split("short test summary info")[0]
    assert before_short_summary.count("as save_pretrained or huggingface-cli download") == 2
    result.stdout.fnmatch_lines(["*did not load (its error is in the llmeval summary)*"])
    items = items_of(project)
    assert [i["outcome"] for i in items] == ["error"] * 4
    assert all("model ./emptymodel did not load" in i["error"] for i in items)
    (load,) = json.loads((project.path / "out" / "report.json").read_text())["model_loads"]
    assert load["items_errored"] == 4 and "no model files in" in load["error"]


def test_broken_model_config_is_one_line_once(project: pytest.Pytester, tiny_model: Path) -> None:
    broken = project.path / "broken"
    broken.mkdir()
    for path in tiny_model.iterdir():
        (broken / path.name).write_bytes(path.read_bytes())
    (broken / "config.json").write_text('{"model_type": "llama", "hidden_size": ')  # cut off

    result = run_model(project, broken)

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(errors=4)
    result.stdout.fnmatch_lines(
        [f"ERROR model {broken} did not load (4 items errored): BackendError: cannot read the "
         f"config of {broken} in {broken}: *config.json* is not a valid JSON file*"]
    )  # fmt: skip
    no_traceback(result)


def test_default_model_refuses_a_megabyte_prompt_without_loading_weights() -> None:
    from pytest_llmeval.backends.context import PromptTooLong
    from pytest_llmeval.backends.transformers_backend import (
        TransformersBackend,
        TransformersOptions,
    )
    from pytest_llmeval.declare.models import resolve_model
    from pytest_llmeval.declare.task import Generation

    backend = TransformersBackend(resolve_model("smollm2-135m"), TransformersOptions())
    prompt = backend.render([{"role": "user", "content": "word " * 200_000}])  # 1 MB
    with pytest.raises(PromptTooLong, match=r"model context is 8192 \(max_new_tokens 16\)"):
        backend.check_prompt(prompt, Generation(max_new_tokens=16))
    assert backend._model is None


@pytest.mark.parametrize(
    ("prompt", "new", "message"),
    [
        (100, 28, None),  # exactly the context: fits
        (100, 29, "prompt is 100 tokens, model context is 128 (max_new_tokens 29): "
                  "shorten the prompt or lower max_new_tokens to 28"),
        (128, 1, "prompt is 128 tokens, model context is 128 (max_new_tokens 1): "
                 "shorten the prompt or use a model with a longer context"),
    ],
)  # fmt: skip
def test_check_fits_counts_prompt_and_new_tokens(prompt: int, new: int, message: str) -> None:
    from pytest_llmeval.backends.context import PromptTooLong, check_fits

    if message is None:
        check_fits(prompt, 128, new)
        return
    with pytest.raises(PromptTooLong) as raised:
        check_fits(prompt, 128, new)
    assert str(raised.value) == message


def test_context_length_ignores_the_no_limit_sentinel() -> None:
    from types import SimpleNamespace

    from pytest_llmeval.backends.context import context_length

    tokenizer = SimpleNamespace(model_max_length=int(1e30))
    assert context_length(SimpleNamespace(max_position_embeddings=8192), tokenizer) == 8192
    assert context_length(SimpleNamespace(n_positions=1024), SimpleNamespace()) == 1024
    short = SimpleNamespace(model_max_length=512)
    assert context_length(SimpleNamespace(max_position_embeddings=8192), short) == 512
    assert context_length(SimpleNamespace(), tokenizer) is None


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["no-xdist", "xdist"])
def test_corrupt_cache_is_moved_aside_once_and_rebuilt(
    evalproject: pytest.Pytester, workers: list[str]
) -> None:
    cache = evalproject.path / "gencache"
    cache.mkdir()
    (cache / "generations.sqlite3").write_bytes(b"not a database " * 100)
    args = ["--llmeval-cache-dir=gencache", "-p", "no:randomly", *workers]

    result = run_evals(evalproject, *args)

    assert result.ret == pytest.ExitCode.OK  # nothing about the results is in doubt
    result.assert_outcomes(passed=11)
    (moved,) = cache.glob("generations.sqlite3.corrupt-*")
    result.stdout.fnmatch_lines(
        [
            f"*CacheCorruptWarning: generation cache database {cache / 'generations.sqlite3'} "
            f"was corrupt (DatabaseError: file is not a database); moved it to {moved} and "
            "started a new one"
        ]
    )
    assert result.stdout.str().count("CacheCorruptWarning") == 1
    no_traceback(result)
    assert cached_generations(evalproject.path) == 10

    again = run_evals(evalproject, *args)

    assert again.ret == pytest.ExitCode.OK
    again.stdout.no_fnmatch_line("*Cache*Warning*")
    assert all(i["cached"] for i in items_of(evalproject))


def test_vllm_checks_prompts_against_max_model_len(
    tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fake_vllm

    from pytest_llmeval.backends.context import PromptTooLong
    from pytest_llmeval.backends.options import parse_options
    from pytest_llmeval.backends.vllm_backend import VLLMBackend, VLLMOptions
    from pytest_llmeval.declare.models import ModelSpec
    from pytest_llmeval.declare.task import Generation

    fake_vllm.install(monkeypatch)

    def backend(**options: Any) -> VLLMBackend:
        spec = ModelSpec(name="m", backend="vllm", model_id=str(tiny_model), options=options)
        return VLLMBackend(spec, parse_options(VLLMOptions, spec, {}))

    default, short = backend(), backend(max_model_len=40)
    prompt = default.render([{"role": "user", "content": "and " * 20}])  # ~50 tokens
    default.check_prompt(prompt, Generation(max_new_tokens=16))  # the config's 128 fits
    with pytest.raises(PromptTooLong, match=r"model context is 40 \(max_new_tokens 16\)"):
        short.check_prompt(prompt, Generation(max_new_tokens=16))
    # Once the engine runs, its own max_model_len decides.
    default.load()
    engine_config = SimpleNamespace(model_config=SimpleNamespace(max_model_len=60))
    default.engine.llm_engine = engine_config
    with pytest.raises(PromptTooLong, match=r"model context is 60 \(max_new_tokens 16\)"):
        default.check_prompt(prompt, Generation(max_new_tokens=16))


VLLM_TOO_LONG = json.dumps(
    {
        "object": "error",
        "message": "This model's maximum context length is 2048 tokens. However, you requested "
        "2112 tokens (2096 in the messages, 16 in the completion). Please reduce the length of "
        "the messages or completion.",
        "type": "BadRequestError",
        "param": None,
        "code": 400,
    }
)


def test_server_refusing_a_long_prompt_is_one_clear_item_error(
    evalproject: pytest.Pytester,
) -> None:
    from fault_server import Fault, FaultServer

    rows = mini_rows(n=4).splitlines()
    rows[1] = json.dumps({"question": "1 + 1 LONG", "answer": "2", "kind": "odd"})
    (evalproject.path / "data" / "mini.jsonl").write_text("\n".join(rows) + "\n")
    with FaultServer(kind="vllm") as server:
        server.add(Fault.status_code(400, VLLM_TOO_LONG), times=None, when="LONG")
        result = evalproject.runpytest(
            f"--model=openai:test-model@{server.base_url}",
            "--llmeval-data-dir=data",
            "--llmeval-report",
            "out/report.json",
            "--llmeval-cache-dir=gencache",
            "-W",
            "ignore::pytest.PytestAssertRewriteWarning",
        )
        assert server.count(when="LONG") == 1  # a refusal is not retried

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            f"*HTTP 400 from {server.base_url}/chat/completions after 1 attempt: This model's "
            "maximum context length is 2048 tokens. However, you requested 2112 tokens (2096 in "
            "the messages, 16 in the completion). Please reduce the length of the messages or "
            "completion. (the prompt and max_new_tokens 16 do not fit the served model's "
            "context: shorten the prompt or lower max_new_tokens)"
        ]
    )
    no_traceback(result)
    assert [i["outcome"] == "error" for i in items_of(evalproject)] == [False, True, False, False]
    assert cached_generations(evalproject.path) == 3
