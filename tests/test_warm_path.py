"""A rerun served from the cache does no model work and imports neither torch nor
transformers (issue 12, target 1): local backends are keyed by their chat messages plus the
template and tokenizer file hashes, and only items the cache misses are rendered.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from engine_items import Item

from conftest import REPO_ROOT, shared_data_dir
from pytest_llmeval.backends import GenerationRequest, GenerationResult
from pytest_llmeval.backends.hf_files import read_tokenizer_files
from pytest_llmeval.declare.models import ModelSpec
from pytest_llmeval.declare.task import Generation, Message
from pytest_llmeval.run.cache import GenerationCache
from pytest_llmeval.run.cache_key import cache_key
from pytest_llmeval.run.engine import Engine


class RenderingBackend:
    """A remote-like backend that counts its renders; `renders_from_identity` as given."""

    default_batch_size = 4

    def __init__(self, keys_messages: bool, template: str = "<{role}>{content}") -> None:
        self.spec = ModelSpec("m", "test", "m")
        self.renders_from_identity = keys_messages
        self.template = template
        self.renders = 0
        self.generated = 0

    def identity(self) -> dict[str, Any]:
        return {"backend": "test"}

    def render(self, messages: list[Message]) -> str:
        self.renders += 1
        return "".join(self.template.format(**m) for m in messages)

    def energy_devices(self) -> None:
        return None

    def generate(
        self, requests: Sequence[GenerationRequest], batch_id: str
    ) -> list[GenerationResult]:
        self.generated += len(requests)
        return [
            GenerationResult(
                text=f"answer to {r.messages[-1]['content']}",
                prompt=self.render(r.messages),
                tokens_in=1,
                tokens_out=1,
                latency_s=0.1,
                finish_reason="stop",
                batch_id=batch_id,
                batch_size=len(requests),
                batch_wall_s=0.1,
                latency_method="test",
            )
            for r in requests
        ]

    def info(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        pass


def run(backend: RenderingBackend, cache: GenerationCache, items: int = 6) -> list[str]:
    engine = Engine(make_backend=lambda spec: backend, cache=cache)
    queue = [Item(f"t::{i}", backend.spec) for i in range(items)]
    results = [engine.result_for(item, queue[i + 1 :]) for i, item in enumerate(queue)]
    engine.close()
    return [r.prompt for r in results]


def test_a_cached_item_of_a_message_keyed_backend_is_never_rendered(tmp_path: Path) -> None:
    cold = RenderingBackend(keys_messages=True)
    prompts = run(cold, GenerationCache(tmp_path))
    assert cold.generated == 6 and cold.renders > 0
    warm = RenderingBackend(keys_messages=True)
    assert run(warm, GenerationCache(tmp_path)) == prompts  # the stored prompt comes back
    assert (warm.generated, warm.renders) == (0, 0)


def test_a_backend_that_does_not_declare_it_is_still_keyed_by_its_rendered_prompt(
    tmp_path: Path,
) -> None:
    """A user's backend whose identity does not name its template: a new template must not
    be served the old generations."""
    run(RenderingBackend(keys_messages=False), GenerationCache(tmp_path))
    changed = RenderingBackend(keys_messages=False, template="[{role}] {content}")
    run(changed, GenerationCache(tmp_path))
    assert changed.generated == 6
    same = RenderingBackend(keys_messages=False)
    run(same, GenerationCache(tmp_path))
    assert same.generated == 0


def test_message_keys_follow_the_messages_canonically() -> None:
    settings = Generation(max_new_tokens=8)
    one = [{"role": "user", "content": "hi"}]
    key = cache_key({"b": 1}, None, settings, messages=one)
    assert key == cache_key({"b": 1}, None, settings, messages=[{"content": "hi", "role": "user"}])
    assert key != cache_key({"b": 1}, None, settings, messages=[{"role": "user", "content": "ho"}])
    assert key != cache_key({"b": 1}, "hi", settings)
    with pytest.raises(ValueError, match="either a rendered prompt or the messages"):
        cache_key({"b": 1}, "hi", settings, messages=one)


def embedded_dir() -> Path:
    from pytest_llmeval.backends.weights import embedded_checkpoint

    return embedded_checkpoint()


def test_template_and_tokenizer_hashes_change_with_their_files(tmp_path: Path) -> None:
    for name in ("tokenizer_config.json", "tokenizer.json", "chat_template.jinja"):
        shutil.copy(embedded_dir() / name, tmp_path / name)
    before = read_tokenizer_files(tmp_path)
    assert before is not None and before == read_tokenizer_files(embedded_dir())
    template = tmp_path / "chat_template.jinja"
    template.write_text(template.read_text() + " ")
    after = read_tokenizer_files(tmp_path)
    assert after is not None and after.chat_template_sha256 != before.chat_template_sha256
    assert after.tokenizer_sha256 != before.tokenizer_sha256
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    config["bos_token"] = "<s>"  # a special token the template writes
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    changed = read_tokenizer_files(tmp_path)
    assert changed is not None and changed.tokenizer_sha256 != after.tokenizer_sha256
    assert read_tokenizer_files(tmp_path / "missing") is None


def test_the_template_hash_from_the_files_is_the_tokenizers() -> None:
    """The report's chat_template_sha256 names the template the tokenizer applies."""
    import hashlib

    from transformers import AutoTokenizer

    files = read_tokenizer_files(embedded_dir())
    template = AutoTokenizer.from_pretrained(embedded_dir()).chat_template
    assert files is not None
    assert files.chat_template_sha256 == hashlib.sha256(template.encode()).hexdigest()[:16]


SPY = """
import json, sys

def pytest_sessionfinish(session):
    with open("modules.json", "w") as handle:
        json.dump(sorted(sys.modules), handle)
"""


def test_a_fully_cached_rerun_imports_neither_torch_nor_transformers(tmp_path: Path) -> None:
    """Two real runs of 2 GSM8K items on the embedded model, each in its own interpreter: the
    first generates, the second is served from the cache without torch or transformers and
    reports the same texts."""
    shipped = (REPO_ROOT / "evals" / "test_gsm8k.py").read_text()
    assert "max_new_tokens=256" in shipped
    short = shipped.replace("max_new_tokens=256", "max_new_tokens=16")  # still a real generation
    (tmp_path / "test_gsm8k.py").write_text(short)
    (tmp_path / "conftest.py").write_text(SPY)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")

    def session(name: str) -> tuple[list[dict[str, Any]], list[str]]:
        command = [
            sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--limit", "2",
            f"--llmeval-data-dir={shared_data_dir()}", f"--llmeval-report={name}/report.json",
        ]  # fmt: skip
        done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert done.returncode in (0, 1), done.stdout + done.stderr
        lines = (tmp_path / name / "items.jsonl").read_text().splitlines()
        modules = json.loads((tmp_path / "modules.json").read_text())
        return [json.loads(line) for line in lines], modules

    cold, cold_modules = session("cold")
    assert "torch" in cold_modules and all(not item["cached"] for item in cold)
    warm, modules = session("warm")
    assert all(item["cached"] for item in warm)
    assert [(i["id"], i["response"], i["prompt"]) for i in warm] == [
        (i["id"], i["response"], i["prompt"]) for i in cold
    ]
    heavy = sorted({name.split(".")[0] for name in modules} & {"torch", "transformers"})
    assert heavy == [], f"a cached rerun imported {heavy}"
