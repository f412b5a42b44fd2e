"""A server that is down fails fast (issue 11, point 4): after `unreachable_after` requests in
a row fail to connect, each batch first checks GET /models once; while that fails, the batch's
items fail at once with one message, and when the server answers again the run resumes.
Counted in attempts and health checks, never in seconds."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest
from fault_server import FaultServer, down_url

from pytest_llmeval.backends import (
    BackendError,
    BatchPartiallyFailed,
    GenerationRequest,
    GenerationResult,
    create_backend,
)
from pytest_llmeval.backends.openai_backend import OpenAIBackend
from pytest_llmeval.declare.models import ModelSpec
from pytest_llmeval.declare.task import Generation

FAST = {"connect_timeout": 1, "read_timeout": 2, "max_retries": 2, "backoff_s": 0.01}


def backend(url: str, **options: Any) -> OpenAIBackend:
    spec = ModelSpec("served", "openai", f"test-model@{url}", options={**FAST, **options})
    made = create_backend(spec, {})
    assert isinstance(made, OpenAIBackend)
    return made


def outcomes(run: OpenAIBackend, *questions: str) -> Sequence[GenerationResult | BaseException]:
    """One batch of `questions`: each request's result or error, in order."""
    batch = [GenerationRequest([{"role": "user", "content": q}], Generation()) for q in questions]
    try:
        return run.generate(batch, "b")
    except BatchPartiallyFailed as failed:
        return failed.results


def unreachable(url: str) -> str:
    """The start of the fail-fast message for a server at `url`."""
    return f"server {url} unreachable: "


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


def test_dead_server_costs_retries_only_until_it_is_known_down() -> None:
    url = down_url()
    run = backend(url, server="openai", unreachable_after=3)  # no kind to detect first
    errors = [outcomes(run, f"question {i}")[0] for i in range(10)]
    assert all(isinstance(e, BackendError) for e in errors)
    # Three requests in a row spend their retries (3 attempts each) ...
    for error in errors[:3]:
        assert str(error).startswith(f"connection failed to {url}/chat/completions after 3")
    # ... then each batch costs one health check and its items fail at once, saying why.
    assert run.info()["requests_sent"] == 9
    assert run.info()["health_checks"] == 7
    assert run.info()["not_run_server_down"] == 7
    messages = {str(e) for e in errors[3:]}
    assert len(messages) == 1, "one message, the same for every item not run"
    [message] = messages
    assert message.startswith(unreachable(url)) and "refused" in message.lower()
    assert "not run" in message and "cache" in message and "\n" not in message


def test_whole_batch_fails_at_once_and_the_server_coming_back_resumes() -> None:
    url = down_url()
    run = backend(url, server="openai", unreachable_after=2, concurrency=4)
    first = outcomes(run, "a", "b", "c", "d")  # four requests fail to connect together
    assert all(str(e).startswith("connection failed") for e in first)
    assert run.info()["requests_sent"] == 12
    second = outcomes(run, "e", "f", "g", "h")
    assert all(str(e).startswith(unreachable(url)) for e in second)
    assert (run.info()["requests_sent"], run.info()["health_checks"]) == (12, 1)

    with FaultServer(port=port_of(url)) as server:  # back, on the same address
        back = outcomes(run, "i", "j")
        assert [r.text for r in back if isinstance(r, GenerationResult)] == ["echo: i", "echo: j"]
        assert run.info()["health_checks"] == 2  # the check that found it back
        again = outcomes(run, "k")
        assert isinstance(again[0], GenerationResult)
        assert run.info()["health_checks"] == 2  # up again: no more checks
        assert server.count() == 3


def test_one_success_resets_the_count_of_failures_in_a_row() -> None:
    url = down_url()
    run = backend(url, server="openai", unreachable_after=2)
    outcomes(run, "a")  # one failure: not yet down
    with FaultServer(port=port_of(url)) as server:
        assert isinstance(outcomes(run, "b")[0], GenerationResult)
        server.kill()  # its kept-alive connection too
    [error] = outcomes(run, "c")  # one failure again, not two in a row
    assert str(error).startswith("connection failed")
    assert run.info()["health_checks"] == 0


def test_server_down_at_start_fails_each_item_at_once_and_resumes_when_back() -> None:
    url = down_url()
    run = backend(url)  # the kind is detected from GET /models, the first request
    with pytest.raises(BackendError, match="cannot read the server's facts"):
        run.identity()
    for _ in range(3):
        with pytest.raises(BackendError) as caught:
            run.identity()
        assert str(caught.value).startswith(unreachable(url))
    assert run.info()["health_checks"] == 3
    with FaultServer(kind="vllm", port=port_of(url)):
        assert run.identity()["server"] == "vllm"
        assert isinstance(outcomes(run, "a")[0], GenerationResult)


def test_zero_turns_the_check_off_and_a_bad_value_is_named() -> None:
    url = down_url()
    run = backend(url, server="openai", max_retries=1, unreachable_after=0)
    for i in range(4):
        assert str(outcomes(run, f"q{i}")[0]).startswith("connection failed")
    assert (run.info()["requests_sent"], run.info()["health_checks"]) == (8, 0)
    with pytest.raises(BackendError, match="option 'unreachable_after' must be an integer >= 0"):
        backend(url, unreachable_after=-1)


# --- a whole run: the server killed mid-run, then a rerun with it back -----------------------

TASK = """
from pytest_llmeval import ChatPrompt, DataSource, Generation, Task, scoring
mini = Task(name="mini", data=DataSource(files="mini.jsonl"), prompt=ChatPrompt(user="{question}"),
            target="answer", scorer=scoring.numeric, generation=Generation(max_new_tokens=8))
"""
ROWS = 24


def project(pytester: pytest.Pytester, url: str) -> None:
    pytester.makepyfile(test_mini=TASK)
    (pytester.path / "data").mkdir(exist_ok=True)
    # Prompts of one length keep the data order in batches (longest first is stable); the
    # server echoes the prompt, so each answer is the row's number.
    rows = [{"question": f"0 + {10 + i}", "answer": str(10 + i)} for i in range(ROWS)]
    (pytester.path / "data" / "mini.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    pytester.makefile(
        ".toml",
        pyproject=f"""
        [tool.llmeval.models.served]
        backend = "openai"
        model = "test-model@{url}"
        concurrency = 4
        max_retries = 1
        backoff_s = 0.01
        connect_timeout = 1
        """,
    )


def run(pytester: pytest.Pytester, *plugins: object) -> pytest.RunResult:
    return pytester.runpytest(
        "--model=served",
        "--llmeval-data-dir=data",
        "--llmeval-report=out/report.json",
        "-W",
        "ignore::pytest.PytestAssertRewriteWarning",
        plugins=list(plugins),
    )


def items(pytester: pytest.Pytester) -> dict[str, dict[str, Any]]:
    lines = (pytester.path / "out" / "items.jsonl").read_text().splitlines()
    return {r["id"]: r for r in map(json.loads, lines)}


def test_server_killed_mid_run_fails_fast_and_a_rerun_generates_only_the_rest(
    pytester: pytest.Pytester,
) -> None:
    with FaultServer() as server:
        url = server.base_url
        project(pytester, url)
        # The whole share goes through the pool in the first item's setup: the server dies
        # right after its probe answer and 8 generations, whatever was in flight then.
        server.kill_after_answers = 1 + 8
        result = run(pytester)
    # The 8 answered items pass; the requests in flight at the kill and those sent before
    # 3 connection failures in a row (the default) spent their retries; the rest failed
    # at once, one health check per `concurrency` (4) of them.
    result.assert_outcomes(passed=8, errors=16)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert "Traceback" not in result.stdout.str()
    result.stdout.fnmatch_lines([f"*server {url} unreachable: *not run*"])
    first = items(pytester)
    assert sorted(r["outcome"] for r in first.values()) == ["error"] * 16 + ["pass"] * 8
    fast = [r for r in first.values() if unreachable(url) in (r["error"] or "")]
    assert len(fast) >= 16 - 2 * 4
    [load] = json.loads((pytester.path / "out" / "report.json").read_text())["model_loads"]
    info = load["backend_info"]
    retried = 16 - len(fast)
    assert info["requests_sent"] <= 8 + 2 * retried  # each retried: its 2 attempts at most
    assert info["health_checks"] == -(-len(fast) // 4)
    assert info["not_run_server_down"] == len(fast)

    with FaultServer(port=port_of(url)) as back:  # the same server, back on its address
        rerun = run(pytester)
        rerun.assert_outcomes(passed=ROWS)
        assert rerun.ret == pytest.ExitCode.OK
        generated = [r.body for r in back.received if r.body.get("max_tokens") == 8]
    second = items(pytester)
    finished = {i for i, r in first.items() if r["outcome"] == "pass"}
    assert {i for i, r in second.items() if r["cached"]} == finished
    assert len(generated) == ROWS - len(finished)  # only the rest went to the server
