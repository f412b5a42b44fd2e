"""Secrets stay secret (issue 11, point 12): key-like values are masked in argv, model names,
backend facts and records, the cache key does not depend on them, and a key sent over plain
http:// to another machine warns once."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest
from fault_server import FaultServer

from pytest_llmeval.backends import create_backend
from pytest_llmeval.backends.openai_backend import OpenAIBackend
from pytest_llmeval.declare.models import ModelSpec, resolve_model
from pytest_llmeval.declare.redact import is_secret_name, redact, redact_argv, redact_mapping

KEY_ENV = "LLMEVAL_TEST_SECRET_KEY"


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        *[(n, True) for n in ["api_key", "key", "access_token", "sig", "--hf-token", "apikey"]],
        *[(n, True) for n in ["X-Api-Key", "Authorization", "client_secret", "password"]],
        *[(n, False) for n in ["max_tokens", "max_new_tokens", "tokenizer", "api-version"]],
        *[(n, False) for n in ["top_k", "--llmeval-report", "keep", "model"]],
    ],
)
def test_secret_names(name: str, secret: bool) -> None:
    assert is_secret_name(name) is secret


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (
            "openai:m@https://h/v1?api_key=s1&api-version=2024-06&sig=s2",
            "openai:m@https://h/v1?api_key=***&api-version=2024-06&sig=***",
        ),
        ("https://h/v1?access_token=s1;token=s2", "https://h/v1?access_token=***;token=***"),
        ("--my-api-key=s1", "--my-api-key=***"),
        ("--model=openai:m@http://h/v1?key=s1", "--model=openai:m@http://h/v1?key=***"),
        ("hf_token=s1", "hf_token=***"),
        ("https://user:s1@h/v1", "https://user:***@h/v1"),
        ("mini:accuracy>=0.5", "mini:accuracy>=0.5"),
        ("--llmeval-report=out/report.json", "--llmeval-report=out/report.json"),
        ("max_tokens=5", "max_tokens=5"),
    ],
)
def test_redact_masks_key_like_values_only(text: str, shown: str) -> None:
    assert redact(text) == shown


def test_redact_argv_masks_both_option_forms_and_values_in_urls() -> None:
    argv = ["pytest", "--hf-token", "s1", "--api-key=s2", "--model", "openai:m@http://h?key=s3"]
    argv += ["-o", "my_token=s4", "--gate", "m:accuracy>=0.5", "--tb", "short", "--token"]
    assert redact_argv(argv) == [
        "pytest", "--hf-token", "***", "--api-key=***", "--model", "openai:m@http://h?key=***",
        "-o", "my_token=***", "--gate", "m:accuracy>=0.5", "--tb", "short", "--token",
    ]  # fmt: skip


def test_redact_mapping_masks_key_like_keys_at_any_depth() -> None:
    shown = redact_mapping({"api_key": "s1", "max_tokens": 5, "auth": {"token": "s2", "n": 1}})
    assert shown == {"api_key": "***", "max_tokens": 5, "auth": "***"}
    assert redact_mapping({"opts": {"token": "s2", "n": 1}}) == {"opts": {"token": "***", "n": 1}}


def test_model_name_is_masked_and_the_backend_still_gets_the_key() -> None:
    spec = resolve_model("openai:m@https://h/v1?api_key=s3cret&api-version=1")
    assert spec.name == "openai:m@https://h/v1?api_key=***&api-version=1"
    assert spec.model_id == "m@https://h/v1?api_key=s3cret&api-version=1"


def make(url: str, **options: Any) -> OpenAIBackend:
    made = create_backend(ModelSpec("served", "openai", f"m@{url}", options=options), {})
    assert isinstance(made, OpenAIBackend)
    return made


def test_key_over_plain_http_to_another_host_warns_once_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-abc")
    with pytest.warns(UserWarning, match="over plain http://") as seen:
        make("http://gpu-box.example:8000/v1", api_key_env=KEY_ENV)
        make("http://gpu-box.example:8000/v1", api_key_env=KEY_ENV)  # the same host: once
        make("http://gpu-box2.example/v1?key=abc")  # a key in the URL counts too
    assert [str(w.message).split(" to ")[1].split()[0] for w in seen] == [
        "gpu-box.example",
        "gpu-box2.example",
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make("https://gpu-box3.example/v1", api_key_env=KEY_ENV)  # encrypted
        make("http://127.0.0.1:8000/v1", api_key_env=KEY_ENV)  # this machine
        make("http://localhost:8000/v1", api_key_env=KEY_ENV)
        make("http://gpu-box4.example/v1")  # no key at all


def test_query_parameters_go_with_every_request_and_stay_out_of_facts() -> None:
    with FaultServer(kind="llama.cpp") as server:
        run = make(f"{server.base_url}?api-version=7&key=s3cret", extra_body={"token": "s4"})
        identity = run.identity()
        assert identity["base_url"] == f"{server.base_url}?api-version=7&key=***"
        assert identity["extra_body"] == {"token": "***"}
        assert "s3cret" not in json.dumps([identity, run.info(), repr(run)])
        assert server.received[0].path == "/v1/chat/completions?api-version=7&key=s3cret"
        assert server.received[0].body["token"] == "s4"  # sent: the user asked for it


# --- a whole run: every file it writes, grepped for each secret -----------------------------

SECRETS = {
    "url": "sk-url-Q7wTz3",
    "env": "sk-env-P4mRx8",
    "body": "sk-body-L2nVc5",
    "cli_url": "sk-cli-H9kDj1",
    "space": "hf-space-B6yGt0",
    "equals": "sk-eq-W3sFq7",
}
TASK = """
from pytest_llmeval import ChatPrompt, DataSource, Generation, Task, scoring
mini = Task(name="mini", data=DataSource(files="mini.jsonl"), prompt=ChatPrompt(user="{question}"),
            target="answer", scorer=scoring.numeric, generation=Generation(max_new_tokens=8))
"""
CONFTEST = """
def pytest_addoption(parser):
    parser.addoption("--hf-token")
    parser.addoption("--my-api-key")
"""


def secret_run(pytester: pytest.Pytester, url: str, secrets: dict[str, str]) -> pytest.RunResult:
    pytester.makepyfile(test_mini=TASK, conftest=CONFTEST)
    (pytester.path / "data").mkdir(exist_ok=True)
    rows = [{"question": f"0 + {10 + i}", "answer": str(10 + i)} for i in range(4)]
    (pytester.path / "data" / "mini.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    pytester.makefile(
        ".toml",
        pyproject=f"""
        [tool.llmeval.models.served]
        backend = "openai"
        model = "test-model@{url}?api-version=7&api_key={secrets["url"]}"
        api_key_env = "{KEY_ENV}"
        extra_body = {{ access_token = "{secrets["body"]}", repeat_penalty = 1.0 }}
        """,
    )
    args = ["--model=served", f"--model=openai:test-model@{url}?key={secrets['cli_url']}"]
    args += ["--hf-token", secrets["space"], f"--my-api-key={secrets['equals']}"]
    args += ["--llmeval-data-dir=data", "--llmeval-report=out/report.json"]
    args += ["--llmeval-cache-dir=cache", "--junitxml=out/junit.xml", "--html=out/report.html"]
    with pytest.MonkeyPatch.context() as env:
        env.setenv(KEY_ENV, secrets["env"])
        return pytester.runpytest_subprocess(*args, "-p", "no:cacheprovider")


def written(folder: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_no_secret_in_any_file_or_output_and_the_cache_key_ignores_them(
    pytester: pytest.Pytester,
) -> None:
    with FaultServer(kind="llama.cpp") as server:
        result = secret_run(pytester, server.base_url, SECRETS)
        result.assert_outcomes(passed=8)
        sent = [r for r in server.received if r.body.get("max_tokens") == 8]
        assert len(sent) == 8
        # The alias's requests carry its three secrets, the command-line model's its own.
        served = [r for r in sent if f"api_key={SECRETS['url']}" in r.path]
        assert len(served) == 4
        assert all(r.body["access_token"] == SECRETS["body"] for r in served)
        assert all(r.headers["Authorization"] == f"Bearer {SECRETS['env']}" for r in served)
        assert sum(f"key={SECRETS['cli_url']}" in r.path for r in sent) == 4

        files = written(pytester.path / "out") | written(pytester.path / "cache")
        assert {Path(f).name for f in files} >= {"report.json", "items.jsonl", "summary.md"}
        assert {"junit.xml", "report.html"} <= {Path(f).name for f in files}
        output = (result.stdout.str() + result.stderr.str()).encode()
        for what, secret in SECRETS.items():
            for name, content in {**files, "output": output}.items():
                assert secret.encode() not in content, f"the {what} secret is in {name}"
        report = json.loads((pytester.path / "out" / "report.json").read_text())
        argv = report["argv"]
        assert argv[argv.index("--hf-token") + 1] == "***"
        assert "--my-api-key=***" in argv
        assert f"--model=openai:test-model@{server.base_url}?key=***" in argv
        names = [m["name"] for m in report["settings"]["models"]]
        assert names == ["served", f"openai:test-model@{server.base_url}?key=***"]

        # Other key values, the same everything else: every generation from the cache.
        other = {what: secret[::-1] for what, secret in SECRETS.items()}
        again = secret_run(pytester, server.base_url, other)
        again.assert_outcomes(passed=8)
        lines = (pytester.path / "out" / "items.jsonl").read_text().splitlines()
        assert [json.loads(line)["cached"] for line in lines] == [True] * 8
        assert len([r for r in server.received if r.body.get("max_tokens") == 8]) == 8
