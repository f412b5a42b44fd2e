"""The smoke run (`--llmeval-smoke`): every model tried on one item per task before the long run.

A model that cannot load, whose every request fails, or whose output no scorer can parse
would otherwise show it only after hours of work, item after item. With the smoke run, the
first item of a process asks each model it will run to generate, before any full batch, the
first item of each of its tasks in this process's share, each in a batch of its own. A model
fails its smoke run when:

- it cannot load: the existing path (`ModelUnavailable`, run/resident.py) already errors its
  items at once, and the llmeval summary says `model X did not load`;
- every one of its smoke requests errors; or
- none of its smoke outputs can be parsed, by the rule of `parse_rate`
  (`analyze.aggregate.answer_parsed`: an extracted answer that is None, the label scorer's
  `[invalid]` or blank, as the exact scorer's "" for an empty reply, is unparsed).

Only errors that say the model is broken count: an item-level error (`PromptRefused`: the
prompt does not fit the model's context, checked locally or refused by the server; a task's
`TaskError` or `TargetError` on that row) is that item's own error and no verdict. The smoke
run then tries the task's next item, up to `TRIES_PER_TASK` items per task; a task whose
tries all err at item level adds nothing, and a model with no verdict left runs.

Then its remaining items error at once, each with `model X failed the smoke run: <reason>`
(the whole reason on the first, a short reference on the rest), and the summary has one
line per broken model with its item count. A model that fails some smoke items but parses
one (one task broken, another fine) runs everything: only a model with nothing usable is
stopped, so one awkward task does not cost the model its whole run.

Smoke items are ordinary items: their generations are kept (and cached) and serve the items
themselves, never generated twice. Under xdist each worker smokes the models of the items
it holds when its first item runs (its own share), and a model first seen later in the
session is smoked when its first item comes. Items drawing several samples (`Generation.n`
> 1) and the `--compare-backend` reference are not smoke-tested (their requests differ); a
model seen in a scan with none of its items eligible is not smoked, and not scanned for again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pytest_llmeval.analyze.aggregate import answer_parsed
from pytest_llmeval.backends import PromptRefused, one_line
from pytest_llmeval.declare.task import TaskError
from pytest_llmeval.run.engine import Engine
from pytest_llmeval.run.vram_fit import ModelSkipped
from pytest_llmeval.score.extraction import TargetError

# Errors of one item (its prompt or its row), not of the model that was asked.
ITEM_LEVEL_ERRORS = (PromptRefused, TaskError, TargetError)

# Items of one task tried before it is given up as a smoke source (each one's result is
# kept for the item itself, so a try costs no extra model work).
TRIES_PER_TASK = 3


@dataclass(frozen=True)
class SmokeOutcome:
    """One smoke item: its error (None: it generated) and whether its output parsed.
    `item_level`: the error was the item's own (see the module docstring), no verdict."""

    error: str | None = None
    parsed: bool = False
    text: str = ""
    item_level: bool = False


def smoke_candidates(items: Iterable[Any], done: set[str]) -> dict[str, list[list[Any]]]:
    """Per model not in `done`: for each of its tasks among `items`, its first
    `TRIES_PER_TASK` items (eval items with a usable row and one sample per item), in order."""
    picked: dict[str, dict[str, list[Any]]] = {}
    for item in items:
        spec = getattr(item, "spec", None)
        task = getattr(item, "task", None)
        if spec is None or task is None or spec.name in done:
            continue
        if getattr(item, "generation", None) is None or item.generation.n != 1:
            continue
        if not isinstance(item.row, dict):  # a RowError: that item reports it itself
            continue
        tries = picked.setdefault(spec.name, {}).setdefault(task.name, [])
        if len(tries) < TRIES_PER_TASK:
            tries.append(item)
    return {model: list(tasks.values()) for model, tasks in picked.items()}


def smoke_verdict(outcomes: list[SmokeOutcome]) -> str | None:
    """Why a model fails its smoke run (None: it passes): every request errored, or no
    output could be parsed. Item-level errors are left out: they say nothing of the model."""
    outcomes = [o for o in outcomes if not o.item_level]
    if not outcomes or any(o.parsed for o in outcomes):
        return None
    n = len(outcomes)
    errors = [o for o in outcomes if o.error is not None]
    if len(errors) == n:
        return f"{n}/{n} smoke requests errored (first: {one_line(errors[0].error or '', 160)})"
    unparsed = [o for o in outcomes if o.error is None]
    first = one_line(unparsed[0].text, 80)
    also = f", {len(errors)} errored" if errors else ""
    return f"{len(unparsed)}/{n} smoke items unparseable{also} (first: {first!r})"


class SmokeRun:
    """The smoke runs of one process (one per model)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.done: set[str] = set()

    def before(self, item: Any, upcoming: Iterable[Any]) -> None:
        """Before `item` generates: smoke every model among it and the upcoming items that
        was not smoked yet (cheap once its model is done)."""
        if item.spec.name in self.done:
            return
        pending = [item, *upcoming]
        candidates = smoke_candidates(pending, self.done)
        # Every model seen in this scan is done with it, whatever was found: one with no
        # smoke item (only sampled items, only row errors) would otherwise have the whole
        # upcoming list scanned again before each of its items.
        self.done.update(
            spec.name for spec in (getattr(each, "spec", None) for each in pending) if spec
        )
        # Model sweeps (run/sweep.py): the running item's model last, every other one
        # unloaded after its smoke items, so one model is resident at a time and each peak
        # memory is its own (those load again for their own items, each load counted).
        for model, tasks in sorted(candidates.items(), key=lambda kv: kv[0] == item.spec.name):
            tried = [o for tries in tasks for o in self._try_task(tries)]
            self.engine.smoke_items[model] = len(tried)
            reason = smoke_verdict(tried)
            if reason is not None:
                self.engine.smoke_failures[model] = reason
            if model != item.spec.name:
                self.engine.unload(model)

    def _try_task(self, tries: list[Any]) -> list[SmokeOutcome]:
        """One task's smoke items: its items in turn until one says something of the model
        (it generated, or failed as the model's error), the item-level errors before it."""
        outcomes: list[SmokeOutcome] = []
        for each in tries:
            outcome = self._try(each)
            if outcome is None:  # the model cannot run here: no verdict, no more tries
                break
            outcomes.append(outcome)
            if not outcome.item_level:
                break
        return outcomes

    def _try(self, item: Any) -> SmokeOutcome | None:
        """Generate `item` alone and score it; its generation or error stays the item's own
        result. None: its model cannot run here at all (no load, skipped): not a verdict."""
        engine = self.engine
        unavailable = dict(engine.unavailable_items)
        try:
            generation = engine.result_for(item, ())
        except ModelSkipped as skip:
            engine.results[item.nodeid] = skip
            return None
        except Exception as exc:
            engine.results[item.nodeid] = exc
            if engine.unavailable_items != unavailable:  # the model did not load: said already
                return None
            error = f"{type(exc).__name__}: {exc}"
            return SmokeOutcome(error=error, item_level=isinstance(exc, ITEM_LEVEL_ERRORS))
        engine.results[item.nodeid] = generation  # the item's own result, when it runs
        try:
            score = item.scorer(generation.text, item.task.target_for(item.row), item.row)
        except Exception as exc:  # noqa: BLE001 - a scorer or target problem is the item's own
            error = f"{type(exc).__name__}: {exc}"
            return SmokeOutcome(error=error, text=generation.text, item_level=True)
        return SmokeOutcome(parsed=answer_parsed(score.extracted), text=generation.text)
