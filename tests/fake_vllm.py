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
  `last_token_ts`) or None (V1 versions that report no per-request metrics offline);
- `LLM.llm_engine` follows the step API that `LLM.generate` itself runs on
  (`add_request(request_id, prompt, params)`, `step()`, `has_unfinished_requests()`,
  `abort_request(request_ids)`, `vllm_config.scheduler_config.max_num_seqs`): added requests
  wait, at most `max_num_seqs` run at once (first come, first served), each generates one token
  per step and finishes after `1 + len(prompt_token_ids) % 4` steps, so requests finish out of
  order. `step()` returns only finished outputs when the params say
  `output_kind = RequestOutputKind.FINAL_ONLY` (what `LLM.generate` sets), else every running
  request's output (V0's cumulative kind). `kill_after_steps` raises `Killed` (a stand-in for
  the process being killed) at that step; `crash_after_steps` raises a RuntimeError there
  and the engine stays dead (every later call raises it, as vLLM's EngineDeadError).
"""

from __future__ import annotations

import enum
import sys
from collections import deque
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


class RequestOutputKind(enum.Enum):
    """`vllm.sampling_params.RequestOutputKind`."""

    CUMULATIVE = 0
    DELTA = 1
    FINAL_ONLY = 2


class Killed(BaseException):
    """The process was killed mid-generation (nothing after it runs)."""


@dataclass
class _Running:
    request_id: str
    ids: list[int]
    params: SamplingParams
    steps_left: int


class LLMEngine:
    """`LLM.llm_engine`: the step API. Records what it saw for the tests."""

    def __init__(self, llm: LLM, max_num_seqs: int) -> None:
        self.llm = llm
        self.vllm_config = SimpleNamespace(
            scheduler_config=SimpleNamespace(max_num_seqs=max_num_seqs)
        )
        self.model_config = SimpleNamespace(max_model_len=llm.kwargs.get("max_model_len"))
        self.waiting: deque[_Running] = deque()
        self.running: list[_Running] = []
        self.added: list[str] = []  # request ids in the order added
        self.prompts: dict[str, list[int]] = {}
        self.params: dict[str, SamplingParams] = {}
        self.finished: list[str] = []  # in finishing order
        self.aborted: list[str] = []
        self.steps = 0
        self.max_running = 0
        self.max_unfinished = 0
        self.kill_after_steps: int | None = None
        self.crash_after_steps: int | None = None
        self.on_step: Any = None  # called before each step (tests look at the journal)
        self.dead = False

    def add_request(
        self, request_id: str, prompt: Any, params: SamplingParams, **kwargs: Any
    ) -> None:
        if self.dead:
            raise RuntimeError("EngineCore encountered an issue")
        if request_id in self.prompts:
            raise ValueError(f"request id {request_id} already exists")
        ids = list(prompt["prompt_token_ids"])
        self.added.append(request_id)
        self.prompts[request_id] = ids
        self.params[request_id] = params
        self.waiting.append(_Running(request_id, ids, params, 1 + len(ids) % 4))
        self.max_unfinished = max(self.max_unfinished, self.get_num_unfinished_requests())

    def get_num_unfinished_requests(self) -> int:
        return len(self.waiting) + len(self.running)

    def has_unfinished_requests(self) -> bool:
        return self.get_num_unfinished_requests() > 0

    def abort_request(self, request_ids: Any) -> None:
        ids = {request_ids} if isinstance(request_ids, str) else set(request_ids)
        self.aborted += [
            r.request_id for r in (*self.waiting, *self.running) if r.request_id in ids
        ]
        self.waiting = deque(r for r in self.waiting if r.request_id not in ids)
        self.running = [r for r in self.running if r.request_id not in ids]

    def step(self) -> list[Any]:
        if self.on_step is not None:
            self.on_step(self)
        self.steps += 1
        if self.kill_after_steps is not None and self.steps > self.kill_after_steps:
            raise Killed("killed")
        if self.dead or (
            self.crash_after_steps is not None and self.steps > self.crash_after_steps
        ):
            self.dead = True  # as vLLM's EngineDeadError: every later call fails too
            raise RuntimeError("EngineCore encountered an issue")
        limit = self.vllm_config.scheduler_config.max_num_seqs
        while self.waiting and len(self.running) < limit:
            self.running.append(self.waiting.popleft())
        self.max_running = max(self.max_running, len(self.running))
        outputs = []
        for request in list(self.running):
            request.steps_left -= 1
            done = request.steps_left == 0
            if done:
                self.running.remove(request)
                self.finished.append(request.request_id)
            final_only = (
                getattr(request.params, "output_kind", None) is RequestOutputKind.FINAL_ONLY
            )
            if done or not final_only:
                outputs.append(self._output(request, done))
        return outputs

    def _output(self, request: _Running, done: bool) -> Any:
        eos = self.llm.tokenizer.eos_token_id
        choice = SimpleNamespace(
            text="42" if done else "4",
            token_ids=[52, 50, eos] if done else [52],
            finish_reason="stop" if done else None,
            stop_reason=None,
        )
        index = len(self.finished) - 1 if done else 0
        return SimpleNamespace(
            request_id=request.request_id,
            prompt=None,
            prompt_token_ids=request.ids,
            outputs=[choice],
            finished=done,
            metrics=_metrics(self.llm.metrics_version, index) if done else None,
        )


class LLM:
    """The offline engine: records every call in `calls`."""

    metrics_version: str | None = "v0"
    max_num_seqs: int = 256
    created: list[LLM] = []

    def __init__(self, model: str, **kwargs: Any) -> None:
        self.model = model
        self.kwargs = kwargs
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        self.calls: list[Call] = []
        self.llm_engine = LLMEngine(self, self.max_num_seqs)
        type(self).created.append(self)

    def generate(
        self, prompts: Any, sampling_params: Any = None, use_tqdm: bool = True
    ) -> list[Any]:
        if self.llm_engine.dead:
            raise RuntimeError("EngineCore encountered an issue")
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
    max_num_seqs: int = 256,
) -> ModuleType:
    """Put a fake `vllm` and `vllm.sampling_params` (and, with `gpu_name`, `vllm.platforms`)
    into `sys.modules`."""
    module = ModuleType("vllm")
    module.__version__ = version  # type: ignore[attr-defined]
    module.SamplingParams = SamplingParams  # type: ignore[attr-defined]
    engine = type(
        "LLM", (LLM,), {"metrics_version": metrics, "max_num_seqs": max_num_seqs, "created": []}
    )
    module.LLM = engine  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vllm", module)
    sampling = ModuleType("vllm.sampling_params")
    sampling.SamplingParams = SamplingParams  # type: ignore[attr-defined]
    sampling.RequestOutputKind = RequestOutputKind  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vllm.sampling_params", sampling)
    module.sampling_params = sampling  # type: ignore[attr-defined]
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
