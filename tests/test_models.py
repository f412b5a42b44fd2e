"""Unit tests for pytest_llmeval.declare.models."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_llmeval.declare.models import (
    BUILTIN_ALIASES,
    DEFAULT_BACKEND,
    ModelSpec,
    UnknownModel,
    load_user_aliases,
    resolve_model,
)

EXPECTED_ALIASES = [
    "smollm2-135m",
    "smollm2-360m",
    "smollm2-1.7b",
    "qwen0.5b",
    "qwen1.5b",
    "qwen3b",
    "qwen7b",
    "qwen14b",
    "qwen32b",
    "llama3-8b",
    "mistral7b",
    "phi3-mini",
    "gemma2-9b",
    "gpt-oss-20b",
]


@pytest.mark.parametrize("alias", EXPECTED_ALIASES)
def test_builtin_alias_resolves(alias: str) -> None:
    spec = resolve_model(alias)
    assert spec.name == alias
    assert spec.backend == DEFAULT_BACKEND
    org, _, name = spec.model_id.partition("/")
    assert org and name and "/" not in name, spec.model_id
    assert isinstance(spec.vram_gb, float) and spec.vram_gb > 0
    assert (spec.model_id, spec.vram_gb) == BUILTIN_ALIASES[alias]


def test_builtin_alias_ids_are_the_expected_models() -> None:
    assert resolve_model("qwen0.5b").model_id == "Qwen/Qwen2.5-0.5B-Instruct"
    assert resolve_model("smollm2-135m").model_id == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert resolve_model("gpt-oss-20b").model_id == "openai/gpt-oss-20b"
    # Bigger models need more memory.
    assert resolve_model("qwen32b").vram_gb > resolve_model("qwen7b").vram_gb  # type: ignore[operator]


def test_hub_id_passes_through() -> None:
    spec = resolve_model("my-org/my-model")
    assert spec == ModelSpec(
        name="my-org/my-model", backend="transformers", model_id="my-org/my-model"
    )
    assert spec.vram_gb is None


def test_local_directory(tmp_path: Path) -> None:
    model_dir = tmp_path / "some" / "deep" / "model"
    model_dir.mkdir(parents=True)
    spec = resolve_model(str(model_dir))
    assert spec.backend == DEFAULT_BACKEND
    assert spec.model_id == str(model_dir)


def test_relative_local_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UnknownModel):
        resolve_model("./localmodel")  # neither a Hub id nor (yet) a directory
    (tmp_path / "localmodel").mkdir()
    assert resolve_model("./localmodel").model_id == "localmodel"


def test_backend_prefix_form() -> None:
    spec = resolve_model("openai:gpt-4o-mini@http://localhost:8000/v1")
    assert spec.backend == "openai"
    assert spec.model_id == "gpt-4o-mini@http://localhost:8000/v1"
    assert spec.name == "openai:gpt-4o-mini@http://localhost:8000/v1"


def test_transformers_prefix_resolves_alias() -> None:
    spec = resolve_model("transformers:qwen0.5b")
    assert spec.backend == "transformers"
    assert spec.model_id == "Qwen/Qwen2.5-0.5B-Instruct"


@pytest.mark.parametrize("name", ["gpt5-ultra", "a/b/c", "./x", "foo:", "org/"])
def test_unknown_model_lists_known_aliases(name: str) -> None:
    with pytest.raises(UnknownModel) as excinfo:
        resolve_model(name)
    message = str(excinfo.value)
    assert repr(name) in message
    for alias in ("smollm2-135m", "qwen7b", "gpt-oss-20b"):
        assert alias in message
    assert "[tool.llmeval.models]" in message


def test_empty_name_is_unknown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UnknownModel):
        resolve_model("")


def _write_pyproject(root: Path, body: str) -> None:
    (root / "pyproject.toml").write_text(body, encoding="utf-8")


def test_no_pyproject_means_no_user_aliases(tmp_path: Path) -> None:
    assert load_user_aliases(tmp_path) == {}


def test_pyproject_without_table_means_no_user_aliases(tmp_path: Path) -> None:
    _write_pyproject(tmp_path, '[project]\nname = "x"\n')
    assert load_user_aliases(tmp_path) == {}


def test_user_alias_loaded_and_resolved(tmp_path: Path) -> None:
    _write_pyproject(
        tmp_path,
        """
[tool.llmeval.models.mine]
model = "org/x"

[tool.llmeval.models.full]
model = "org/y"
backend = "vllm"
vram_gb = 16
revision = "v2"
max_len = 4096
""",
    )
    aliases = load_user_aliases(tmp_path)
    assert set(aliases) == {"mine", "full"}
    mine = resolve_model("mine", aliases)
    assert (mine.name, mine.backend, mine.model_id) == ("mine", "transformers", "org/x")
    full = aliases["full"]
    assert (full.backend, full.vram_gb, full.revision) == ("vllm", 16, "v2")
    assert dict(full.options) == {"max_len": 4096}


def test_user_alias_overrides_builtin(tmp_path: Path) -> None:
    _write_pyproject(tmp_path, '[tool.llmeval.models.qwen7b]\nmodel = "org/my-qwen"\n')
    aliases = load_user_aliases(tmp_path)
    assert resolve_model("qwen7b", aliases).model_id == "org/my-qwen"
    assert resolve_model("qwen7b").model_id == "Qwen/Qwen2.5-7B-Instruct"


def test_user_alias_appears_in_unknown_message(tmp_path: Path) -> None:
    _write_pyproject(tmp_path, '[tool.llmeval.models.mine]\nmodel = "org/x"\n')
    aliases = load_user_aliases(tmp_path)
    with pytest.raises(UnknownModel, match="mine"):
        resolve_model("nope", aliases)


@pytest.mark.parametrize(
    "body",
    [
        '[tool.llmeval.models]\nmine = "org/x"\n',
        '[tool.llmeval.models.mine]\nbackend = "transformers"\n',
    ],
)
def test_malformed_user_alias_raises(tmp_path: Path, body: str) -> None:
    _write_pyproject(tmp_path, body)
    with pytest.raises(UnknownModel) as excinfo:
        load_user_aliases(tmp_path)
    message = str(excinfo.value)
    assert "[tool.llmeval.models.mine]" in message
    assert "model =" in message
    assert str(tmp_path / "pyproject.toml") in message


def test_as_dict() -> None:
    assert resolve_model("qwen0.5b").as_dict() == {
        "name": "qwen0.5b",
        "backend": "transformers",
        "model_id": "Qwen/Qwen2.5-0.5B-Instruct",
        "vram_gb": 1.5,
        "revision": None,
    }
