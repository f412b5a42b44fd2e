"""Aggregation of 100,000 item records into metrics (`analyze/aggregate.py: summarize_run`),
what the controller does after the run loop and `regate`/`compare` do over saved runs.

Records are synthetic but shaped like a real run: 2 tasks (GSM8K numeric, toxicity labels)
x 2 models, 25,000 items each; 60% right, 35% wrong, 5% errors; generated in batches of 8
with per-item latency and token counts, one item in 10 served from the cache.
"""

from __future__ import annotations

import random
from typing import Any

from pytest_llmeval.analyze.aggregate import summarize_run
from pytest_llmeval.analyze.record import ItemRecord

RECORDS = 100_000
BATCH = 8
TASKS = {"gsm8k": ("strict", "18"), "toxicity": ("label", "toxic")}
MODELS = ("smollm2-135m", "qwen2.5-1.5b")


def record(rng: random.Random, index: int, task: str, model: str) -> ItemRecord:
    method, answer = TASKS[task]
    draw = rng.random()
    outcome = "pass" if draw < 0.60 else "fail" if draw < 0.95 else "error"
    cached = rng.random() < 0.1
    generated = outcome != "error" and not cached
    common: dict[str, Any] = {
        "id": f"{task}/test/{index:05d}",
        "nodeid": f"evals/test_{task}.py::{task}/test/{index:05d}[{model}]",
        "task": task,
        "model": model,
        "split": "test",
        "row_index": index,
        "source": "task",
        "outcome": outcome,
        "worker": f"gw{index % 2}",
        "target": answer,
    }
    if outcome == "error":
        return ItemRecord(**common, error="backend timed out after 60 s")
    return ItemRecord(
        **common,
        response=f"Some reasoning.\n#### {answer}",
        extracted=answer if outcome == "pass" else "7",
        method=method,
        score=1.0 if outcome == "pass" else 0.0,
        correct=outcome == "pass",
        latency_s=rng.uniform(0.5, 4.0) if generated else None,
        latency_method="batch start until the item's last token" if generated else None,
        tokens_in=rng.randint(80, 300),
        tokens_out=rng.randint(20, 256),
        finish_reason="stop",
        batch_id=f"{model}-b{index // BATCH}" if generated else None,
        batch_size=BATCH if generated else None,
        batch_wall_s=4.0 if generated else None,
        cached=cached,
        energy_reason=None if cached else "no GPU",
    )


def records(n: int) -> list[ItemRecord]:
    rng = random.Random(0)
    per_group = n // (len(TASKS) * len(MODELS))
    return [
        record(rng, index, task, model)
        for task in TASKS
        for model in MODELS
        for index in range(per_group)
    ]


def bench_summarize_100k_records(benchmark: Any, scale: int) -> None:
    made = records(RECORDS // scale)
    summaries = benchmark(summarize_run, made, {})
    assert sum(metrics.n for metrics in summaries.values()) == len(made)
    assert len(summaries) == len(TASKS) * len(MODELS)
