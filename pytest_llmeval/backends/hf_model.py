"""The torch side of the transformers backend: loading the weights and generating a batch.

Imported only when a model must generate (a cache miss): `transformers_backend` itself
imports neither torch nor transformers, so a rerun served from the cache never pays for them.
Per-item latency is the time from the batch start until that item's sequence produced its
last token, read from a per-step clock, so items that finish early in a batch are not
charged for the rest.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, cast

import torch
from transformers import AutoModelForCausalLM, DynamicCache, LogitsProcessor, LogitsProcessorList

from pytest_llmeval.backends import GenerationRequest, GenerationResult
from pytest_llmeval.backends.hf_decoding import (
    PerRowSampler,
    decoding_record,
    neutral_generation_config,
    pinned_generation_config,
)

LATENCY_METHOD = "sequence-finish: batch start until the item's last token (per-step clock)"
OutOfMemory = torch.cuda.OutOfMemoryError


class _StepClock(LogitsProcessor):
    """Records a timestamp each decoding step (called once per step, before the token is picked)."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        self.times.append(time.perf_counter())
        return scores


def load_model(path: str, revision: str | None, dtype: str, device: str) -> Any:
    """The causal LM at `path` in `dtype` on `device`, in eval mode, its generation config
    neutral (nothing from the checkpoint's sampling defaults: same decode on every backend)."""
    loaded = AutoModelForCausalLM.from_pretrained(
        path, revision=revision, dtype=getattr(torch, dtype)
    )
    model = loaded.to(device).eval()  # type: ignore[arg-type]
    model.generation_config = neutral_generation_config(model.generation_config)
    return model


def stop_token_ids(model: Any, tokenizer: Any) -> set[int]:
    """The ids that end a sequence: the model's generation config's and the tokenizer's EOS."""
    eos = model.generation_config.eos_token_id
    ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


def parameters(model: Any) -> int:
    """The model's parameter count."""
    return sum(p.numel() for p in model.parameters())


def peak_vram(device: str) -> int:
    """Peak CUDA memory allocated by this process on `device` so far."""
    return int(torch.cuda.max_memory_allocated(torch.device(device)))


def reset_peak_vram(device: str) -> None:
    """Start `device`'s peak-memory statistics afresh (before a model loads: its peak is then
    its own, not the previous model's); nothing off CUDA."""
    if device.startswith("cuda") and torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats(torch.device(device))


def empty_cuda_cache() -> None:
    """Return cached CUDA memory (nothing without CUDA)."""
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def cuda_usable() -> bool:
    """Whether torch can use a CUDA device here."""
    return bool(torch.cuda.is_available())


def set_threads(count: int) -> None:
    """torch's intra-op thread count."""
    torch.set_num_threads(count)


@torch.inference_mode()
def generate_batch(
    backend: Any, requests: Sequence[GenerationRequest], batch_id: str
) -> list[GenerationResult]:
    """One batch through `backend.model.generate` with left padding: results in request
    order, each with its own latency (`LATENCY_METHOD`)."""
    model, tokenizer = backend.model, backend.tokenizer
    settings = requests[0].settings
    prompts = [backend.render(request.messages) for request in requests]
    # Candidates of one item share their prompt: each distinct prompt is encoded (and, below,
    # prefilled) once, and its rows index into it.
    unique = list(dict.fromkeys(prompts))
    rows = torch.tensor([unique.index(prompt) for prompt in prompts], device=backend.device)
    # The chat template already carries the special tokens (BOS etc.); don't add them twice.
    distinct = tokenizer(unique, return_tensors="pt", padding=True, add_special_tokens=False).to(
        backend.device
    )
    encoded = {name: tensor[rows] for name, tensor in distinct.items()}
    clock = _StepClock()
    processors: list[LogitsProcessor] = [clock]
    sampler = None
    if not settings.greedy:
        # Each row draws with its own seed: see hf_decoding.
        seeds = [cast(int, request.seed) for request in requests]
        sampler = PerRowSampler(seeds, settings)
        processors.append(sampler)
    config = pinned_generation_config(settings, model.generation_config, tokenizer.pad_token_id)
    started = time.perf_counter()
    # (A one-token prompt has no prefix to share.)
    repeats = len(unique) < len(prompts) and distinct["input_ids"].shape[1] > 1
    repeats = repeats and backend.options.share_prefill
    shared = shared_prefill(model, distinct, rows) if repeats else {}
    output = model.generate(
        **encoded,
        **shared,
        generation_config=config,
        logits_processor=LogitsProcessorList(processors),
        tokenizer=tokenizer if settings.stop else None,
    )
    wall = time.perf_counter() - started
    new_tokens = output[:, encoded["input_ids"].shape[1] :].tolist()
    input_lengths = encoded["attention_mask"].sum(dim=1).tolist()
    padded_length = int(encoded["input_ids"].shape[1])
    results = []
    for row, (request, prompt, tokens, n_in) in enumerate(
        zip(requests, prompts, new_tokens, input_lengths, strict=True)
    ):
        n_out, steps, stopped = generated_length(backend, tokens)
        text = str(tokenizer.decode(tokens[:n_out], skip_special_tokens=True))
        text, cut = cut_at_stop(text, settings.stop)
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
                mean_logprob=None if sampler is None else sampler.mean_logprob(row, n_out),
            )
        )
    return results


def shared_prefill(model: Any, distinct: Any, rows: torch.Tensor) -> dict[str, Any]:
    """Prefill each distinct prompt once and give every row its prompt's key/value cache.

    `generate` would prefill n copies of an item's prompt for its n candidates; here the
    distinct prompts but their last token go through the model once (left padded, positions
    from the attention mask as `generate` computes them), the cache is indexed out to the
    batch's rows, and `generate` continues from it with the last prompt token (the prefix
    cache reuse transformers documents). Returns `generate`'s `past_key_values` argument."""
    mask = distinct["attention_mask"][:, :-1]
    positions = (mask.long().cumsum(-1) - 1).clamp(min=0)
    cache = DynamicCache(config=model.config)
    model(
        input_ids=distinct["input_ids"][:, :-1],
        attention_mask=mask,
        position_ids=positions,
        past_key_values=cache,
        use_cache=True,
    )
    cache.batch_select_indices(rows)
    return {"past_key_values": cache}


def generated_length(backend: Any, tokens: list[int]) -> tuple[int, int, bool]:
    """Tokens this sequence generated without its end token (the rule every backend
    follows for `tokens_out`), the decoding steps it took, and whether it stopped itself."""
    for position, token in enumerate(tokens):
        if token in backend.stop_ids:
            return position, position + 1, True
        if token == backend.tokenizer.pad_token_id:
            # Padding after a stop string ended the sequence early.
            return position, position, True
    return len(tokens), len(tokens), False


def cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """Truncate at the first stop sequence (generate stops after it but keeps it)."""
    positions = [text.find(s) for s in stop if s and s in text]
    if not positions:
        return text, False
    return text[: min(positions)], True
