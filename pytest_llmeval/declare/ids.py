"""Item ids and pytest node ids of eval items: built and parsed here, nowhere else.

An item id is `<task>/<split>/<row>` with the row index zero-padded to 4 digits
(`gsm8k/test/0042`); the test name adds `[<model>]` when several models run. Parsing works on
node ids alone, where only ids are known (the xdist controller, the scheduler, saved reports).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# `path::<task>/<split>/<row>[<model>]`: the model suffix exists when several models run.
_EVAL_NODEID = re.compile(
    r"::(?P<task>[\w.\-]+)/(?P<split>[^/\[\]]+)/(?P<row>\d+)(?:\[(?P<model>.+)\])?$"
)


@dataclass(frozen=True)
class EvalNodeId:
    """The parts of an eval item's node id; `model` is None when a single model ran."""

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
    """The pytest name of an item: its id, plus `[model]` when several models run."""
    return f"{item}[{model}]" if model else item


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
