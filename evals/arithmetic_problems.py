"""Arithmetic word problems made in code from a seed, with exact integer answers.

They need no download, so a bare `pytest evals` does real model work on a fresh machine.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

NAMES = ["Ava", "Ben", "Chloe", "Dev", "Ema", "Finn", "Gia", "Hugo", "Iris", "Jon"]
THINGS = ["apples", "marbles", "stickers", "books", "pencils", "cookies", "stamps", "coins"]


def problems(count: int = 40, seed: int = 1234) -> Iterator[dict[str, object]]:
    """`count` problems cycling through +, -, x and / templates; same output for the same seed."""
    rng = random.Random(seed)
    makers = [_add, _subtract, _multiply, _divide]
    for index in range(count):
        question, answer, operation = makers[index % len(makers)](rng)
        yield {"question": question, "answer": answer, "operation": operation}


def _add(rng: random.Random) -> tuple[str, int, str]:
    name, thing, a, b = (
        rng.choice(NAMES),
        rng.choice(THINGS),
        rng.randint(2, 40),
        rng.randint(2, 40),
    )
    return (
        f"{name} has {a} {thing} and gets {b} more. How many {thing} does {name} have now?",
        a + b,
        "add",
    )


def _subtract(rng: random.Random) -> tuple[str, int, str]:
    name, thing, b = rng.choice(NAMES), rng.choice(THINGS), rng.randint(2, 30)
    a = b + rng.randint(1, 40)
    return (
        f"{name} has {a} {thing} and gives away {b}. How many {thing} does {name} have left?",
        a - b,
        "subtract",
    )


def _multiply(rng: random.Random) -> tuple[str, int, str]:
    name, thing, a, b = rng.choice(NAMES), rng.choice(THINGS), rng.randint(2, 9), rng.randint(2, 12)
    question = (
        f"{name} buys {a} boxes with {b} {thing} in each box. How many {thing} does {name} buy?"
    )
    return question, a * b, "multiply"


def _divide(rng: random.Random) -> tuple[str, int, str]:
    name, thing, b, each = (
        rng.choice(NAMES),
        rng.choice(THINGS),
        rng.randint(2, 8),
        rng.randint(2, 10),
    )
    question = (
        f"{name} shares {b * each} {thing} equally among {b} friends. "
        f"How many {thing} does each friend get?"
    )
    return question, each, "divide"
