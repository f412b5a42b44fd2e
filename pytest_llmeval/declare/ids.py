"""Item ids and pytest node ids of eval items: built and parsed here, nowhere else.

An item id is `<task>/<split>/<row>` with the row index zero-padded to 4 digits
(`gsm8k/test/0042`); the test name adds its arm in brackets when the run has several arms:
`[<model>]` with several models, `[<variant>]` for a task's prompt variant with one model,
`[<model>-<variant>]` for both (`arm_name`). Parsing works on node ids alone, where only ids
are known (the xdist controller, the scheduler, saved reports).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

# `path::<task>/<split>/<row>[<arm>]`: the arm suffix exists when several arms run.
_EVAL_NODEID = re.compile(
    r"::(?P<task>[\w.\-]+)/(?P<split>[^/\[\]]+)/(?P<row>\d+)(?:\[(?P<model>.+)\])?$"
)


@dataclass(frozen=True)
class EvalNodeId:
    """The parts of an eval item's node id; `model` is the bracketed arm (the model's name
    without prompt variants), None when a single model ran a task without variants."""

    task: str
    split: str
    row: int
    model: str | None

    @property
    def item_id(self) -> str:
        """`<task>/<split>/<row>`, as `item_id` builds it."""
        return item_id(self.task, self.split, self.row)


def item_id(task: str, split: str, row: int) -> str:
    """The stable id of one dataset row of a task, e.g. `gsm8k/test/0042`."""
    return f"{task}/{split}/{row:04d}"


def node_name(item: str, model: str | None) -> str:
    """The pytest name of an item: its id, plus `[arm]` when several arms run."""
    return f"{item}[{model}]" if model else item


def arm_name(model: str, variant: str | None, several_models: bool) -> str:
    """The arm of an item: the model's name, `<model>-<variant>` with a prompt variant when
    the run has several models, the variant alone with one model (ids stay short)."""
    if variant is None:
        return model
    return f"{model}-{variant}" if several_models else variant


def arm_parts(arm: str, models: Sequence[str]) -> tuple[str, str | None]:
    """`(model, variant)` of an arm named by `arm_name` for a run of `models` (longest model
    name first: `smollm2-135m-cot` is `smollm2-135m` with `cot`)."""
    if len(models) == 1:
        return (models[0], None) if arm == models[0] else (models[0], arm)
    for model in sorted(models, key=len, reverse=True):
        if arm == model:
            return model, None
        if arm.startswith(f"{model}-"):
            return model, arm[len(model) + 1 :]
    return arm, None


def any_arm_of(name: str, models: Sequence[str]) -> bool:
    """Whether `name` can be an arm of a run of several `models` (a model's name, or a
    model's name with a variant)."""
    return any(name == model or name.startswith(f"{model}-") for model in models)


def parse_nodeid(nodeid: str) -> EvalNodeId | None:
    """The parts of an eval item's node id, or None when `nodeid` names no eval item."""
    match = _EVAL_NODEID.search(nodeid)
    if match is None:
        return None
    return EvalNodeId(match["task"], match["split"], int(match["row"]), match["model"])


def is_eval_item(nodeid: str) -> bool:
    """Whether a node id names an eval item (works where only ids are known)."""
    return _EVAL_NODEID.search(nodeid) is not None


def model_of(nodeid: str) -> str | None:
    """The `[model]` suffix of an eval item's node id (None with a single model)."""
    parsed = parse_nodeid(nodeid)
    return parsed.model if parsed else None
