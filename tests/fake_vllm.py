"""A stand-in for the `vllm` package (it needs a CUDA GPU and is not installed here).

It is honest where the backend's correctness depends on vLLM's behaviour:

- `LLM(model=...)` loads the model's tokenizer, and `LLM.generate` tokenizes a *string* prompt
  the way vLLM does, `tokenizer(prompt)` with the special tokens added (so a templated string
  that already starts with BOS gets a second one), while a `{"prompt_token_ids": [...]}`
  prompt is taken as given;
- `generate` takes one `SamplingParams` for all prompts or a list with one per prompt (a list
  of another length is an error, as in vLLM);
- `SamplingParams` accepts only real field names and rejects what every vLLM version rejects
  (`top_k` 0 is accepted only by newer versions, so it is rejected here);
- outputs are shaped like `vllm.RequestOutput`, with `metrics` in the shape of the chosen
  version: "v0" (`RequestMetrics`, wall-clock `first_scheduled_time` / `finished_time`), "v1"
  (`RequestStateStats`: wall-clock `arrival_time`, engine-core monotonic `scheduled_ts` /
  `last_token_ts`) or None (V1 versions that report no per-request metrics offline).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from types import ModuleType, SimpleNamespace
from typing import Any

from transformers import AutoTokenizer

_FIELDS = {
    "n", "best_of", "presence_penalty", "frequency_penalty", "repetition_penalty",
    "temperature", "top_p", "top_k", "min_p", "seed", "stop", "stop_token_ids", "ignore_eos",
    "max_tokens", "min_tokens", "logprobs", "prompt_logprobs", "skip_special_tokens",
}  # fmt: skip


class SamplingParams:
    """Keeps its keyword arguments; validates as every vLLM version does."""

    def __init__(self, **kwargs: Any) -> None:
        unknown = set(kwargs) - _FIELDS
        if unknown:
            raise TypeError(f"unexpected SamplingParams fields {sorted(unknown)}")
        top_k = kwargs.get("top_k", -1)
        if top_k < -1 or top_k == 0:
            raise ValueError(f"top_k must be -1 (disable), or at least 1, got {top_k}.")
        self.kwargs = kwargs

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["kwargs"][name]
        except KeyError:
            raise AttributeError(name) from None


@dataclass
class Call:
    """One `generate` call as the engine saw it: token ids and params per prompt."""

    prompt_token_ids: list[list[int]] = field(default_factory=list)
    params: list[SamplingParams] = field(default_factory=list)


def _metrics(version: str | None, index: int) -> Any:
    """Deterministic per-request timings: request i took 0.5 + i seconds once scheduled."""
    if version == "v0":
        return SimpleNamespace(
            arrival_time=1_700_000_000.0,
            first_scheduled_time=1_700_000_001.0 + index,
            first_token_time=1_700_000_001.2 + index,
            last_token_time=1_700_000_001.5 + 2 * index,
            finished_time=1_700_000_001.5 + 2 * index,
        )
    if version == "v1":
        return SimpleNamespace(
            num_generation_tokens=3,
            arrival_time=1_700_000_000.0,  # wall clock: not comparable with the *_ts below
            queued_ts=50.0,
            scheduled_ts=51.0 + index,
            first_token_ts=51.2 + index,
            last_token_ts=51.5 + 2 * index,
            first_token_latency=0.2,
        )
    return None


class LLM:
    """The offline engine: records every call in `calls`."""

    metrics_version: str | None = "v0"
    created: list[LLM] = []

    def __init__(self, model: str, **kwargs: Any) -> None:
        self.model = model
        self.kwargs = kwargs
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        self.calls: list[Call] = []
        type(self).created.append(self)

    def generate(
        self, prompts: Any, sampling_params: Any = None, use_tqdm: bool = True
    ) -> list[Any]:
        prompts = [prompts] if isinstance(prompts, str | dict) else list(prompts)
        if isinstance(sampling_params, list):
            if len(sampling_params) != len(prompts):
                raise ValueError("The lengths of prompts and sampling_params must be the same.")
            params = sampling_params
        else:
            params = [sampling_params or SamplingParams()] * len(prompts)
        call = Call()
        self.calls.append(call)
        outputs = []
        for index, (prompt, param) in enumerate(zip(prompts, params, strict=True)):
            if isinstance(prompt, str):
                ids = list(self.tokenizer(prompt).input_ids)  # vLLM adds special tokens
            else:
                ids = list(prompt["prompt_token_ids"])
            call.prompt_token_ids.append(ids)
            call.params.append(param)
            eos = self.tokenizer.eos_token_id
            choice = SimpleNamespace(
                text="42", token_ids=[52, 50, eos], finish_reason="stop", stop_reason=None
            )
            outputs.append(
                SimpleNamespace(
                    prompt=prompt if isinstance(prompt, str) else None,
                    prompt_token_ids=ids,
                    outputs=[choice],
                    metrics=_metrics(self.metrics_version, index),
                )
            )
        return outputs


def install(
    monkeypatch: Any,
    *,
    version: str = "0.10.1",
    metrics: str | None = "v0",
    gpu_name: str | None = None,
) -> ModuleType:
    """Put a fake `vllm` (and, with `gpu_name`, `vllm.platforms`) into `sys.modules`."""
    module = ModuleType("vllm")
    module.__version__ = version  # type: ignore[attr-defined]
    module.SamplingParams = SamplingParams  # type: ignore[attr-defined]
    engine = type("LLM", (LLM,), {"metrics_version": metrics, "created": []})
    module.LLM = engine  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vllm", module)
    if gpu_name is not None:
        platforms = ModuleType("vllm.platforms")
        platforms.current_platform = SimpleNamespace(  # type: ignore[attr-defined]
            device_type="cuda", get_device_name=lambda device_id=0: gpu_name
        )
        monkeypatch.setitem(sys.modules, "vllm.platforms", platforms)
        module.platforms = platforms  # type: ignore[attr-defined]
    else:
        monkeypatch.delitem(sys.modules, "vllm.platforms", raising=False)
    return module
