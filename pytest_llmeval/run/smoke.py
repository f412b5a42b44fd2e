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

Then its remaining items error at once, each with `model X failed the smoke run: <reason>`
(the whole reason on the first, a short reference on the rest), and the summary has one
line per broken model with its item count. A model that fails some smoke items but parses
one (one task broken, another fine) runs everything: only a model with nothing usable is
stopped, so one awkward task does not cost the model its whole run.

Smoke items are ordinary items: their generations are kept (and cached) and serve the items
themselves, never generated twice. Under xdist each worker smokes the models of the items
it holds when its first item runs (its own share), and a model first seen later in the
session is smoked when its first item comes. Items drawing several samples (`Generation.n`
> 1) and the `--compare-backend` reference are not smoke-tested (their requests differ).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pytest_llmeval.analyze.aggregate import answer_parsed
from pytest_llmeval.backends import one_line
from pytest_llmeval.run.engine import Engine
from pytest_llmeval.run.vram_fit import ModelSkipped


@dataclass(frozen=True)
class SmokeOutcome:
    """One smoke item: its error (None: it generated) and whether its output parsed."""

    error: str | None = None
    parsed: bool = False
    text: str = ""


def smoke_candidates(items: Iterable[Any], done: set[str]) -> dict[str, list[Any]]:
    """Per model not in `done`: the first item of each of its tasks among `items` (eval
    items with a usable row and one sample per item), in order."""
    picked: dict[str, dict[str, Any]] = {}
    for item in items:
        spec = getattr(item, "spec", None)
        task = getattr(item, "task", None)
        if spec is None or task is None or spec.name in done:
            continue
        if getattr(item, "generation", None) is None or item.generation.n != 1:
            continue
        if not isinstance(item.row, dict):  # a RowError: that item reports it itself
            continue
        picked.setdefault(spec.name, {}).setdefault(task.name, item)
    return {model: list(tasks.values()) for model, tasks in picked.items()}


def smoke_verdict(outcomes: list[SmokeOutcome]) -> str | None:
    """Why a model fails its smoke run (None: it passes): every request errored, or no
    output could be parsed."""
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
        candidates = smoke_candidates([item, *upcoming], self.done)
        # Model sweeps (run/sweep.py): the running item's model last, every other one
        # unloaded after its smoke items, so one model is resident at a time and each peak
        # memory is its own (those load again for their own items, each load counted).
        for model, items in sorted(candidates.items(), key=lambda kv: kv[0] == item.spec.name):
            self.done.add(model)
            outcomes = [self._try(each) for each in items]
            self.engine.smoke_items[model] = sum(o is not None for o in outcomes)
            tried = [o for o in outcomes if o is not None]
            reason = smoke_verdict(tried)
            if reason is not None:
                self.engine.smoke_failures[model] = reason
            if model != item.spec.name:
                self.engine.unload(model)

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
            return SmokeOutcome(error=f"{type(exc).__name__}: {exc}")
        engine.results[item.nodeid] = generation  # the item's own result, when it runs
        try:
            score = item.scorer(generation.text, item.task.target_for(item.row), item.row)
        except Exception:  # noqa: BLE001 - a scorer or target problem is the item's to report
            return SmokeOutcome(parsed=True, text=generation.text)
        return SmokeOutcome(parsed=answer_parsed(score.extracted), text=generation.text)
