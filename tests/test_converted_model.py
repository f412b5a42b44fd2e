"""The embedded GGUF converts to a plain transformers checkpoint (issue 10, point 13): its
config.json carries no `quantization_config`, so transformers and other tools load it as the
float model it is; a directory converted by an older version is fixed on first use.

The conversion runs once for the module (about 15 s on a CPU) into a temporary model cache,
never in the default one that the other tests share.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from pytest_llmeval.backends import weights
from pytest_llmeval.backends.weights import CACHE_ENV, embedded_checkpoint, weights_fingerprint

OLD_QUANTIZATION = {
    "dequantize": False,
    "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf",
    "quant_method": "gguf",
}


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded model converted from its GGUF into a fresh model cache."""
    cache = tmp_path_factory.mktemp("model-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_ENV, str(cache))
        patch.setenv("HF_HUB_OFFLINE", "1")
        target = embedded_checkpoint()
    assert target.parent == cache, "converted into the temporary cache"
    return target


def test_converted_checkpoint_is_a_plain_float_model(converted: Path) -> None:
    from transformers import AutoModelForCausalLM

    config = json.loads((converted / "config.json").read_text())
    assert "quantization_config" not in config
    assert config["model_type"] == "llama" and config["dtype"] == "float32"
    model = AutoModelForCausalLM.from_pretrained(converted)
    assert getattr(model, "hf_quantizer", None) is None
    assert not getattr(model, "is_quantized", False)
    assert getattr(model.config, "quantization_config", None) is None
    assert str(model.dtype) == "torch.float32"


def _old_style_copy(converted: Path, cache: Path) -> Path:
    """The converted directory as an older version left it: the same files (weights hard
    linked, not copied) and a config.json that still names the GGUF quantization."""
    old = cache / converted.name
    old.mkdir(parents=True)
    for path in converted.iterdir():
        if path.suffix == ".safetensors":
            os.link(path, old / path.name)
        else:
            shutil.copy2(path, old / path.name)
    config = json.loads((old / "config.json").read_text())
    config["quantization_config"] = OLD_QUANTIZATION
    (old / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return old


def test_an_old_style_directory_is_fixed_in_place_on_first_use(
    converted: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "models"
    old = _old_style_copy(converted, cache)
    before = json.loads((old / "config.json").read_text())
    weights_inode = (old / "model.safetensors").stat().st_ino
    mode = (old / "config.json").stat().st_mode
    fingerprint = weights_fingerprint(old)

    def no_conversion(gguf: Path, out_dir: Path) -> None:
        raise AssertionError("an existing checkpoint must be fixed, not converted again")

    monkeypatch.setattr(weights, "_convert_gguf", no_conversion)
    monkeypatch.setenv(CACHE_ENV, str(cache))
    assert embedded_checkpoint() == old
    after = json.loads((old / "config.json").read_text())
    assert "quantization_config" not in after
    assert after == {k: v for k, v in before.items() if k != "quantization_config"}
    assert (old / "model.safetensors").stat().st_ino == weights_inode, "weights untouched"
    # The fixed config is a new file: the weights fingerprint (so the cache key) changes once.
    assert weights_fingerprint(old) != fingerprint
    assert sorted(p.name for p in old.iterdir()) == sorted(p.name for p in converted.iterdir())
    assert (old / "config.json").stat().st_mode == mode

    # Later uses find it plain and leave it alone.
    mtime = (old / "config.json").stat().st_mtime_ns
    assert embedded_checkpoint() == old
    assert (old / "config.json").stat().st_mtime_ns == mtime


def test_an_unwritable_old_directory_warns_and_is_still_used(
    converted: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "models"
    old = _old_style_copy(converted, cache)

    def read_only(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(weights.tempfile, "mkstemp", read_only)
    monkeypatch.setenv(CACHE_ENV, str(cache))
    with pytest.warns(
        UserWarning, match="cannot remove the GGUF quantization_config from .*config"
    ):
        assert embedded_checkpoint() == old
    assert "quantization_config" in json.loads((old / "config.json").read_text())
