"""How the transformers backend decodes: every setting pinned, sampled rows seeded one by one.

Same decode: `model.generate` fills whatever a call leaves unset from the checkpoint's
generation_config.json, so a model that ships `repetition_penalty: 1.3` or `top_k: 20` would
decode differently here than on vLLM, which sends explicit values. The loaded model's
generation config is therefore replaced by a neutral one that keeps only its token ids
(`neutral_generation_config`), and each batch passes a full `GenerationConfig` built from our
`Generation` alone (`pinned_generation_config`).

Seeded samples: a sampled draw must not depend on its batch-mates, the batch size, `-n` or where
a run resumed. `generate(do_sample=True)` draws the whole batch from one global RNG, so instead
`generate` runs greedy (`do_sample=False`) and `PerRowSampler`, the last logits processor, does
the sampling: per row it applies temperature, top-k and top-p (transformers' own warpers, in
the order `generate` would), draws the next token with that row's own `torch.Generator`
(seeded with the request's derived seed) and masks every other token, so the greedy pick takes
the drawn token. Every row's generator advances by one draw per step whatever the other rows
do. Left padding moves a row's logits by ~4e-5, so a draw can still flip in a near tie.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers import (
    GenerationConfig,
    LogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from pytest_llmeval.declare.task import Generation

GREEDY = "greedy"
PER_ROW_SEEDED = "per-row seeded"
# The only fields taken from a checkpoint's generation config: which ids end, begin and pad.
_TOKEN_IDS = ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id")


def neutral_generation_config(model_config: GenerationConfig) -> GenerationConfig:
    """A generation config with `model_config`'s token ids and nothing else (no sampling,
    penalty, length or beam defaults), to replace the loaded model's own."""
    ids = {name: getattr(model_config, name, None) for name in _TOKEN_IDS}
    kept = {name: value for name, value in ids.items() if value is not None}
    return GenerationConfig(**kept)  # type: ignore[no-untyped-call]


def pinned_generation_config(
    settings: Generation, base: GenerationConfig, pad_token_id: int | None
) -> GenerationConfig:
    """The config of one batch: `base`'s token ids plus every decoding setting from `settings`,
    each set to an explicit value (neutral unless `settings` asks otherwise).

    `generate` itself always decodes greedily; for sampled settings `PerRowSampler` draws.
    A field left None here is filled by `generate` from the model's generation config, which
    must be `neutral_generation_config` (the backend sets it at load), so it stays off.
    """
    config = neutral_generation_config(base)
    config.update(  # type: ignore[no-untyped-call]
        max_new_tokens=settings.max_new_tokens,
        min_new_tokens=None,
        min_length=0,
        do_sample=False,
        num_beams=1,
        num_return_sequences=1,
        # Warping is PerRowSampler's job: with do_sample=False generate applies no warper
        # (top_k is left to its inert default: setting it makes transformers warn).
        temperature=1.0,
        top_p=1.0,
        typical_p=1.0,
        min_p=None,
        epsilon_cutoff=0.0,
        eta_cutoff=0.0,
        repetition_penalty=settings.repetition_penalty,
        encoder_repetition_penalty=1.0,
        no_repeat_ngram_size=0,
        bad_words_ids=None,
        suppress_tokens=None,
        begin_suppress_tokens=None,
        forced_bos_token_id=None,
        forced_eos_token_id=None,
        exponential_decay_length_penalty=None,
        sequence_bias=None,
        stop_strings=list(settings.stop) or None,
        pad_token_id=pad_token_id,
    )
    return config


def decoding_record(settings: Generation, seed: int | None) -> dict[str, Any]:
    """The effective decoding settings of one item, for its record (`ItemRecord.decoding`)."""
    return {
        "sampler": GREEDY if settings.greedy else PER_ROW_SEEDED,
        "do_sample": not settings.greedy,
        "temperature": settings.temperature,
        "top_p": settings.top_p,
        "top_k": settings.top_k,
        "repetition_penalty": settings.repetition_penalty,
        "max_new_tokens": settings.max_new_tokens,
        "stop_strings": list(settings.stop),
        "seed": seed,
    }


class PerRowSampler(LogitsProcessor):
    """Samples each row's next token with the row's own seeded generator (see the module
    docstring); returns scores that are 0 at the drawn token and -inf elsewhere."""

    def __init__(self, seeds: Sequence[int], settings: Generation) -> None:
        if settings.greedy:
            raise ValueError("PerRowSampler needs temperature > 0; greedy decoding draws nothing")
        self.seeds = list(seeds)
        self.warpers: list[LogitsProcessor] = [TemperatureLogitsWarper(settings.temperature)]
        if settings.top_k > 0:
            self.warpers.append(TopKLogitsWarper(settings.top_k))
        if settings.top_p < 1.0:
            self.warpers.append(TopPLogitsWarper(settings.top_p))
        self._generators: list[torch.Generator] | None = None
        self.logprobs: list[list[float]] = [[] for _ in self.seeds]
        """Per row, per step: the drawn token's log-probability under the unwarped scores
        (the `logprob` candidate selector ranks by their mean)."""

    def _rows(self, device: torch.device) -> list[torch.Generator]:
        if self._generators is None:
            self._generators = [
                torch.Generator(device=device).manual_seed(seed) for seed in self.seeds
            ]
        return self._generators

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        """Called by `generate` once per step: warp each row's scores, draw its token with its
        generator, and return scores that leave the greedy pick no other choice."""
        generators = self._rows(scores.device)
        if scores.shape[0] != len(generators):
            raise ValueError(f"{scores.shape[0]} rows of scores for {len(generators)} seeds")
        warped = scores.float()
        for warper in self.warpers:
            warped = warper(input_ids, warped)
        probs = torch.softmax(warped, dim=-1)
        drawn = []
        for row, generator in enumerate(generators):
            # The exponential race (what torch.multinomial does for one draw): a fixed number of
            # random values per step, so the generator's position depends on the step alone.
            race = torch.empty_like(probs[row]).exponential_(1.0, generator=generator)
            drawn.append(int(torch.argmax(probs[row] / race)))
        rows = torch.arange(len(drawn), device=scores.device)
        tokens = torch.tensor(drawn, device=scores.device)
        own = torch.log_softmax(scores.float(), dim=-1)[rows, tokens].tolist()
        for row, value in enumerate(own):
            self.logprobs[row].append(float(value))
        picked = torch.full_like(scores, float("-inf"))
        picked[rows, tokens] = 0.0
        return picked  # type: ignore[return-value]

    def mean_logprob(self, row: int, tokens: int) -> float | None:
        """Mean log-probability of `row`'s first `tokens` drawn tokens (at least its first:
        a sequence that ended at once is ranked by its end token); None before any step."""
        drawn = self.logprobs[row][: max(1, tokens)]
        return sum(drawn) / len(drawn) if drawn else None
