"""A whole share through vLLM's step API, results as requests finish (`generate_stream`).

`LLM.generate` adds every prompt to `LLM.llm_engine` and steps it until all are done; here
the same engine is driven directly (`add_request`, `step`, `has_unfinished_requests`,
`abort_request`: the API `LLM.generate` itself runs on, in V0 and V1), so that each finished
request can be committed at once. Requests are added in order, keeping `max_in_flight` (twice
the scheduler's `max_num_seqs`) added and unfinished: vLLM's scheduler is first come, first
served, so it always has a full batch to run and a waiting queue to refill it from, as with
every prompt added up front, while a killed run has only those few in flight. Each request
keeps its own seeded `SamplingParams` (`vllm_requests.py`), asks for its final output only
(what `LLM.generate` sets) and gets its latency from vLLM's request metrics, or, when this
version reports none, from adding it to the engine until its output.
"""

from __future__ import annotations

import importlib
import itertools
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pytest_llmeval.backends import BackendError, Finished, GenerationRequest, GenerationResult
from pytest_llmeval.backends.chat_tokens import prompt_token_ids
from pytest_llmeval.backends.vllm_requests import (
    generated_tokens,
    request_latency,
    sampling_kwargs,
)
from pytest_llmeval.declare.task import Message

STREAM_LATENCY = (
    "per-request: wall time from adding it to the engine until its output "
    "(queueing included; this vLLM version reported no per-request metrics)"
)
DEFAULT_MAX_NUM_SEQS = 1024  # vLLM V1's offline default on large GPUs: never starve it
_streams = itertools.count(1)


class _Renders(Protocol):
    tokenizer: Any

    def render(self, messages: list[Message]) -> str: ...


@dataclass
class _Live:
    index: int
    prompt: str
    ids: list[int]
    decoding: dict[str, Any]
    added: float


def max_in_flight(llm_engine: Any) -> int:
    """Twice the scheduler's `max_num_seqs` (V1: `vllm_config.scheduler_config`, V0 and
    early V1: `scheduler_config`), so the waiting queue never runs dry."""
    for holder in (getattr(getattr(llm_engine, "vllm_config", None), "scheduler_config", None),
                   getattr(llm_engine, "scheduler_config", None)):  # fmt: skip
        value = getattr(holder, "max_num_seqs", None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return 2 * value
    return 2 * DEFAULT_MAX_NUM_SEQS


def _final_only() -> Any:
    """`RequestOutputKind.FINAL_ONLY` where this vLLM has it (step() then returns finished
    requests only), else None (V0: every running request's output, filtered here)."""
    try:
        kinds = importlib.import_module("vllm.sampling_params").RequestOutputKind
    except (ImportError, AttributeError):
        return None
    return getattr(kinds, "FINAL_ONLY", None)


def stream_requests(
    backend: _Renders, llm_engine: Any, requests: Sequence[GenerationRequest]
) -> Iterator[Finished]:
    """Yield (index, result or error) as `requests` finish on `llm_engine`; a request vLLM
    refuses when added (e.g. bad params) is that request's error. Closing the iterator early
    (or an exception, or a kill signal) aborts the requests still in the engine."""
    import vllm

    limit = max_in_flight(llm_engine)
    final_only = _final_only()
    prefix = f"llmeval-{next(_streams)}-"  # unique: vLLM's own ids are plain counters
    waiting = deque(enumerate(requests))
    live: dict[str, _Live] = {}
    try:
        while waiting or live:
            refused: Finished = []
            while waiting and len(live) < limit:
                index, request = waiting.popleft()
                try:
                    prompt = backend.render(request.messages)
                    ids = prompt_token_ids(backend.tokenizer, prompt)
                    decoding = sampling_kwargs(request)
                    params = vllm.SamplingParams(**decoding)
                    if final_only is not None:
                        params.output_kind = final_only
                    request_id = f"{prefix}{index}"
                    llm_engine.add_request(request_id, {"prompt_token_ids": ids}, params)
                except Exception as exc:
                    refused.append((index, exc))
                    continue
                live[request_id] = _Live(index, prompt, ids, decoding, time.perf_counter())
            if refused:
                yield refused
            if not live:
                continue
            if not llm_engine.has_unfinished_requests():
                raise BackendError(f"vLLM dropped {len(live)} requests without an output")
            finished: Finished = []
            for output in llm_engine.step():  # may be empty while vLLM detokenizes
                entry = live.pop(output.request_id, None) if output.finished else None
                if entry is not None:
                    finished.append((entry.index, _result(entry, output)))
            if finished:
                yield finished
    finally:
        if live:
            llm_engine.abort_request(list(live))


def _result(entry: _Live, output: Any) -> GenerationResult:
    """A finished request's result; the engine stamps its window (batch) fields."""
    choice = output.outputs[0]
    own = time.perf_counter() - entry.added
    latency, method = request_latency(output, own, STREAM_LATENCY)
    return GenerationResult(
        text=choice.text,
        prompt=entry.prompt,
        tokens_in=len(entry.ids),
        tokens_out=generated_tokens(choice),
        latency_s=round(latency, 6),
        finish_reason=str(choice.finish_reason or "length"),
        batch_id="",
        batch_size=0,
        batch_wall_s=0.0,
        latency_method=method,
        decoding=entry.decoding,
    )
