"""The local transformers backend: one resident model, batched `generate` with left padding.

The tokenizer's chat template is always applied (its hash goes into the report). Decoding
uses our `Generation` settings alone, never the checkpoint's generation_config defaults, and
a sampled row draws with its own seed whatever it is batched with (`hf_decoding`); each
result's `decoding` says what was used.

A rerun served from the cache imports neither torch nor transformers: the identity (cache
key) is read from the checkpoint's files (`hf_files`) and the device from torch's build file,
CUDA_VISIBLE_DEVICES and NVML (`local_device`), and the engine keys items by their messages
(`renders_from_identity`). The tokenizer loads at the first prompt to render, the weights
and torch (`hf_model`) at the first batch to generate.

Batching (option `batching`): "static" batches of `default_batch_size` through `generate`,
each running as many decode steps as its longest member; "continuous" hands the worker's
whole share to transformers' continuous batching (`generate_stream`, `hf_continuous`), which
refills a finished sequence's slot with the next prompt at once. Continuous batching is
greedy-only here (no per-row seeds, no stop strings, no repetition penalty): a share with
other settings goes through the static batches, once per backend with a warning saying why.
"auto" (the default) is static everywhere until continuous batching is measured faster with
the same texts (benchmarks/bench_continuous.py; on this project's CPU it was slower).
"""

from __future__ import annotations

import importlib.util
import json
import os
import time
import warnings
import weakref
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from pytest_llmeval.backends import (
    BackendError,
    BackendUnavailable,
    EnergyDevices,
    Finished,
    GenerationRequest,
    GenerationResult,
    devices_of,
    one_line,
)
from pytest_llmeval.backends.context import check_fits, context_length
from pytest_llmeval.backends.hf_files import read_tokenizer_files, template_sha256
from pytest_llmeval.backends.local_device import (
    LocalDevice,
    auto_dtype,
    decide_device,
    matmul_precision,
    torch_build,
)
from pytest_llmeval.backends.weights import locate_weights
from pytest_llmeval.declare.models import ModelSpec
from pytest_llmeval.declare.task import Generation, Message

_DTYPES = ("float32", "float16", "bfloat16")
# The backends of this process whose model has loaded (a model's `_model` is None again once
# unloaded): torch's peak-memory statistics are per device and process-wide, so a reset at
# one model's load would erase the peak of another still resident on that device.
_LOADED: weakref.WeakSet[TransformersBackend] = weakref.WeakSet()
INSTALL_HINT = (
    "pip install torch transformers accelerate gguf  "
    "(CPU-only: pip install torch --index-url https://download.pytorch.org/whl/cpu)"
)


def pick_dtype(requested: str | None, device: LocalDevice) -> str:
    """The requested dtype (float32, float16, bfloat16), or for None / "auto": bfloat16 on a
    CUDA GPU with native bfloat16 (compute capability 8.0+), float16 on older CUDA GPUs,
    float32 elsewhere."""
    if requested and requested != "auto":
        if requested not in _DTYPES:
            raise BackendError(f"unknown dtype {requested!r}; use one of {', '.join(_DTYPES)}")
        return requested
    return auto_dtype(device)


@dataclass(frozen=True)
class TransformersOptions:
    """Per-model options of the transformers backend (alias keys; `--llmeval-device` and
    `--llmeval-dtype` override them). None or "auto": CUDA when available, else the CPU;
    bfloat16 on a CUDA GPU with native bfloat16, float16 on older CUDA GPUs, float32 on the CPU.
    """

    device: str | None = None  # "cpu", "cuda", "cuda:1", "mps", ...
    dtype: str | None = None  # "float32", "float16", "bfloat16"
    # "static" (batched `generate`), "continuous" (transformers' continuous batching, greedy
    # shares only) or "auto" / None: static until continuous is measured faster (module doc).
    batching: Literal["static", "continuous", "auto"] | None = None
    # Candidates of one item (Generation.n > 1) share one prefill of their prompt (static
    # batching); False prefills every row's prompt, as plain `generate` does (for A/B runs).
    share_prefill: bool = True


def pick_batching(requested: str | None) -> str:
    """The batching a backend uses: "continuous" only when asked for. "auto" resolves to
    "static" on every device: no measurement has shown continuous batching faster yet (on
    the 2-core CPU it was slower; never run on a GPU)."""
    return "continuous" if requested == "continuous" else "static"


def continuous_refusal(settings: Generation) -> str | None:
    """Why a share with `settings` cannot use continuous batching here (None: it can)."""
    if not settings.greedy:
        return "sampled decoding needs per-row seeds, which continuous batching cannot honour"
    if settings.stop:
        return "continuous batching has no stop strings"
    if settings.repetition_penalty != 1.0:
        return "continuous batching has no repetition penalty"
    return None


class TransformersBackend:
    """A Hugging Face causal LM, loaded on first use and kept for the session.

    Creating it reads files only: the weights' location, the tokenizer files and the device.
    The tokenizer loads when a prompt is first rendered (an item the cache does not hold),
    the weights at the first `generate`, so a fully cached run loads neither.
    """

    options_type = TransformersOptions
    renders_from_identity = True
    """The identity names the chat template and tokenizer files: the engine keys items by
    their messages and renders only those it must generate."""

    def __init__(self, spec: ModelSpec, options: TransformersOptions) -> None:
        for package in ("torch", "transformers"):
            if importlib.util.find_spec(package) is None:
                raise BackendUnavailable(
                    f"backend 'transformers' needs a missing package ({package}): {INSTALL_HINT}"
                )
        self.spec = spec
        self.options = options
        self.weights = locate_weights(spec.model_id, spec.revision)
        self.local = decide_device(options.device)
        self.device = self.local.device
        self.dtype = pick_dtype(options.dtype, self.local)
        _check_config(spec, Path(self.weights.path))
        files = read_tokenizer_files(Path(self.weights.path))
        self._tokenizer: Any = None
        self._context: int | None | bool = False  # False: not read yet
        if files is None or files.chat_template_sha256 is None:
            # The files do not say it all: ask the tokenizer (imports transformers).
            template = self.tokenizer.chat_template
            self.template_sha256 = template_sha256(str(template)) if template else None
            self.tokenizer_sha256 = None if files is None else files.tokenizer_sha256
        else:
            self.template_sha256 = files.chat_template_sha256
            self.tokenizer_sha256 = files.tokenizer_sha256
        if self.template_sha256 is None:
            raise BackendError(
                f"{spec.model_id} has no chat template; use an instruction-tuned model"
            )
        self._fixed: dict[str, Any] | None = None
        self._model: Any = None
        self._load_error: BackendError | None = None
        self.stop_ids: set[int] = set()
        self.load_time_s: float | None = None
        # Models resident on this device beside this one while it was: its peak is theirs too.
        self.peak_shared_with: set[str] = set()
        # CUDA starts high and halves on out-of-memory; on CPU larger batches gain little.
        self.default_batch_size = 64 if self.device.startswith("cuda") else 8
        self.batch_limit: int | None = None
        self.batching = pick_batching(options.batching)
        self.batching_notes: list[str] = []  # why shares went through static batches instead
        self.stream_size: int | None = None  # the engine's batch size for the current stream

    @property
    def tokenizer(self) -> Any:
        """The tokenizer, loaded on first use (left padding, a pad token)."""
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            try:
                tokenizer = AutoTokenizer.from_pretrained(
                    self.weights.path, revision=self.spec.revision
                )
            except (OSError, ValueError) as exc:
                raise BackendError(
                    f"cannot load the tokenizer of {self.spec.model_id} from "
                    f"{self.weights.path}: {one_line(exc)}"
                ) from exc
            tokenizer.padding_side = "left"
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token
            self._tokenizer = tokenizer
        return self._tokenizer

    @property
    def context(self) -> int | None:
        """Tokens the model can attend to (prompt + generation); None when nothing says.
        Read on first use (the model config and the tokenizer)."""
        if self._context is False:
            from transformers import AutoConfig

            try:
                config = AutoConfig.from_pretrained(self.weights.path, revision=self.spec.revision)
            except (OSError, ValueError) as exc:
                raise BackendError(
                    f"cannot read the config of {self.spec.model_id} in {self.weights.path}: "
                    f"{one_line(exc)}"
                ) from exc
            self._context = context_length(config, self.tokenizer)
        return self._context

    @property
    def model(self) -> Any:
        """The model, loaded on first access (once per process; a failed load is remembered
        so that later batches fail at once instead of loading again)."""
        if self._load_error is not None:
            raise self._load_error
        if self._model is None:
            from pytest_llmeval.backends import hf_model

            if self.device == "cpu":
                _share_cpu_threads()
            started = time.perf_counter()
            try:
                if self.device.startswith("cuda") and not hf_model.cuda_usable():
                    raise BackendError(
                        f"torch cannot use the GPU ({self.local.name}) that the driver shows; "
                        "pass --llmeval-device cpu"
                    )
                self._reset_peak()
                self._model = hf_model.load_model(
                    self.weights.path, self.spec.revision, self.dtype, self.device
                )
                _LOADED.add(self)
            except Exception as exc:  # OSError, ValueError, CUDA out of memory, ...
                self._load_error = BackendError(
                    f"cannot load {self.spec.model_id} from {self.weights.path}: "
                    f"{type(exc).__name__}: {one_line(exc)}"
                )
                raise self._load_error from exc
            self.stop_ids = hf_model.stop_token_ids(self._model, self.tokenizer)
            self.load_time_s = time.perf_counter() - started
        return self._model

    def _reset_peak(self) -> None:
        """Start this load's peak afresh, so it is its own, unless another model is resident
        on the device (an agreement reference; an xdist queue that cannot be read, so nothing
        was unloaded): resetting would erase that model's peak so far. The running maximum
        is kept instead, and each model's info names the others (`peak_vram_shared_with`)."""
        from pytest_llmeval.backends import hf_model

        others = [
            other
            for other in list(_LOADED)
            if other is not self and other._model is not None and other.device == self.device
        ]
        if not self.device.startswith("cuda") or not others:
            hf_model.reset_peak_vram(self.device)
            return
        for other in others:
            other.peak_shared_with.add(self.spec.name)
            self.peak_shared_with.add(other.spec.name)

    def load(self) -> None:
        """Load the weights now (once; a failed load raises its remembered error)."""
        _ = self.model

    def energy_devices(self) -> EnergyDevices:
        """The CUDA ordinal of the model's device, or "cpu"."""
        return devices_of(self.device)

    def identity(self) -> Mapping[str, Any]:
        """Everything known before loading that changes the outputs (part of the cache key):
        model id, weights fingerprint, chat template and tokenizer file hashes, dtype, the
        device type and GPU model, the CUDA version, torch's float32 matmul precision and the
        torch, transformers and jinja2 versions. Imports neither torch nor transformers and
        loads nothing, so a cached run loads nothing."""
        if self._fixed is None:  # asked once per window: read the files and versions once
            self._fixed = self._fixed_identity()
        return {**self._fixed, "float32_matmul_precision": matmul_precision()}

    def _fixed_identity(self) -> dict[str, Any]:
        build = torch_build()
        return {
            "backend": "transformers",
            "model_id": self.spec.model_id,
            "weights": self.weights.fingerprint,
            "dtype": self.dtype,
            "chat_template_sha256": self.template_sha256,
            "tokenizer_sha256": self.tokenizer_sha256,
            "torch": None if build is None else build.version,
            "transformers": _version("transformers"),
            "jinja2": _version("jinja2"),  # renders the chat template
            "device_type": self.device.split(":")[0],
            "device_name": self.local.name,
            "cuda": self.local.cuda,
        }

    def info(self) -> Mapping[str, Any]:
        """The identity plus weights location, size, memory and load time, for the report."""
        loaded = self._model is not None
        parameters = None
        if loaded:
            from pytest_llmeval.backends import hf_model

            parameters = hf_model.parameters(self._model)
        return {
            **self.identity(),
            "weights_source": self.weights.source,
            "weights_path": self.weights.path,
            "revision": self.spec.revision,
            "device": self.device,
            "parameters": parameters,
            "model_loads": int(loaded),
            "model_size_bytes": _size_on_disk(self.weights.path),
            "peak_vram_bytes": self._peak_vram(),
            "batch_limit": self.batch_limit,
            "batching": self.batching,
            "batching_notes": list(self.batching_notes),
            "load_time_s": None if self.load_time_s is None else round(self.load_time_s, 3),
            # Set only when another model was resident on the device at once: then
            # `peak_vram_bytes` is the process's peak over both, not this model's alone.
            **(
                {"peak_vram_shared_with": sorted(self.peak_shared_with)}
                if self.peak_shared_with
                else {}
            ),
        }

    def _peak_vram(self) -> int | None:
        """Peak CUDA memory allocated by this process so far (None on the CPU)."""
        if not self.device.startswith("cuda") or self._model is None:
            return None
        from pytest_llmeval.backends import hf_model

        return hf_model.peak_vram(self.device)

    def render(self, messages: list[Message]) -> str:
        """The prompt text exactly as the model sees it (chat template applied)."""
        rendered = self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )
        return str(rendered)

    def generate(
        self, requests: Sequence[GenerationRequest], batch_id: str
    ) -> list[GenerationResult]:
        """Generate a batch; on CUDA out-of-memory, halve it, retry, and remember the size
        that worked for the rest of the session (`batch_limit`)."""
        model = self.model  # load first: running out of memory while loading is not a batch issue
        from pytest_llmeval.backends import hf_model

        if self.batch_limit is not None and len(requests) > self.batch_limit:
            return self._in_parts(requests, batch_id, self.batch_limit)
        try:
            return self._generate_batch(model, requests, batch_id)
        except hf_model.OutOfMemory:
            if len(requests) == 1:
                raise BackendError(
                    f"out of GPU memory generating one item on {self.device}; "
                    "lower max_new_tokens or use a smaller dtype (--llmeval-dtype)"
                ) from None
            hf_model.empty_cuda_cache()
            self.batch_limit = max(1, len(requests) // 2)
            return self._in_parts(requests, batch_id, self.batch_limit)

    @property
    def generate_stream(self) -> Any:
        """`stream(requests)` under continuous batching (the engine then hands this backend a
        worker's whole share and commits each result as it finishes: `run/stream.py`), None
        with static batching (the engine cuts the share into batches for `generate`)."""
        return self._stream if self.batching == "continuous" else None

    stream_batch_size = True
    """`generate_stream` takes the engine's batch size: the most sequences decoded at once."""

    @property
    def max_in_flight(self) -> int:
        """The most streamed requests added and unfinished at once (see `Finished`): twice
        the sequences decoded at once, so a finished one's slot is refilled at once."""
        return 2 * self._running()

    def _running(self) -> int:
        """Sequences decoded at once: the stream's batch size, or the size that fit the GPU."""
        size = self.stream_size or self.default_batch_size
        return size if self.batch_limit is None else max(1, min(size, self.batch_limit))

    def _stream(
        self, requests: Sequence[GenerationRequest], batch_size: int | None = None
    ) -> Iterator[Finished]:
        """Yield (index, result or error) as `requests` finish, at most `batch_size`
        sequences decoding at once (set now: `max_in_flight` is read before the first result)."""
        self.stream_size = batch_size
        return self._stream_share(requests)

    def _stream_share(self, requests: Sequence[GenerationRequest]) -> Iterator[Finished]:
        """A share that continuous batching cannot decode goes through static batches (warned
        once per reason)."""
        if not requests:
            return
        _ = self.model  # load before the stream starts: a load error is not a request's
        reason = continuous_refusal(requests[0].settings)
        if reason is not None:
            if reason not in self.batching_notes:
                self.batching_notes.append(reason)
                warnings.warn(
                    f"{self.spec.name}: static batches instead of continuous batching: {reason}",
                    stacklevel=2,
                )
            size = self._running()
            for start in range(0, len(requests), size):
                batch = self.generate(requests[start : start + size], "")
                yield [(start + i, result) for i, result in enumerate(batch)]
            return
        from pytest_llmeval.backends import hf_continuous

        yield from hf_continuous.stream_continuous(self, requests, self._running())

    def _in_parts(
        self, requests: Sequence[GenerationRequest], batch_id: str, size: int
    ) -> list[GenerationResult]:
        results: list[GenerationResult] = []
        started = time.perf_counter()
        for start in range(0, len(requests), size):
            results += self.generate(requests[start : start + size], batch_id)
        # One batch to the engine (its energy window covers all parts): one id, the whole wall.
        wall = round(time.perf_counter() - started, 6)
        return [replace(r, batch_size=len(requests), batch_wall_s=wall) for r in results]

    def _generate_batch(
        self, model: Any, requests: Sequence[GenerationRequest], batch_id: str
    ) -> list[GenerationResult]:
        from pytest_llmeval.backends import hf_model

        return hf_model.generate_batch(self, requests, batch_id)

    def close(self) -> None:
        """Drop the model and return cached CUDA memory."""
        loaded, self._model = self._model, None
        if loaded is not None:
            from pytest_llmeval.backends import hf_model

            hf_model.empty_cuda_cache()

    def unload(self) -> bool | None:
        """Release the weights before another model loads (model sweeps): drop the model,
        collect garbage, return cached CUDA memory. True when the model object is gone after
        that (nothing else held it), None when none was loaded; the tokenizer stays (small)
        and the next batch loads the weights again."""
        if self._model is None:
            return None
        import gc
        import weakref

        from pytest_llmeval.backends import hf_model

        gone = weakref.ref(self._model)
        self._model = None
        gc.collect()
        hf_model.empty_cuda_cache()
        return gone() is None

    def check_prompt(self, prompt: str, settings: Generation) -> None:
        """Raise `PromptTooLong` unless the rendered prompt plus `max_new_tokens` fits the
        model's context (called by the engine before batching)."""
        check_fits(self.prompt_tokens(prompt), self.context, settings.max_new_tokens)

    def prompt_tokens(self, prompt: str) -> int:
        """Tokens of a rendered prompt as `generate` encodes it (no special tokens added): the
        engine's batch-invariant mode batches only prompts of equal count, so none is padded."""
        return len(self.tokenizer(prompt, add_special_tokens=False)["input_ids"])


def _check_config(spec: ModelSpec, directory: Path) -> None:
    """Refuse a checkpoint whose config.json is not JSON now, as a load error of the model
    (once, for all its items), not later as each item's error."""
    path = directory / "config.json"
    if not path.is_file():
        return  # transformers says what is missing when (if ever) it loads
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BackendError(
            f"cannot read the config of {spec.model_id} in {directory}: "
            f"{path} is not a valid JSON file ({one_line(exc)})"
        ) from exc


def _version(package: str) -> str | None:
    """An installed distribution's version, read from its metadata (imports nothing)."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _share_cpu_threads() -> None:
    """Under xdist on the CPU, give each worker its share of the cores.

    Every worker's torch would otherwise start one thread per core; N workers then run N times
    as many threads as cores and spend the time contending (measured: 2 workers on 2 cores
    ran at a tenth of the single-process speed).
    """
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    if workers > 1:
        from pytest_llmeval.backends import hf_model

        hf_model.set_threads(max(1, (os.cpu_count() or 1) // workers))


def _size_on_disk(path: str) -> int | None:
    """Bytes of weight files in a local checkpoint directory (None for a bare Hub id)."""
    directory = Path(path)
    if not directory.is_dir():
        return None
    suffixes = {".safetensors", ".bin", ".gguf", ".pt"}
    return sum(f.stat().st_size for f in directory.iterdir() if f.suffix in suffixes)
