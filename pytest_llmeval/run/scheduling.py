"""xdist scheduling for evals: each worker gets its whole share of items up front.

Handing out shares at the start (instead of xdist's trickle of small chunks) lets a worker see
its upcoming items and batch them. Shares are contiguous runs of the collection, so a task's
items stay together. With several models and at least as many workers as models, each model's
items go to workers of its own, so a worker keeps one model resident; a model's prompt variants
(arms `[qwen7b-cot]`, `[qwen7b-plain]`) are one group, since they share its weights. The
assignment is a pure function of the collected node ids, the run's model names and the worker
count: the same on every run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from xdist.scheduler import LoadScheduling
from xdist.workermanage import WorkerController

from pytest_llmeval.declare.ids import arm_parts, is_eval_item, model_of


def assign_shares(
    nodeids: Sequence[str], workers: int, models: Sequence[str] = ()
) -> list[list[int]]:
    """Indices of `nodeids` for each of `workers` workers, in collection order per worker;
    `models`: the run's model names, which group an arm's items by its model."""
    if workers < 1:
        raise ValueError("need at least one worker")
    groups: dict[str | None, list[int]] = {}
    for index, nodeid in enumerate(nodeids):
        groups.setdefault(_model_group(model_of(nodeid), models), []).append(index)
    shares: list[list[int]] = [[] for _ in range(workers)]
    if len(groups) > workers:
        # More models than workers: whole models to the least-loaded worker, biggest first.
        for _, members in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[1][0])):
            target = min(range(workers), key=lambda w: (len(shares[w]), w))
            shares[target].extend(members)
        return [sorted(share) for share in shares]
    # Each group gets at least one worker of its own; spare workers go to the biggest groups.
    counts = {key: 1 for key in groups}
    for _ in range(workers - len(groups)):
        key = max(groups, key=lambda k: (len(groups[k]) / counts[k], -groups[k][0]))
        counts[key] += 1
    next_worker = 0
    for key, members in groups.items():
        for chunk in _split(members, counts[key]):
            shares[next_worker].extend(chunk)
            next_worker += 1
    return shares


def _model_group(arm: str | None, models: Sequence[str]) -> str | None:
    """The model an item's arm runs (the arm itself without the run's model names)."""
    if arm is None or not models:
        return arm
    return arm_parts(arm, models)[0]


def _split(members: list[int], parts: int) -> list[list[int]]:
    size, extra = divmod(len(members), parts)
    chunks, start = [], 0
    for part in range(parts):
        end = start + size + (1 if part < extra else 0)
        chunks.append(members[start:end])
        start = end
    return chunks


def _worker_order(node: WorkerController) -> tuple[int, str]:
    worker = str(node.workerinput["workerid"])  # gw0, gw1, ... gw10: by number, not text
    digits = "".join(ch for ch in worker if ch.isdigit())
    return (int(digits) if digits else 0, worker)


# What EvalScheduling uses of its base class (tests/test_scheduling.py checks they exist).
LOAD_SCHEDULING_MEMBERS = (
    "nodes", "node2collection", "node2pending", "pending", "collection",
    "collection_is_completed", "log", "schedule", "check_schedule", "mark_test_pending",
)  # fmt: skip


class EvalScheduling(LoadScheduling):  # type: ignore[misc]  # xdist ships no types
    """LoadScheduling with the whole collection handed out at once (see module docstring).

    A crashed worker's unfinished items wait in `pending` for its replacement, which xdist
    starts from the same spec (so it keeps the crashed worker's GPU); an item sent back after
    its batch crashed (`XdistHooks.pytest_handlecrashitem`) goes first. A collection without
    eval items is scheduled exactly as LoadScheduling does.
    """

    up_front: bool | None = None

    def __init__(self, config: Any, log: Any = None, models: Sequence[str] = ()) -> None:
        super().__init__(config, log)
        self.models = list(models)
        self.share_sizes: dict[str, int] = {}  # items handed to each worker, for progress

    collection: list[str] | None

    def schedule(self) -> None:
        """Hand every worker its whole share once all collected (leftovers after a crash)."""
        assert self.collection_is_completed
        if self.up_front is None:
            some_collection = next(iter(self.node2collection.values()))
            self.up_front = any(is_eval_item(nodeid) for nodeid in some_collection)
        if not self.up_front:
            super().schedule()
            return
        if self.collection is not None:
            self._hand_out_leftovers()
            return
        collections = list(self.node2collection.values())
        if any(other != collections[0] for other in collections[1:]):
            super().schedule()  # xdist reports the difference and aborts, as it always does
            return
        self.collection = list(collections[0])
        if not self.collection:
            return
        nodes = sorted(self.nodes, key=_worker_order)
        shares = assign_shares(self.collection, len(nodes), self.models)
        for node, share in zip(nodes, shares, strict=True):
            self._give(node, share)

    def check_schedule(self, node: WorkerController, duration: float = 0) -> None:
        """Nothing to top up: the shares went out at the start (LoadScheduling otherwise)."""
        if not self.up_front:
            super().check_schedule(node, duration)
        # Up front: shares went out at the start, nothing to top up while workers run.

    def _hand_out_leftovers(self) -> None:
        for node in sorted(self.nodes, key=_worker_order):
            if self.pending and not self.node2pending[node] and not node.shutting_down:
                leftovers, self.pending[:] = list(self.pending), []
                self._give(node, leftovers)

    def _give(self, node: WorkerController, share: list[int]) -> None:
        worker = str(node.workerinput["workerid"])
        self.share_sizes[worker] = self.share_sizes.get(worker, 0) + len(share)
        self.node2pending[node].extend(share)
        if share:
            node.send_runtest_some(share)
        node.shutdown()
