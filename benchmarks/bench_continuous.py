"""Continuous batching vs static batches on the transformers backend (issue 12, target 4).

The same N GSM8K test prompts (the shipped prompt and chat template, sorted by token length
and cut as the engine does), greedy, through:

- `static`: the backend's batched `generate`, one call per batch of `--batch-size` (what the
  backend does by default);
- `continuous`: the backend with `batching = "continuous"` (`generate_stream`: transformers'
  `ContinuousBatchingManager`, at most `--batch-size` sequences decoding at once, a finished
  one's slot refilled with the next prompt), its model's attention as loaded (SDPA);
- `continuous_eager`: the same with eager attention (the manager runs it as `paged|eager`).

Variants run in turn, round after round (A B C A B C), each reported as its time relative to
`static` in the same round, with how many texts equal static's and the decode steps each
would need (static: the longest member of every batch; continuous: ~ tokens / batch size).

    python benchmarks/bench_continuous.py --items 64 --batch-size 8 --max-new-tokens 128 --rounds 2
    python benchmarks/bench_continuous.py --device cuda --random-qwen --items 512 --batch-size 64

`--random-qwen` builds (once) the random-weights Qwen2.5-1.5B-shaped model of
`bench_vllm.py`; random weights rarely draw the end token, so every request generates all
`--max-new-tokens` and the figure measures the per-step cost at equal step counts, not the
refill gain (which real models with varied answer lengths get). Exit status 77 when CUDA is
asked for and absent.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Any

from common import _shipped_prompt, attention, gsm8k_rows

VARIANTS = ("static", "continuous", "continuous_eager")


def requests_for(n: int, max_new_tokens: int) -> list[Any]:
    from pytest_llmeval.backends import GenerationRequest
    from pytest_llmeval.declare.task import Generation

    template = _shipped_prompt()
    settings = Generation(max_new_tokens=max_new_tokens)
    return [
        GenerationRequest([{"role": "user", "content": template.format(**row)}], settings, f"{i}")
        for i, row in enumerate(gsm8k_rows(n))
    ]


def run(backends: dict[str, Any], variant: str, batches: list[list[int]], requests: list[Any],
        batch_size: int) -> tuple[float, dict[int, Any]]:  # fmt: skip
    """Seconds and results (by request index) of one variant over all batches."""
    out: dict[int, Any] = {}
    started = time.perf_counter()
    if variant == "static":
        backend = backends["static"]
        for batch in batches:
            results = backend.generate([requests[i] for i in batch], "bench")
            out.update(zip(batch, results, strict=True))
    else:
        backend = backends["continuous"]
        order = [i for batch in batches for i in batch]  # the engine's stream order
        implementation = "eager" if variant == "continuous_eager" else None
        with (
            attention(backend.model, implementation) if implementation else contextlib.nullcontext()
        ):
            stream = backend.generate_stream([requests[i] for i in order], batch_size=batch_size)
            for finished in stream:
                for position, result in finished:
                    if isinstance(result, Exception):
                        raise result
                    out[order[position]] = result
    if backend.device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()
    return time.perf_counter() - started, out


def load_backends(args: argparse.Namespace) -> dict[str, Any]:
    from pytest_llmeval.backends.transformers_backend import (
        TransformersBackend,
        TransformersOptions,
    )
    from pytest_llmeval.declare.models import resolve_model

    if args.random_qwen:
        from bench_vllm import DEFAULT_DIR, build_model

        spec = resolve_model(str(build_model(Path(args.model_dir or DEFAULT_DIR))))
    else:
        spec = resolve_model(args.model)
    common = {"device": args.device, "dtype": args.dtype}
    static = TransformersBackend(spec, TransformersOptions(**common, batching="static"))
    static.load()
    continuous = TransformersBackend(spec, TransformersOptions(**common, batching="continuous"))
    # One set of weights for both: the same model, the same decode.
    continuous._model, continuous.stop_ids = static.model, static.stop_ids
    return {"static": static, "continuous": continuous}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's own)")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--model", default="smollm2-135m", help="model name (as --model)")
    parser.add_argument("--device", default=None, help="cpu, cuda (default: the backend's)")
    parser.add_argument("--dtype", default=None)
    parser.add_argument(
        "--random-qwen", action="store_true", help="bench_vllm.py's random Qwen2.5-1.5B shape"
    )
    parser.add_argument("--model-dir", default=None, help="where --random-qwen builds its model")
    parser.add_argument("--quick", action="store_true", help="8 items, 16 new tokens, 1 round")
    args = parser.parse_args()
    if args.quick:
        args.items, args.max_new_tokens, args.rounds = 8, 16, 1
    import torch

    if args.device and args.device.startswith("cuda") and not torch.cuda.is_available():
        print("skipped: --device cuda needs a CUDA GPU")
        sys.exit(77)
    if args.threads:
        torch.set_num_threads(args.threads)
    from pytest_llmeval.run.batching import cut_batches

    variants = args.variants.split(",")
    backends = load_backends(args)
    static = backends["static"]
    requests = requests_for(args.items, args.max_new_tokens)
    prompts = [static.render(r.messages) for r in requests]
    lengths = [static.prompt_tokens(p) for p in prompts]
    batches = [list(b) for b in cut_batches(prompts, lengths, args.batch_size)]
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {static.device}, "
        f"{args.items} items, {len(batches)} batches of {args.batch_size}, "
        f"{args.max_new_tokens} new tokens",
        flush=True,
    )
    run(backends, "static", batches[:1], requests, args.batch_size)  # warm-up, not timed
    reference: dict[int, Any] | None = None
    for round_ in range(1, args.rounds + 1):
        times: dict[str, float] = {}
        for variant in variants:
            load = " ".join(f"{x:.2f}" for x in os.getloadavg())
            seconds, out = run(backends, variant, batches, requests, args.batch_size)
            times[variant] = seconds
            if variant == "static":
                reference = out
            same = sum(out[i].text == reference[i].text for i in out) if reference else 0
            length = {i: r.tokens_out + (r.finish_reason == "stop") for i, r in out.items()}
            tokens = sum(length.values())
            steps = (
                sum(max(length[i] for i in b) for b in batches)
                if variant == "static"
                else -(-tokens // args.batch_size)
            )
            ratio = seconds / times.get("static", seconds)
            print(
                f"round {round_} {variant:17s} {seconds:8.2f} s  x{ratio:.3f} of static  "
                f"{same}/{len(out)} texts identical  {tokens} tokens  ~{steps} decode steps  "
                f"(load avg before {load})",
                flush=True,
            )


if __name__ == "__main__":
    main()
