"""A whole share through transformers' continuous batching, results as requests finish.

Imported only when a model must generate with `batching = "continuous"` (see
`transformers_backend`). transformers' `ContinuousBatchingManager` (paged KV cache, a
first-come-first-served scheduler on its own thread) keeps up to `size` sequences in flight
and admits the next prompt as soon as one finishes, so a batch no longer runs as many decode
steps as its longest member. Requests are added in order with at most `max_in_flight`
unfinished (the contract of `backends.Finished`), each finished one is yielded at once, and
closing the stream early cancels the rest and stops the manager's thread.

Greedy decoding only: the manager draws sampled tokens from one generator for the whole
batch (no per-row seeds) and has no stop strings, so `refusal` names why a share goes
through the static path instead.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from typing import Any

from transformers import ContinuousBatchingConfig
from transformers.generation.continuous_batching.utils import WorkloadHints

from pytest_llmeval.backends import BackendError, Finished, GenerationRequest, GenerationResult
from pytest_llmeval.backends.chat_tokens import prompt_token_ids
from pytest_llmeval.backends.hf_decoding import decoding_record, pinned_generation_config
from pytest_llmeval.backends.hf_model import cut_at_stop, generated_length

LATENCY_METHOD = (
    "continuous batching: from the request's admission to the running batch until its last "
    "token (transformers' request lifespan; time queued before admission not counted)"
)
PAGE_SIZE = 64  # tokens per KV-cache page: small pages waste little on ~200-token prompts
POLL_S = 1.0  # how long to wait for a result before checking the manager's thread is alive


def max_in_flight(size: int) -> int:
    """Requests added and unfinished at once: twice the running batch, so a finished
    sequence's slot is refilled from the waiting queue without waiting for us."""
    return 2 * max(1, size)


def cache_config(size: int, longest_prompt: int, max_new_tokens: int) -> Any:
    """The manager's config sized for `size` sequences of at most `longest_prompt +
    max_new_tokens` tokens. Sizes are explicit because left to itself the manager gives
    the KV cache a share of free memory: on the CPU 60% of RAM, allocated up front."""
    per_request = math.ceil((longest_prompt + max_new_tokens) / PAGE_SIZE) + 1
    return ContinuousBatchingConfig(
        page_size=PAGE_SIZE,
        num_blocks=size * per_request,
        # A whole running batch's prompts in one step, as static `generate` prefills them.
        max_batch_tokens=max(PAGE_SIZE, size * longest_prompt),
        max_requests_per_batch=size,
        allow_block_sharing=False,  # prefix sharing would reorder the queue
        scheduler_type="fifo",
    )


def stream_continuous(
    backend: Any, requests: Sequence[GenerationRequest], size: int
) -> Iterator[Finished]:
    """Yield (index, result or error) as `requests` (one generation setting, greedy, no stop
    strings) finish under continuous batching with at most `size` sequences running."""
    model, tokenizer = backend.model, backend.tokenizer
    settings = requests[0].settings
    prompts = [backend.render(request.messages) for request in requests]
    ids = [prompt_token_ids(tokenizer, prompt) for prompt in prompts]
    config = pinned_generation_config(settings, model.generation_config, tokenizer.pad_token_id)
    manager = model.init_continuous_batching(
        generation_config=config,
        continuous_batching_config=cache_config(size, max(map(len, ids)), settings.max_new_tokens),
        workload_hints=WorkloadHints(
            max_prompt_length=max(map(len, ids)),
            max_generated_length=settings.max_new_tokens,
            num_requests=len(requests),
        ),
    )
    if backend.device.startswith("cuda"):
        manager.warmup()  # captures CUDA graphs before the first request, not during it
    manager.start()
    limit = max_in_flight(size)
    waiting = iter(range(len(requests)))
    live: dict[str, int] = {}
    done = False
    try:
        while True:
            while len(live) < limit and (index := next(waiting, None)) is not None:
                request_id = f"llmeval-{index}"
                manager.add_request(
                    ids[index],
                    request_id=request_id,
                    max_new_tokens=settings.max_new_tokens,
                    eos_token_id=sorted(backend.stop_ids),
                )
                live[request_id] = index
            if not live:
                done = True
                return
            output = _next_output(manager)
            index = live.pop(output.request_id, -1)
            if index < 0:
                continue  # not ours (a cancelled request's late answer)
            if output.error is not None:
                yield [(index, BackendError(f"continuous batching: {output.error}"))]
            else:
                result = _result(backend, requests[index], prompts[index], ids[index], output)
                yield [(index, result)]
    finally:
        for request_id in live:
            manager.cancel_request(request_id)
        manager.stop(block=True, timeout=30, hard_stop=not done)
        manager.destroy()


def _next_output(manager: Any) -> Any:
    """The next finished request's output; BackendError when the manager's thread died."""
    while True:
        output = manager.get_result(timeout=POLL_S)
        if output is None:
            if not manager.is_running():
                raise BackendError(
                    "transformers' continuous batching thread stopped before every request finished"
                )
            continue
        if output.is_finished():
            return output


def _result(
    backend: Any, request: GenerationRequest, prompt: str, ids: list[int], output: Any
) -> GenerationResult:
    settings = request.settings
    tokens = list(output.generated_tokens)
    n_out, _, stopped = generated_length(backend, tokens)
    text = str(backend.tokenizer.decode(tokens[:n_out], skip_special_tokens=True))
    text, cut = cut_at_stop(text, settings.stop)
    started, finished = output.lifespan
    latency = finished - started if started > 0 and finished >= started else 0.0
    if latency == 0.0:
        latency = time.perf_counter() - output.created_time
    return GenerationResult(
        text=text,
        prompt=prompt,
        tokens_in=len(ids),
        tokens_out=n_out,
        latency_s=round(latency, 6),
        finish_reason="stop" if stopped or cut else "length",
        batch_id="",
        batch_size=0,
        batch_wall_s=0.0,
        latency_method=LATENCY_METHOD,
        decoding=decoding_record(settings, request.seed),
        pad_tokens=0,  # every sequence runs at its own length: nothing is padded
    )
