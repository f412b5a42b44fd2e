"""One vLLM request and its output: the sampling parameters sent, the tokens and the latency read.

Kept apart from the engine (`vllm_backend.py`) because these are pure mappings, tested without
vLLM: what a `GenerationRequest` becomes as `vllm.SamplingParams` keyword arguments, and what
a `vllm.RequestOutput` says about tokens and time, across the vLLM versions users run.
"""

from __future__ import annotations

from typing import Any

from pytest_llmeval.analyze.performance import BATCH_WALL_PREFIX
from pytest_llmeval.backends import GenerationRequest

BATCH_WALL_METHOD = (
    f"{BATCH_WALL_PREFIX}: this vLLM version reported no per-request metrics "
    "(not this item's own latency)"
)

# Per-request timestamps by vLLM version, as (start, end, method). Each pair is read from one
# clock: V0's RequestMetrics are all wall-clock; V1's RequestStateStats mix the frontend's
# wall-clock `arrival_time` with the engine core's monotonic `*_ts`, so only `*_ts` are paired.
_METRIC_PAIRS = (
    (
        "first_scheduled_time",
        "finished_time",
        "vllm request metrics: first scheduled until finished",
    ),
    (
        "first_scheduled_time",
        "last_token_time",
        "vllm request metrics: first scheduled until last token",
    ),
    (
        "scheduled_ts",
        "last_token_ts",
        "vllm request metrics: first scheduled until last token (engine-core clock)",
    ),
)


def sampling_kwargs(request: GenerationRequest) -> dict[str, Any]:
    """`vllm.SamplingParams` keyword arguments for one request, every setting explicit.

    The offline engine uses explicit parameters as given, but a vLLM server started with
    `--generation-config auto` (the default in recent versions) fills every omitted field from
    the model's generation_config.json (a repetition_penalty, a top_k), and defaults move
    between versions: so nothing is left to a default. Greedy decoding is temperature 0 with
    top_p 1 and no top-k cut; `seed` is the request's own derived seed when sampling (so a draw
    does not depend on its batch-mates or the batch size) and None for greedy decoding. vLLM
    disables top-k with -1 in every version (0 only in newer ones).
    """
    settings = request.settings
    greedy = settings.greedy
    return {
        "n": 1,
        "max_tokens": settings.max_new_tokens,
        "temperature": 0.0 if greedy else settings.temperature,
        "top_p": 1.0 if greedy else settings.top_p,
        "top_k": -1 if greedy or settings.top_k == 0 else settings.top_k,
        "min_p": 0.0,
        "repetition_penalty": settings.repetition_penalty,
        "presence_penalty": 0.0,
        "frequency_penalty": 0.0,
        "stop": list(settings.stop),
        "seed": request.seed,
    }


def generated_tokens(choice: Any) -> int:
    """Tokens a vLLM completion generated without its end token (the rule every backend
    follows): vLLM keeps the EOS or the stop token id that ended it in `token_ids`
    (`stop_reason` None or an int); a stop string's tokens stay counted, as elsewhere."""
    count = len(choice.token_ids)
    ended_on_token = choice.finish_reason == "stop" and not isinstance(choice.stop_reason, str)
    return max(0, count - 1) if ended_on_token and count else count


def request_latency(
    output: Any, batch_wall: float, fallback: str = BATCH_WALL_METHOD
) -> tuple[float, str]:
    """A request's own latency in seconds and how it was measured: from vLLM's per-request
    metrics when this version reports them (first scheduled until finished or last token),
    else `batch_wall` with the `fallback` method: the batch's wall time, named as such (V1
    versions report no metrics for the offline engine unless stats logging is on), or what
    the caller measured instead (a streamed request: added until finished)."""
    metrics = getattr(output, "metrics", None)
    for start_name, end_name, method in _METRIC_PAIRS:
        start, end = _timestamp(metrics, start_name), _timestamp(metrics, end_name)
        if start is not None and end is not None and end >= start:
            return end - start, method
    return batch_wall, fallback


def _timestamp(metrics: Any, name: str) -> float | None:
    """A set timestamp (vLLM V1 leaves an unset one at 0.0, V0 at None)."""
    value = getattr(metrics, name, None)
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    return None
