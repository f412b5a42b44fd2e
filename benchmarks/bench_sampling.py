"""Best-of-n on transformers: one prefill per item (the shared prompt's key/value cache indexed
out to its n candidates) against n prefills (each candidate's prompt prefilled as its own row,
what plain `generate` does with duplicated prompts). Issue 14.

Both sides are the embedded model's transformers backend in this process, generating the same
requests: N GSM8K test items x n seeded candidates (temperature 0.7, top-p 0.9), `items` items
per batch (n x items rows), zero-shot or with `--shots K` GSM8K train exemplars (long
prompts, where the shared prefill matters most). Rounds alternate (shared, apart, shared,
apart ...); each prints both tokens/s and apart time / shared time. The texts must match.

    python benchmarks/bench_sampling.py --items 32 --n 5 --max-new-tokens 64 --shots 5
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch
from common import DATA_DIR, gsm8k_rows

from pytest_llmeval import ChatPrompt
from pytest_llmeval.backends import GenerationRequest
from pytest_llmeval.backends.transformers_backend import TransformersBackend, TransformersOptions
from pytest_llmeval.declare.models import resolve_model
from pytest_llmeval.declare.task import Generation

PROMPT = "Solve step by step; end with a line '#### <number>'.\n\nQuestion: {question}"


def requests(items: int, n: int, shots: int, max_new_tokens: int) -> list[GenerationRequest]:
    with (DATA_DIR / "gsm8k" / "train.jsonl").open() as handle:
        exemplars = [json.loads(line) for _, line in zip(range(shots), handle, strict=False)]
    prompt = ChatPrompt(user=PROMPT, few_shot=exemplars, answer="{answer}")
    settings = Generation(max_new_tokens=max_new_tokens, temperature=0.7, top_p=0.9, n=n)
    return [
        GenerationRequest(prompt(row), settings, item_id=f"gsm8k/test/{i:04d}", sample_index=k)
        for i, row in enumerate(gsm8k_rows(items))
        for k in range(n)
    ]


def timed(
    backend: TransformersBackend, batches: list[list[GenerationRequest]]
) -> tuple[float, int, list[str]]:
    started = time.perf_counter()
    results = [r for batch in batches for r in backend.generate(batch, "bench")]
    seconds = time.perf_counter() - started
    return seconds, sum(r.tokens_out or 0 for r in results), [r.text for r in results]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=32)
    parser.add_argument("--n", type=int, default=5)
    parser.add_argument("--items-per-batch", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--shots", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="4 items, 16 tokens, 1 round")
    args = parser.parse_args()
    if args.quick:
        args.items, args.max_new_tokens, args.rounds, args.items_per_batch = 4, 16, 1, 4
    torch.set_num_threads(max(1, (os.cpu_count() or 2)))
    spec = resolve_model("smollm2-135m")
    shared = TransformersBackend(spec, TransformersOptions(share_prefill=True))
    apart = TransformersBackend(spec, TransformersOptions(share_prefill=False))
    todo = requests(args.items, args.n, args.shots, args.max_new_tokens)
    rows = args.items_per_batch * args.n
    batches = [todo[i : i + rows] for i in range(0, len(todo), rows)]
    prompt_tokens = shared.prompt_tokens(shared.render(todo[0].messages))
    print(f"{args.items} items x {args.n} candidates, {rows} rows per batch, "
          f"{args.shots}-shot prompts (~{prompt_tokens} tokens), {args.max_new_tokens} new tokens",
          flush=True)  # fmt: skip
    timed(shared, batches[:1])  # warm both: first-call costs are not the method's
    timed(apart, batches[:1])
    ratios = []
    for round_ in range(1, args.rounds + 1):
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        one_s, one_tokens, one_texts = timed(shared, batches)
        each_s, each_tokens, each_texts = timed(apart, batches)
        same = sum(a == b for a, b in zip(one_texts, each_texts, strict=True))
        ratios.append(each_s / one_s)
        print(
            f"round {round_}: one prefill per item {one_tokens / one_s:.1f} tok/s ({one_s:.1f} s), "
            f"one per candidate {each_tokens / each_s:.1f} tok/s ({each_s:.1f} s), "
            f"ratio {each_s / one_s:.3f}; same texts {same}/{len(one_texts)} (load avg {load})",
            flush=True,
        )
    print("ratios " + ", ".join(f"{r:.3f}" for r in ratios))
    shared.close()
    apart.close()


if __name__ == "__main__":
    main()
