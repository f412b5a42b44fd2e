"""Decode speed-ups for the transformers backend on this CPU, each against the backend's own
decode: same batches, same greedy texts?

Each variant generates the same batches (the first N GSM8K test prompts with the shipped
prompt and chat template, sorted by token length and cut as the engine does) with the
backend's pinned generation config; the variants run in turn, round after round (A B C A B
C), and each is reported as its time relative to the baseline in the same round, with
whether all its texts equal the baseline's. Variants:

- `baseline`: what the backend does (SDPA attention, dynamic KV cache, `torch.inference_mode`)
- `eager`: eager attention instead of SDPA
- `no_grad`: `torch.no_grad` instead of `torch.inference_mode`
- `static`: a static KV cache (`cache_implementation="static"`), no compilation
- `static_compiled`: static KV cache and the forward compiled by `generate` (`torch.compile`,
  forced on the CPU with `CompileConfig(_compile_all_devices=True)`); its first call compiles
  and is timed apart as a warm-up

    python benchmarks/bench_decode.py --items 16 --batch-size 8 --max-new-tokens 64 --rounds 2
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import Any

import torch
from common import attention, gsm8k_rows

from pytest_llmeval.backends.hf_decoding import neutral_generation_config, pinned_generation_config
from pytest_llmeval.backends.transformers_backend import TransformersBackend, TransformersOptions
from pytest_llmeval.declare.models import resolve_model
from pytest_llmeval.declare.task import Generation
from pytest_llmeval.run.batching import cut_batches

VARIANTS = ("baseline", "eager", "no_grad", "static", "static_compiled")


def prompts(backend: TransformersBackend, n: int) -> list[str]:
    from common import _shipped_prompt

    template = _shipped_prompt()
    return [
        backend.render([{"role": "user", "content": template.format(**row)}])
        for row in gsm8k_rows(n)
    ]


def generate(
    backend: TransformersBackend, batches: list[list[str]], variant: str, max_new_tokens: int
) -> tuple[float, list[str]]:
    from transformers import CompileConfig

    model = backend.model
    config = pinned_generation_config(
        Generation(max_new_tokens=max_new_tokens),
        model.generation_config,
        backend.tokenizer.pad_token_id,
    )
    if variant.startswith("static"):
        config.cache_implementation = "static"
    if variant == "static_compiled":
        compile_config = CompileConfig(fullgraph=False, dynamic=False)
        compile_config._compile_all_devices = True
        config.compile_config = compile_config
    else:
        config.disable_compile = True
    grad: Callable[[], Any] = torch.no_grad if variant == "no_grad" else torch.inference_mode
    impl = "eager" if variant == "eager" else model.config._attn_implementation
    texts = []
    started = time.perf_counter()
    with attention(model, impl), grad():
        for batch in batches:
            encoded = backend.tokenizer(
                batch, return_tensors="pt", padding=True, add_special_tokens=False
            )
            output = model.generate(**encoded, generation_config=config)
            new = output[:, encoded["input_ids"].shape[1] :]
            texts += backend.tokenizer.batch_decode(new, skip_special_tokens=True)
    return time.perf_counter() - started, texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's own)")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    variants = args.variants.split(",")
    backend = TransformersBackend(resolve_model("smollm2-135m"), TransformersOptions())
    backend.load()
    backend.model.generation_config = neutral_generation_config(backend.model.generation_config)
    texts = prompts(backend, args.items)
    lengths = [backend.prompt_tokens(t) for t in texts]
    batches = [[texts[i] for i in b] for b in cut_batches(texts, lengths, args.batch_size)]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {len(batches)} batches")
    reference: list[str] | None = None
    if "static_compiled" in variants:  # compile once, outside the timed rounds
        warm, _ = generate(backend, batches[:1], "static_compiled", args.max_new_tokens)
        print(f"static_compiled warm-up (compilation): {warm:.1f} s")
    for round_ in range(1, args.rounds + 1):
        times = {}
        for variant in variants:
            load = " ".join(f"{x:.2f}" for x in os.getloadavg())
            seconds, out = generate(backend, batches, variant, args.max_new_tokens)
            reference = out if reference is None else reference
            times[variant] = seconds
            same = "identical" if out == reference else "DIFFERENT texts"
            ratio = seconds / times[variants[0]]
            print(
                f"round {round_} {variant:16s} {seconds:7.2f} s  x{ratio:.3f} of "
                f"{variants[0]}  {same}  (load avg {load})",
                flush=True,
            )


if __name__ == "__main__":
    main()
