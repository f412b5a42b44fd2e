"""The local transformers backend: one resident model, batched `generate` with left padding.

The tokenizer's chat template is always applied (its hash goes into the report). Per-item
latency is the time from the batch start until that item's sequence produced its last token,
read from a per-step clock, so items that finish early in a batch are not charged for the rest.

Decoding uses our `Generation` settings alone, never the checkpoint's generation_config
defaults, and a sampled row draws with its own seed whatever it is batched with
(`hf_decoding`); each result's `decoding` says what was used.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    LogitsProcessor,
    LogitsProcessorList,
)

from pytest_llmeval.backends import (
    BackendError,
    EnergyDevices,
    GenerationRequest,
    GenerationResult,
    devices_of,
    one_line,
)
from pytest_llmeval.backends.context import check_fits, context_length
from pytest_llmeval.backends.hf_decoding import (
    PerRowSampler,
    decoding_record,
    neutral_generation_config,
    pinned_generation_config,
)
from pytest_llmeval.backends.weights import locate_weights
from pytest_llmeval.declare.models import ModelSpec
from pytest_llmeval.declare.task import Generation, Message

LATENCY_METHOD = "sequence-finish: batch start until the item's last token (per-step clock)"
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class _StepClock(LogitsProcessor):
    """Records a timestamp each decoding step (called once per step, before the token is picked)."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        self.times.append(time.perf_counter())
        return scores


def pick_device(requested: str | None) -> str:
    """The requested device, or for None / "auto": "cuda" when available, else "cpu"."""
    if requested and requested != "auto":
        return requested
    return "cuda" if torch.cuda.is_available() else "cpu"


def pick_dtype(requested: str | None, device: str) -> torch.dtype:
    """The requested dtype (float32, float16, bfloat16), or for None / "auto": bfloat16 on a
    CUDA device that supports it, float16 on other CUDA devices, float32 elsewhere."""
    if requested and requested != "auto":
        if requested not in _DTYPES:
            raise BackendError(f"unknown dtype {requested!r}; use one of {', '.join(_DTYPES)}")
        return _DTYPES[requested]
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


@dataclass(frozen=True)
class TransformersOptions:
    """Per-model options of the transformers backend (alias keys; `--llmeval-device` and
    `--llmeval-dtype` override them). None or "auto": CUDA when available, else the CPU;
    bfloat16 on a CUDA device that supports it, float16 on other CUDA devices, float32 on the CPU.
    """

    device: str | None = None  # "cpu", "cuda", "cuda:1", "mps", ...
    dtype: str | None = None  # "float32", "float16", "bfloat16"


class TransformersBackend:
    """A Hugging Face causal LM, loaded on first use and kept for the session.

    The tokenizer loads at once (it renders prompts and names the chat template for the cache
    key); the weights load on the first `generate`, so a fully cached run loads none.
    """

    options_type = TransformersOptions

    def __init__(self, spec: ModelSpec, options: TransformersOptions) -> None:
        self.spec = spec
        self.options = options
        self.weights = locate_weights(spec.model_id, spec.revision)
        self.device = pick_device(options.device)
        self.dtype = pick_dtype(options.dtype, self.device)
        if self.device == "cpu":
            _share_cpu_threads()
        try:
            config = AutoConfig.from_pretrained(self.weights.path, revision=spec.revision)
        except (OSError, ValueError) as exc:
            raise BackendError(
                f"cannot read the config of {spec.model_id} in {self.weights.path}: {one_line(exc)}"
            ) from exc
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(
                self.weights.path, revision=spec.revision
            )
        except (OSError, ValueError) as exc:
            raise BackendError(
                f"cannot load the tokenizer of {spec.model_id} from {self.weights.path}: "
                f"{one_line(exc)}"
            ) from exc
        if not self.tokenizer.chat_template:
            raise BackendError(
                f"{spec.model_id} has no chat template; use an instruction-tuned model"
            )
        self.tokenizer.padding_side = "left"
        self.context = context_length(config, self.tokenizer)
        """Tokens the model can attend to (prompt + generation); None when nothing says."""
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self._model: Any = None
        self._load_error: BackendError | None = None
        self.stop_ids: set[int] = set()
        self.load_time_s: float | None = None
        # CUDA starts high and halves on out-of-memory; on CPU larger batches gain little.
        self.default_batch_size = 64 if self.device.startswith("cuda") else 8
        self.batch_limit: int | None = None

    @property
    def model(self) -> Any:
        """The model, loaded on first access (once per process; a failed load is remembered
        so that later batches fail at once instead of loading again)."""
        if self._load_error is not None:
            raise self._load_error
        if self._model is None:
            started = time.perf_counter()
            try:
                loaded = AutoModelForCausalLM.from_pretrained(
                    self.weights.path, revision=self.spec.revision, dtype=self.dtype
                )
                self._model = loaded.to(self.device).eval()  # type: ignore[arg-type]
            except Exception as exc:  # OSError, ValueError, CUDA out of memory, ...
                self._load_error = BackendError(
                    f"cannot load {self.spec.model_id} from {self.weights.path}: "
                    f"{type(exc).__name__}: {one_line(exc)}"
                )
                raise self._load_error from exc
            # Same decode on every backend: nothing from the checkpoint's sampling defaults.
            self._model.generation_config = neutral_generation_config(self._model.generation_config)
            self.stop_ids = _stop_token_ids(self._model, self.tokenizer)
            self.load_time_s = time.perf_counter() - started
        return self._model

    def load(self) -> None:
        """Load the weights now (once; a failed load raises its remembered error)."""
        _ = self.model

    def energy_devices(self) -> EnergyDevices:
        """The CUDA ordinal of the model's device, or "cpu"."""
        return devices_of(self.device)

    def identity(self) -> Mapping[str, Any]:
        """Everything known before loading that changes the outputs (part of the cache key):
        model id, weights fingerprint, chat template hash, dtype, the device (`_numerics`) and
        the torch and transformers versions. Loads no weights, so a cached run loads none."""
        template = str(self.tokenizer.chat_template)
        return {
            "backend": "transformers",
            "model_id": self.spec.model_id,
            "weights": self.weights.fingerprint,
            "dtype": str(self.dtype).removeprefix("torch."),
            "chat_template_sha256": hashlib.sha256(template.encode()).hexdigest()[:16],
            **_numerics(self.device),
        }

    def info(self) -> Mapping[str, Any]:
        """The identity plus weights location, size, memory and load time, for the report."""
        loaded = self._model is not None
        return {
            **self.identity(),
            "weights_source": self.weights.source,
            "weights_path": self.weights.path,
            "revision": self.spec.revision,
            "device": self.device,
            "parameters": sum(p.numel() for p in self._model.parameters()) if loaded else None,
            "model_loads": int(loaded),
            "model_size_bytes": _size_on_disk(self.weights.path),
            "peak_vram_bytes": self._peak_vram(),
            "batch_limit": self.batch_limit,
            "load_time_s": None if self.load_time_s is None else round(self.load_time_s, 3),
        }

    def _peak_vram(self) -> int | None:
        """Peak CUDA memory allocated by this process so far (None on the CPU)."""
        if not self.device.startswith("cuda") or self._model is None:
            return None
        return int(torch.cuda.max_memory_allocated(torch.device(self.device)))

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
        if self.batch_limit is not None and len(requests) > self.batch_limit:
            return self._in_parts(requests, batch_id, self.batch_limit)
        try:
            return self._generate_batch(model, requests, batch_id)
        except torch.cuda.OutOfMemoryError:
            if len(requests) == 1:
                raise BackendError(
                    f"out of GPU memory generating one item on {self.device}; "
                    "lower max_new_tokens or use a smaller dtype (--llmeval-dtype)"
                ) from None
            torch.cuda.empty_cache()
            self.batch_limit = max(1, len(requests) // 2)
            return self._in_parts(requests, batch_id, self.batch_limit)

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

    @torch.inference_mode()
    def _generate_batch(
        self, model: Any, requests: Sequence[GenerationRequest], batch_id: str
    ) -> list[GenerationResult]:
        settings = requests[0].settings
        prompts = [self.render(request.messages) for request in requests]
        # The chat template already carries the special tokens (BOS etc.); don't add them twice.
        encoded = self.tokenizer(
            prompts, return_tensors="pt", padding=True, add_special_tokens=False
        ).to(self.device)
        clock = _StepClock()
        processors: list[LogitsProcessor] = [clock]
        if not settings.greedy:
            # Each row draws with its own seed: see hf_decoding.
            seeds = [cast(int, request.seed) for request in requests]
            processors.append(PerRowSampler(seeds, settings))
        config = pinned_generation_config(
            settings, model.generation_config, self.tokenizer.pad_token_id
        )
        started = time.perf_counter()
        output = model.generate(
            **encoded,
            generation_config=config,
            logits_processor=LogitsProcessorList(processors),
            tokenizer=self.tokenizer if settings.stop else None,
        )
        wall = time.perf_counter() - started
        new_tokens = output[:, encoded["input_ids"].shape[1] :].tolist()
        input_lengths = encoded["attention_mask"].sum(dim=1).tolist()
        padded_length = int(encoded["input_ids"].shape[1])
        results = []
        for request, prompt, tokens, n_in in zip(
            requests, prompts, new_tokens, input_lengths, strict=True
        ):
            n_out, steps, stopped = self._generated_length(tokens)
            text = str(self.tokenizer.decode(tokens[:n_out], skip_special_tokens=True))
            text, cut = _cut_at_stop(text, settings.stop)
            # The item finished at the step that produced its last token, the end token included.
            finished = clock.times[steps - 1] if 0 < steps <= len(clock.times) else started + wall
            results.append(
                GenerationResult(
                    text=text,
                    prompt=prompt,
                    tokens_in=int(n_in),
                    tokens_out=n_out,
                    latency_s=round(finished - started, 6),
                    finish_reason="stop" if stopped or cut else "length",
                    batch_id=batch_id,
                    batch_size=len(requests),
                    batch_wall_s=round(wall, 6),
                    latency_method=LATENCY_METHOD,
                    decoding=decoding_record(settings, request.seed),
                    pad_tokens=padded_length - int(n_in),
                )
            )
        return results

    def _generated_length(self, tokens: list[int]) -> tuple[int, int, bool]:
        """Tokens this sequence generated without its end token (the rule every backend
        follows for `tokens_out`), the decoding steps it took, and whether it stopped itself."""
        for position, token in enumerate(tokens):
            if token in self.stop_ids:
                return position, position + 1, True
            if token == self.tokenizer.pad_token_id:
                # Padding after a stop string ended the sequence early.
                return position, position, True
        return len(tokens), len(tokens), False

    def close(self) -> None:
        """Drop the model and return cached CUDA memory."""
        self._model = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def check_prompt(self, prompt: str, settings: Generation) -> None:
        """Raise `PromptTooLong` unless the rendered prompt plus `max_new_tokens` fits the
        model's context (called by the engine before batching)."""
        check_fits(self.prompt_tokens(prompt), self.context, settings.max_new_tokens)

    def prompt_tokens(self, prompt: str) -> int:
        """Tokens of a rendered prompt as `generate` encodes it (no special tokens added): the
        engine's batch-invariant mode batches only prompts of equal count, so none is padded."""
        return len(self.tokenizer(prompt, add_special_tokens=False)["input_ids"])


def _share_cpu_threads() -> None:
    """Under xdist on the CPU, give each worker its share of the cores.

    Every worker's torch would otherwise start one thread per core; N workers then run N times
    as many threads as cores and spend the time contending (measured: 2 workers on 2 cores
    ran at a tenth of the single-process speed).
    """
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    if workers > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


def _size_on_disk(path: str) -> int | None:
    """Bytes of weight files in a local checkpoint directory (None for a bare Hub id)."""
    directory = Path(path)
    if not directory.is_dir():
        return None
    suffixes = {".safetensors", ".bin", ".gguf", ".pt"}
    return sum(f.stat().st_size for f in directory.iterdir() if f.suffix in suffixes)


def _stop_token_ids(model: Any, tokenizer: Any) -> set[int]:
    eos = model.generation_config.eos_token_id
    ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


def _cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """Truncate at the first stop sequence (generate stops after it but keeps it)."""
    positions = [text.find(s) for s in stop if s and s in text]
    if not positions:
        return text, False
    return text[: min(positions)], True


def _numerics(device: str) -> dict[str, Any]:
    """What changes a local model's numbers besides its weights and dtype: the library
    versions (kernels, and the attention implementation transformers picks by default), the
    device type and GPU model, the CUDA version, and torch's float32 matmul precision (TF32)."""
    import transformers

    kind = device.split(":")[0]
    cuda = kind == "cuda"
    # The GPU model, never the CPU model: CPU results are compared across machines.
    name = kind
    if cuda:
        try:
            name = torch.cuda.get_device_name(torch.device(device))
        except (AssertionError, RuntimeError) as exc:  # no CUDA build, driver or device
            raise BackendError(f"device {device!r} is not usable: {exc}") from exc
    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "device_type": kind,
        "device_name": name,
        "cuda": torch.version.cuda if cuda else None,
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
    }
