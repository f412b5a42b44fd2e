"""Similarity of two 8 kB responses: the old difflib ratio vs rapidfuzz's normalized Indel
similarity (what `pytest_llmeval.score.text.similarity` uses), in ms per pair.

    python benchmarks/similarity.py --pairs 20

The texts are two different realistic answers of 8 kB (sentences of classifier responses drawn
with a fixed seed), normalised as the harness does before comparing.
"""

from __future__ import annotations

import argparse
import difflib
import random
import time
from collections.abc import Callable

from pytest_llmeval.score.text import normalize_text, similarity

SENTENCES = [
    "Label: toxic.",
    "Label: non-toxic.",
    "The message insults a group of people, so it is toxic.",
    "The user asks about the weather; the tone is friendly.",
    "There is no slur, threat or insult in this message.",
    "Sarcasm alone does not make a message toxic.",
    "The reply calls the other person an idiot, which is an insult.",
    "Reason: it is a question about sports results.",
    "Let me check each sentence for harassment, hate or threats.",
    "Overall the message is polite and on topic.",
]


def text(rng: random.Random, size: int) -> str:
    """A response of `size` characters: sentences drawn at random."""
    parts: list[str] = []
    while sum(len(part) + 1 for part in parts) < size:
        parts.append(rng.choice(SENTENCES))
    return " ".join(parts)[:size]


def difflib_ratio(a: str, b: str) -> float:
    na, nb = normalize_text(a), normalize_text(b)
    return difflib.SequenceMatcher(None, na, nb, autojunk=False).ratio()


def per_pair_ms(function: Callable[[str, str], object], pairs: list[tuple[str, str]]) -> float:
    started = time.perf_counter()
    for a, b in pairs:
        function(a, b)
    return (time.perf_counter() - started) * 1000 / len(pairs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--size", type=int, default=8192, help="characters per text")
    args = parser.parse_args()
    rng = random.Random(0)
    pairs = [(text(rng, args.size), text(rng, args.size)) for _ in range(args.pairs)]
    new = per_pair_ms(similarity, pairs)
    # difflib is quadratic: a few pairs are enough to measure it.
    old = per_pair_ms(difflib_ratio, pairs[: min(3, len(pairs))])
    a, b = pairs[0]
    print(
        f"{args.size}-char pairs: difflib {old:.1f} ms/pair, rapidfuzz {new:.3f} ms/pair "
        f"({old / new:.0f}x); first pair: difflib {difflib_ratio(a, b):.3f}, "
        f"indel {similarity(a, b):.3f}"
    )


if __name__ == "__main__":
    main()
