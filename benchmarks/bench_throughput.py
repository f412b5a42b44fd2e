"""Harness throughput vs raw batched `model.generate` on the same GSM8K items (CPU, embedded model).

Raw: the tokenizer's chat template, left padding, `model.generate` in batches, in dataset
order: what a hand-written script does. Harness: `pytest` in this process on a task over the
same rows, same batch size and max_new_tokens, cache off. Both count generated tokens per second
of wall time, model loading excluded (the report gives the harness's load time). The ratio is
taken in one run.

    python benchmarks/bench_throughput.py --items 64 --batch-size 8 --max-new-tokens 128
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import pytest
import torch
from common import gsm8k_rows, write_gsm8k_task

from pytest_llmeval.backends.weights import locate_weights
from pytest_llmeval.declare.models import resolve_model


def raw_throughput(n: int, batch_size: int, max_new_tokens: int) -> tuple[float, int, float]:
    from common import _shipped_prompt
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = locate_weights(resolve_model("smollm2-135m").model_id, None).path
    tokenizer = AutoTokenizer.from_pretrained(path, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    prompt = _shipped_prompt()
    texts = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt.format(**row)}],
            tokenize=False,
            add_generation_prompt=True,
        )
        for row in gsm8k_rows(n)
    ]
    generated = 0
    started = time.perf_counter()
    with torch.inference_mode():
        for start in range(0, n, batch_size):
            encoded = tokenizer(
                texts[start : start + batch_size],
                return_tensors="pt",
                padding=True,
                add_special_tokens=False,
            )
            output = model.generate(
                **encoded,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
            )
            new = output[:, encoded["input_ids"].shape[1] :]
            # Count tokens up to and including the first end token, as the harness does.
            for row in new.tolist():
                ends = [i for i, t in enumerate(row) if t == tokenizer.eos_token_id]
                generated += ends[0] + 1 if ends else len(row)
    wall = time.perf_counter() - started
    return generated / wall, generated, wall


def harness_throughput(n: int, batch_size: int, max_new_tokens: int) -> tuple[float, int, float]:
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        write_gsm8k_task(directory, n, max_new_tokens)
        report = directory / "out" / "report.json"
        started = time.perf_counter()
        pytest.main(
            [
                str(directory),
                "-q",
                "-p",
                "no:cacheprovider",
                "--llmeval-cache",
                "off",
                "--llmeval-batch-size",
                str(batch_size),
                "--llmeval-report",
                str(report),
                "--rootdir",
                str(directory),
            ]
        )
        wall = time.perf_counter() - started
        envelope = json.loads(report.read_text())
    load = sum(float(entry.get("load_time_s") or 0) for entry in envelope["model_loads"])
    tokens = envelope["tasks"]["bench"]["models"]["smollm2-135m"]["metrics"]["tokens_out"]
    return tokens / (wall - load), tokens, wall - load


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    args = parser.parse_args()
    raw = raw_throughput(args.items, args.batch_size, args.max_new_tokens)
    harness = harness_throughput(args.items, args.batch_size, args.max_new_tokens)
    print(f"raw:     {raw[0]:8.1f} tok/s  ({raw[1]} tokens in {raw[2]:.1f} s)")
    print(f"harness: {harness[0]:8.1f} tok/s  ({harness[1]} tokens in {harness[2]:.1f} s, no load)")
    print(f"ratio harness/raw: {harness[0] / raw[0]:.3f}  (target >= 0.95)")


if __name__ == "__main__":
    main()
