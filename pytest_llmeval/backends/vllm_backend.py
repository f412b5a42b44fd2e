"""The vLLM backend: the offline `vllm.LLM` engine, resident per worker (GPU).

`--model vllm:<hub id, alias or local dir>`, or an alias with `backend = "vllm"` whose extra
keys are `VLLMOptions`. vLLM is an optional dependency (`pip install vllm`); without it the
backend reports a one-line install hint. The engine batches internally, so the harness hands
it a worker's whole share at once (`generate_stream`, through vLLM's step API, each result
committed as it finishes: `vllm_stream.py`); `generate` sends a batch in one `LLM.generate`
call (the batch-invariant mode and the batch-invariance check). Either way each request has
its own `SamplingParams` (its own seed when sampling, every setting explicit:
`vllm_requests.py`).

The prompt is rendered once, by our tokenizer's chat template exactly as on the transformers
backend, and sent as token ids with no special token added (`chat_tokens.py`): a string
prompt would be tokenized again by vLLM with BOS added, giving Llama-3, Gemma-2 and Mistral
prompts two BOS tokens. Latency is the request's own from vLLM's request metrics; a version
that reports none gets the batch wall time, named as such in `latency_method`. The identity
(cache key) names the vLLM, torch and transformers versions, the device and GPU model, and
every engine option that changes numerics.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_llmeval.backends import (
    BackendError,
    EnergyDevices,
    Finished,
    GenerationRequest,
    GenerationResult,
)
from pytest_llmeval.backends.chat_tokens import prompt_token_ids, render_chat
from pytest_llmeval.backends.context import check_fits, context_length
from pytest_llmeval.backends.hf_files import read_tokenizer_files
from pytest_llmeval.backends.runtime import package_version, vllm_device
from pytest_llmeval.backends.vllm_requests import (
    generated_tokens,
    request_latency,
    sampling_kwargs,
)
from pytest_llmeval.backends.vllm_stream import max_in_flight, stream_requests
from pytest_llmeval.backends.weights import locate_weights
from pytest_llmeval.declare.models import ModelSpec
from pytest_llmeval.declare.task import Generation, Message

INSTALL_HINT = "the vllm backend needs vLLM on a CUDA machine: pip install vllm"

__all__ = [
    "INSTALL_HINT",
    "VLLMBackend",
    "VLLMOptions",
    "engine_kwargs",
    "generated_tokens",
    "request_latency",
    "sampling_kwargs",
]


@dataclass(frozen=True)
class VLLMOptions:
    """Per-model options of the vllm backend (alias keys; `--llmeval-dtype` overrides `dtype`).
    None leaves the choice to vLLM; the others are `vllm.LLM` arguments of the same name."""

    dtype: str | None = None  # "auto", "float16", "bfloat16", "float32"
    gpu_memory_utilization: float | None = None  # fraction of GPU memory for weights + KV cache
    max_model_len: int | None = None  # context length (a smaller one needs less KV cache)
    tensor_parallel_size: int | None = None  # GPUs to split the model over
    enforce_eager: bool | None = None  # no CUDA graphs: starts faster, generates slower
    quantization: str | None = None  # "awq", "gptq", "fp8", ...; None: as the checkpoint says


# Passed to `vllm.LLM` only when set, so that vLLM's own defaults stay in charge otherwise.
_PASSTHROUGH = (
    "gpu_memory_utilization",
    "max_model_len",
    "tensor_parallel_size",
    "enforce_eager",
    "quantization",
)
# The options that can change the numbers a model produces, so part of the cache key: the
# context length (RoPE scaling of some models depends on it), the tensor-parallel split (other
# reduction order), the quantization method and CUDA graphs (other kernels). Memory share is
# not: like our own batch size, it changes only how requests are scheduled together.
_NUMERICS = ("max_model_len", "tensor_parallel_size", "quantization", "enforce_eager")


def engine_kwargs(spec: ModelSpec, path: str, options: VLLMOptions) -> dict[str, Any]:
    """`vllm.LLM` keyword arguments: our dtype names map to vLLM's; the other options that are
    set pass through (`gpu_memory_utilization`, `max_model_len`, `tensor_parallel_size`,
    `enforce_eager`, `quantization`)."""
    dtype = options.dtype
    kwargs: dict[str, Any] = {
        "model": path,
        "dtype": dtype if dtype and dtype != "auto" else "auto",
    }
    if spec.revision:
        kwargs["revision"] = spec.revision
    for key in _PASSTHROUGH:
        value = getattr(options, key)
        if value is not None:
            kwargs[key] = value
    return kwargs


def _config_context(path: str, revision: str | None) -> int | None:
    """The context the model config names (what vLLM derives its default `max_model_len`
    from; it ignores the tokenizer's); None when the config cannot be read here (vLLM then
    reports it when the engine starts)."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(path, revision=revision)
    except (OSError, ValueError):
        return None
    return context_length(config)


def energy_devices_for(options: VLLMOptions) -> tuple[int, ...]:
    """The CUDA ordinals a vLLM engine occupies: 0 .. tensor_parallel_size - 1."""
    return tuple(range(options.tensor_parallel_size or 1))


class VLLMBackend:
    """A vLLM offline engine, created on first `generate` and kept for the session."""

    options_type = VLLMOptions

    def __init__(self, spec: ModelSpec, options: VLLMOptions) -> None:
        try:
            import vllm  # noqa: F401 - fail early with the hint, not at the first batch
        except ImportError:
            raise BackendError(INSTALL_HINT) from None
        from transformers import AutoTokenizer

        self.spec = spec
        self.weights = locate_weights(spec.model_id, spec.revision)
        self.options = options
        self.dtype = options.dtype
        self.tokenizer = AutoTokenizer.from_pretrained(self.weights.path, revision=spec.revision)
        if not self.tokenizer.chat_template:
            raise BackendError(f"{spec.model_id} has no chat template; use an instruction model")
        self._configured_context = options.max_model_len or _config_context(
            self.weights.path, spec.revision
        )
        # The tokenizer files' hash names what renders the prompts besides the template: with
        # it, the cache keys items by their messages and renders only the ones it misses.
        files = read_tokenizer_files(Path(self.weights.path))
        self.tokenizer_sha256 = None if files is None else files.tokenizer_sha256
        self.renders_from_identity = self.tokenizer_sha256 is not None
        self._engine: Any = None
        self._identity: dict[str, Any] | None = None
        self.load_time_s: float | None = None
        self.default_batch_size = 256  # vLLM schedules internally; a large window keeps it fed

    @property
    def engine(self) -> Any:
        """The `vllm.LLM` engine, created on first access and kept."""
        if self._engine is None:
            import vllm

            started = time.perf_counter()
            self._engine = vllm.LLM(**engine_kwargs(self.spec, self.weights.path, self.options))
            self.load_time_s = time.perf_counter() - started
        return self._engine

    def load(self) -> None:
        """Build the engine now (weights, KV cache, CUDA graph capture); once."""
        _ = self.engine

    def energy_devices(self) -> EnergyDevices:
        """The GPUs of the engine's tensor-parallel group."""
        return energy_devices_for(self.options)

    def identity(self) -> Mapping[str, Any]:
        """Everything about this engine that changes outputs (part of the cache key): model id,
        weights fingerprint, dtype, chat template hash, the vLLM, torch and transformers
        versions, the device type and GPU model (None without one), and the engine options
        that change numerics (None: vLLM's default). Computed once, without starting the
        engine, so a run served from the cache starts none."""
        if self._identity is None:
            template = str(self.tokenizer.chat_template)
            device_type, gpu_name = vllm_device()
            self._identity = {
                "backend": "vllm",
                "model_id": self.spec.model_id,
                "weights": self.weights.fingerprint,
                "dtype": self.dtype or "auto",
                "chat_template_sha256": hashlib.sha256(template.encode()).hexdigest()[:16],
                "tokenizer_sha256": self.tokenizer_sha256,
                "vllm_version": package_version("vllm"),
                "torch_version": package_version("torch"),
                "transformers_version": package_version("transformers"),
                "device_type": device_type,
                "gpu_name": gpu_name,
                **{name: getattr(self.options, name) for name in _NUMERICS},
            }
        return dict(self._identity)

    def render(self, messages: list[Message]) -> str:
        """The prompt text exactly as the model sees it (chat template applied)."""
        return render_chat(self.tokenizer, messages)

    def info(self) -> Mapping[str, Any]:
        """The identity plus weights source and load time, for the report."""
        return {
            **self.identity(),
            "weights_source": self.weights.source,
            "model_loads": int(self._engine is not None),
            "load_time_s": None if self.load_time_s is None else round(self.load_time_s, 3),
        }

    @property
    def context(self) -> int | None:
        """Tokens per sequence (prompt + generation): the engine's `max_model_len` once it
        runs, before that the `max_model_len` option or the model config's limit."""
        if self._engine is not None:
            model_config = getattr(getattr(self._engine, "llm_engine", None), "model_config", None)
            engine_limit = getattr(model_config, "max_model_len", None)
            if isinstance(engine_limit, int):
                return engine_limit
        return self._configured_context

    def check_prompt(self, prompt: str, settings: Generation) -> None:
        """Raise `PromptTooLong` unless the prompt plus `max_new_tokens` fits the context
        (vLLM would fail the whole batch for a prompt longer than `max_model_len`)."""
        tokens = len(prompt_token_ids(self.tokenizer, prompt))
        check_fits(tokens, self.context, settings.max_new_tokens)

    @property
    def max_in_flight(self) -> int:
        """The most streamed requests added to the engine and unfinished at once."""
        return max_in_flight(self.engine.llm_engine)

    def generate_stream(self, requests: Sequence[GenerationRequest]) -> Iterator[Finished]:
        """A worker's whole share through the engine's step API, yielded as requests finish
        (`vllm_stream.py`); the engine commits each to the cache as it arrives."""
        return stream_requests(self, self.engine.llm_engine, requests)

    def generate(
        self, requests: Sequence[GenerationRequest], batch_id: str
    ) -> list[GenerationResult]:
        """The whole batch in one engine call, one `SamplingParams` per request; results in
        request order."""
        import vllm

        engine = self.engine
        prompts = [self.render(request.messages) for request in requests]
        token_ids = [prompt_token_ids(self.tokenizer, prompt) for prompt in prompts]
        decodings = [sampling_kwargs(request) for request in requests]
        params = [vllm.SamplingParams(**decoding) for decoding in decodings]
        # The dict form of `vllm.inputs.TokensPrompt`: token ids taken as given (no BOS added),
        # accepted by every vLLM version that takes prompt objects.
        inputs = [{"prompt_token_ids": ids} for ids in token_ids]
        started = time.perf_counter()
        outputs = engine.generate(inputs, params, use_tqdm=False)
        wall = round(time.perf_counter() - started, 6)
        results = []
        sent = zip(prompts, token_ids, decodings, outputs, strict=True)
        for prompt, ids, decoding, output in sent:
            choice = output.outputs[0]
            latency, method = request_latency(output, wall)
            results.append(
                GenerationResult(
                    text=choice.text,
                    prompt=prompt,
                    tokens_in=len(ids),
                    tokens_out=generated_tokens(choice),
                    latency_s=round(latency, 6),
                    finish_reason=str(choice.finish_reason or "length"),
                    batch_id=batch_id,
                    batch_size=len(requests),
                    batch_wall_s=wall,
                    latency_method=method,
                    decoding=decoding,
                )
            )
        return results

    def unload(self) -> bool | None:
        """Release the engine before another model loads (model sweeps), the way vLLM's
        maintainers give (vllm-project/vllm#18806, #23793): drop the `LLM`, then
        `vllm.distributed.cleanup_dist_env_and_memory()` (model-parallel groups, the
        distributed environment, garbage collection, torch's CUDA cache). Not freed: memory
        the process's CUDA context itself holds, and whatever a vLLM version keeps alive
        outside the `LLM` object (reported with some versions until the process ends).
        Returns whether the `LLM` object was garbage-collected; None when none was built."""
        if self._engine is None:
            return None
        import gc
        import weakref

        try:
            gone: Any = weakref.ref(self._engine)
        except TypeError:
            gone = None
        self._engine = None
        try:
            from vllm.distributed import cleanup_dist_env_and_memory
        except ImportError:  # an older vLLM: collect and return the cache ourselves
            gc.collect()
            _empty_cuda_cache()
        else:
            cleanup_dist_env_and_memory()
        return None if gone is None else gone() is None

    def close(self) -> None:
        """Drop the engine."""
        self._engine = None


def _empty_cuda_cache() -> None:
    import torch  # vLLM depends on torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
