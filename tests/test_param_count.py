"""Parameter counts read from a checkpoint's files (backends/param_count.py), checked against
models transformers actually builds (in a subprocess: no torch in the test process)."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_llmeval.backends.param_count import (
    CONFIG,
    HEADER,
    ParameterCount,
    config_parameters,
    count_parameters,
    safetensors_parameters,
)


def write_safetensors(path: Path, shapes: dict[str, list[int]]) -> None:
    """A safetensors file whose header declares `shapes` (float32; the data bytes zeros)."""
    header, offset = {}, 0
    for name, shape in shapes.items():
        size = 4
        for dim in shape:
            size *= dim
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps({"__metadata__": {"format": "pt"}, **header}).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"\0" * offset)


def test_sharded_safetensors_are_summed_from_their_headers(tmp_path: Path) -> None:
    write_safetensors(tmp_path / "model-00001-of-00002.safetensors", {"a": [3, 4], "b": [5]})
    write_safetensors(tmp_path / "model-00002-of-00002.safetensors", {"c": [2, 2, 2]})
    weight_map = {
        "a": "model-00001-of-00002.safetensors",
        "b": "model-00001-of-00002.safetensors",
        "c": "model-00002-of-00002.safetensors",
    }
    index = {"metadata": {}, "weight_map": weight_map}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    # 3*4 + 5 + 2*2*2 = 25
    assert count_parameters(tmp_path) == ParameterCount(25, HEADER)


def test_a_quantized_checkpoint_falls_back_to_its_config(tmp_path: Path) -> None:
    write_safetensors(tmp_path / "model.safetensors", {"packed": [10, 10]})
    config = {**_tiny("llama"), "quantization_config": {"quant_method": "gptq"}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert safetensors_parameters(tmp_path) is None
    assert count_parameters(tmp_path) == ParameterCount(_llama_by_hand(), CONFIG)


def test_unreadable_or_unknown_checkpoints_have_no_count(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"\x05\x00")  # truncated length
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "t5", "d_model": 8}))
    assert count_parameters(tmp_path) is None
    assert count_parameters(tmp_path / "missing") is None


def _tiny(kind: str) -> dict[str, object]:
    return {
        "model_type": kind,
        "vocab_size": 1000,
        "hidden_size": 64,
        "intermediate_size": 160,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
    }


def _llama_by_hand() -> int:
    # head_dim 16; q, o: 64x64; k, v: 64x32; MLP 3x64x160; two norms of 64 per layer;
    # embeddings and an untied head 1000x64 each; the final norm 64.
    layer = 2 * 64 * 64 + 2 * 64 * 32 + 3 * 64 * 160 + 2 * 64
    return 2 * 1000 * 64 + 3 * layer + 64


def test_the_llama_estimate_is_the_hand_count() -> None:
    assert config_parameters(_tiny("llama")) == _llama_by_hand() == 257472


BUILD = """
import json, sys
from transformers import AutoConfig, AutoModelForCausalLM
out = {}
for name, kind, extra in json.loads(sys.argv[1]):
    config = AutoConfig.for_model(kind, **extra)
    model = AutoModelForCausalLM.from_config(config)
    out[name] = [json.loads(config.to_json_string()), sum(p.numel() for p in model.parameters())]
print(json.dumps(out))
"""

LAYOUTS = [
    ("llama", "llama", {}),
    (
        "llama-biased-tied",
        "llama",
        {"attention_bias": True, "mlp_bias": True, "tie_word_embeddings": True},
    ),
    ("qwen2", "qwen2", {}),
    ("qwen3", "qwen3", {"head_dim": 32}),
    ("mistral", "mistral", {}),
]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


@pytest.fixture(scope="module")
def built() -> dict[str, list[object]]:
    """Random-weights models built from tiny configs: each config and its true count."""
    sizes = {k: v for k, v in _tiny("x").items() if k != "model_type"}
    layouts = [[name, kind, {**sizes, **extra}] for name, kind, extra in LAYOUTS]
    done = subprocess.run(
        [sys.executable, "-c", BUILD, json.dumps(layouts)],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=300,
        check=True,
    )
    result: dict[str, list[object]] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize("name", [layout[0] for layout in LAYOUTS])
def test_the_config_estimate_matches_the_built_model(
    built: dict[str, list[object]], name: str
) -> None:
    config, true = built[name]
    assert isinstance(config, dict)
    # Documented tolerance 1%; for these layouts the estimate is exact.
    assert config_parameters(config) == true


def test_the_header_count_equals_the_loaded_embedded_model() -> None:
    from pytest_llmeval.backends.weights import embedded_checkpoint

    directory = embedded_checkpoint()
    load = (
        "import sys; from transformers import AutoModelForCausalLM;"
        "m = AutoModelForCausalLM.from_pretrained(sys.argv[1]);"
        "print(sum(p.numel() for p in m.parameters()))"
    )
    done = subprocess.run(
        [sys.executable, "-c", load, str(directory)],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=300,
        check=True,
    )
    loaded = int(done.stdout.strip().splitlines()[-1])
    assert count_parameters(directory) == ParameterCount(loaded, HEADER)
    # SmolLM2-135M (tied embeddings), as transformers counted it once: the 135M of its name.
    assert loaded == 134_515_008


class UnloadedBackend:
    """A local backend whose weights were never loaded (its `info()` has no count)."""

    def __init__(self, directory: Path) -> None:
        from pytest_llmeval.declare.models import ModelSpec

        self.spec = ModelSpec("local", "fake", str(directory))
        self.weights = type("W", (), {"path": str(directory)})()

    def info(self) -> dict[str, object]:
        return {"parameters": None, "model_loads": 0}

    def close(self) -> None:
        pass


def test_the_report_counts_an_unloaded_model_from_its_files(tmp_path: Path) -> None:
    from pytest_llmeval.run.resident import ResidentModels

    write_safetensors(tmp_path / "model.safetensors", {"w": [7, 3]})
    backend = UnloadedBackend(tmp_path)
    models = ResidentModels(make_backend=lambda spec: backend)  # type: ignore[arg-type,return-value]
    models.backend(backend.spec)
    (record,) = models.load_records()
    assert (record.parameters, record.parameters_source) == (21, "safetensors header")
