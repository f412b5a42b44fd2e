"""HTTP backend: the whole share through the pool vs windows of batches (issue 12, target 3).

A local OpenAI-compatible server (`tests/fault_server.py`) answers most requests after
`--fast-s` and every `--slow-every`-th after `--slow-s` (latency varies with output length on a
real server). Windowed, a batch of `concurrency` requests waits for its slowest one before the
next batch is sent; streamed, `concurrency` requests stay in flight and each answer is committed
as it arrives. Both run the same items through the engine (cache on, in a temp dir), alternating
A B A B; the figure is items/s streamed over windowed. No model, little CPU.

    python benchmarks/bench_http_share.py --items 160 --concurrency 8
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Hashable
from dataclasses import dataclass
from pathlib import Path

from common import REPO

sys.path.insert(0, str(REPO / "tests"))

from fault_server import Fault, FaultServer  # noqa: E402

from pytest_llmeval.backends import GenerationRequest, create_backend  # noqa: E402
from pytest_llmeval.declare.models import ModelSpec  # noqa: E402
from pytest_llmeval.declare.task import Generation  # noqa: E402
from pytest_llmeval.run.cache import GenerationCache  # noqa: E402
from pytest_llmeval.run.engine import Engine  # noqa: E402


@dataclass
class Item:
    nodeid: str
    model_spec: ModelSpec
    content: str

    def batch_key(self) -> Hashable:
        return "all"

    def request(self) -> GenerationRequest:
        messages = [{"role": "user", "content": self.content}]
        return GenerationRequest(messages, Generation(max_new_tokens=8), item_id=self.nodeid)


def run_once(url: str, args: argparse.Namespace, streamed: bool) -> float:
    """Items/s of one pass over every item, each item's result read in order."""
    options = {"concurrency": args.concurrency, "max_retries": 0}
    spec = ModelSpec("served", "openai", f"test-model@{url}", options=options)
    backend = create_backend(spec, {})
    if not streamed:
        backend.generate_stream = None  # type: ignore[attr-defined]  # the windowed path
    # Same length for every prompt: longest-first keeps dataset order, slow ones spread out.
    marks = ["SLOW" if i % args.slow_every == 0 else "FAST" for i in range(args.items)]
    items = [Item(f"t/{i:05d}", spec, f"{mark} q{i:05d}") for i, mark in enumerate(marks)]
    with tempfile.TemporaryDirectory() as scratch:
        engine = Engine(make_backend=lambda _: backend, cache=GenerationCache(Path(scratch)))
        engine.backend(spec).identity()  # the server's facts: read before timing
        started = time.perf_counter()
        for i, item in enumerate(items):
            engine.result_for(item, items[i + 1 :])
        wall = time.perf_counter() - started
        engine.close()
    return args.items / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=160)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--fast-s", type=float, default=0.02)
    parser.add_argument("--slow-s", type=float, default=0.2)
    parser.add_argument("--slow-every", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with FaultServer(delay_s=args.fast_s) as server:
        server.add(Fault.slow(args.slow_s - args.fast_s), times=None, when="SLOW")
        ratios = []
        for round_index in range(args.rounds):
            windowed = run_once(server.base_url, args, streamed=False)
            streamed = run_once(server.base_url, args, streamed=True)
            ratios.append(streamed / windowed)
            print(
                f"round {round_index + 1}: windowed {windowed:.1f} items/s, "
                f"streamed {streamed:.1f} items/s, ratio {streamed / windowed:.2f} "
                f"(load average {os.getloadavg()[0]:.2f})"
            )
    print(f"streamed/windowed items/s: {', '.join(f'{r:.2f}' for r in ratios)}")


if __name__ == "__main__":
    main()
