"""The vLLM backend: the offline `vllm.LLM` engine, resident per worker (GPU).

`--model vllm:<hub id, alias or local dir>`, or an alias with `backend = "vllm"` whose extra
keys are `VLLMOptions`. vLLM is an optional dependency (`pip install vllm`); without it the
backend reports a one-line install hint. The engine batches internally, so a whole window of
requests goes in one `generate` call; the chat template is applied by our tokenizer call, the
same way the transformers backend does, so that the two backends see identical prompts and can
be compared.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_llmeval.backends import (
    BackendError,
    EnergyDevices,
    GenerationRequest,
    GenerationResult,
)
from pytest_llmeval.backends.weights import locate_weights
from pytest_llmeval.declare.models import ModelSpec
from pytest_llmeval.declare.task import Generation, Message

INSTALL_HINT = "the vllm backend needs vLLM on a CUDA machine: pip install vllm"
LATENCY_METHOD = "vllm request metrics: first scheduled until finished (else batch wall time)"


def sampling_kwargs(settings: Generation) -> dict[str, Any]:
    """`vllm.SamplingParams` keyword arguments equivalent to our generation settings.

    Greedy decoding is temperature 0 in vLLM (top_p must then stay 1); a seed is passed only
    when sampling, where it makes the draw reproducible.
    """
    kwargs: dict[str, Any] = {
        "max_tokens": settings.max_new_tokens,
        "temperature": 0.0 if settings.greedy else settings.temperature,
        "top_p": 1.0 if settings.greedy else settings.top_p,
        "n": 1,
    }
    if settings.stop:
        kwargs["stop"] = list(settings.stop)
    if not settings.greedy:
        kwargs["seed"] = settings.seed
    return kwargs


@dataclass(frozen=True)
class VLLMOptions:
    """Per-model options of the vllm backend (alias keys; `--llmeval-dtype` overrides `dtype`).
    None leaves the choice to vLLM; the others are `vllm.LLM` arguments of the same name."""

    dtype: str | None = None  # "auto", "float16", "bfloat16", "float32"
    gpu_memory_utilization: float | None = None  # fraction of GPU memory for weights + KV cache
    max_model_len: int | None = None  # context length (a smaller one needs less KV cache)
    tensor_parallel_size: int | None = None  # GPUs to split the model over
    enforce_eager: bool | None = None  # no CUDA graphs: starts faster, generates slower


# Passed to `vllm.LLM` only when set, so that vLLM's own defaults stay in charge otherwise.
_PASSTHROUGH = ("gpu_memory_utilization", "max_model_len", "tensor_parallel_size", "enforce_eager")


def engine_kwargs(spec: ModelSpec, path: str, options: VLLMOptions) -> dict[str, Any]:
    """`vllm.LLM` keyword arguments: our dtype names map to vLLM's; the other options that are
    set pass through (`gpu_memory_utilization`, `max_model_len`, `tensor_parallel_size`,
    `enforce_eager`)."""
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


def energy_devices_for(options: VLLMOptions) -> tuple[int, ...]:
    """The CUDA ordinals a vLLM engine occupies: 0 .. tensor_parallel_size - 1."""
    return tuple(range(options.tensor_parallel_size or 1))


def generated_tokens(choice: Any) -> int:
    """Tokens a vLLM completion generated without its end token (the rule every backend
    follows): vLLM keeps the EOS or the stop token id that ended it in `token_ids`
    (`stop_reason` None or an int); a stop string's tokens stay counted, as elsewhere."""
    count = len(choice.token_ids)
    ended_on_token = choice.finish_reason == "stop" and not isinstance(choice.stop_reason, str)
    return max(0, count - 1) if ended_on_token and count else count


def request_latency(output: Any, fallback: float) -> float:
    """A request's own latency from vLLM's metrics when it reports them."""
    metrics = getattr(output, "metrics", None)
    start = getattr(metrics, "first_scheduled_time", None) or getattr(metrics, "arrival_time", None)
    end = getattr(metrics, "finished_time", None) or getattr(metrics, "last_token_time", None)
    if isinstance(start, int | float) and isinstance(end, int | float) and end >= start:
        return float(end - start)
    return fallback


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
        self._engine: Any = None
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
        """Model id, weights fingerprint, dtype and chat template hash (part of the cache key)."""
        template = str(self.tokenizer.chat_template)
        return {
            "backend": "vllm",
            "model_id": self.spec.model_id,
            "weights": self.weights.fingerprint,
            "dtype": self.dtype or "auto",
            "chat_template_sha256": hashlib.sha256(template.encode()).hexdigest()[:16],
        }

    def render(self, messages: list[Message]) -> str:
        """The prompt text exactly as the model sees it (chat template applied)."""
        rendered = self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )
        return str(rendered)

    def info(self) -> Mapping[str, Any]:
        """The identity plus weights source and load time, for the report."""
        return {
            **self.identity(),
            "weights_source": self.weights.source,
            "model_loads": int(self._engine is not None),
            "load_time_s": None if self.load_time_s is None else round(self.load_time_s, 3),
        }

    def generate(
        self, requests: Sequence[GenerationRequest], batch_id: str
    ) -> list[GenerationResult]:
        """The whole batch in one engine call; results in request order."""
        import vllm

        engine = self.engine
        prompts = [self.render(request.messages) for request in requests]
        params = vllm.SamplingParams(**sampling_kwargs(requests[0].settings))
        started = time.perf_counter()
        outputs = engine.generate(prompts, params, use_tqdm=False)
        wall = time.perf_counter() - started
        results = []
        for prompt, output in zip(prompts, outputs, strict=True):
            choice = output.outputs[0]
            results.append(
                GenerationResult(
                    text=choice.text,
                    prompt=prompt,
                    tokens_in=len(output.prompt_token_ids or []),
                    tokens_out=generated_tokens(choice),
                    latency_s=round(request_latency(output, wall), 6),
                    finish_reason=str(choice.finish_reason or "length"),
                    batch_id=batch_id,
                    batch_size=len(requests),
                    batch_wall_s=round(wall, 6),
                    latency_method=LATENCY_METHOD,
                )
            )
        return results

    def close(self) -> None:
        """Drop the engine."""
        self._engine = None
