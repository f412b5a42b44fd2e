"""Model sweeps: several local models run one after another in one process, one resident at
a time.

Three parts. The collection is ordered model-major (`model_major`): every eval item of the
first model, then the second's, stable within a model, so that a model's items are
contiguous in each process (xdist shares are sorted subsets of the collection, so they keep
that order). After each eval item, every resident model that no item queued after it in this
process needs is unloaded (`release_unneeded`: the backend's `unload()` drops the weights,
collects garbage and returns cached CUDA memory) before the next model loads, and the
transformers backend resets torch's peak-memory statistics at each load, so a model's
`peak_vram_bytes` is its own (unless another model is resident beside it: then the peak is
shared, never erased, `peak_vram_shared_with` in its backend info). `SweepLog` keeps what
each load measured, so a model unloaded and loaded again is reported with all its loads
counted (`ModelLoad.model_loads`, summed load time, largest peak) and its residencies in
order (`ModelLoad.residency`).

"Needed later" is read from what this process will run: in-process, the session's final item
list (after -k, --lf and reordering plugins); under xdist, the worker's queue
(run/xdist_queue.py), followed as items leave and arrive (per model, its queued items
counted), so a worker's share of n items costs O(n) over the session, not O(n^2). When the
queue cannot be read nothing is unloaded before session end.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

from pytest_llmeval.run.xdist_queue import QueueFollower, XdistQueueUnavailable, is_xdist_worker

if TYPE_CHECKING:
    from pytest_llmeval.run.worker import Worker


@dataclass
class SweepLog:
    """Per process: the loads and unloads of each model, numbered in the order they happened
    (one counter for all models: model a's unload numbered before model b's load means a was
    released before b loaded)."""

    events: int = 0
    # Model -> the event number of its current load (resident now).
    resident: dict[str, int] = field(default_factory=dict)
    # Model -> its finished residencies (report form) and, per unload, the backend info and
    # load-window figures taken just before it.
    stays: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    earlier: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = field(default_factory=dict)

    def loaded(self, name: str) -> None:
        """Model `name` finished loading."""
        self.events += 1
        self.resident[name] = self.events

    def unloaded(
        self, name: str, info: Mapping[str, Any], load: Mapping[str, Any], freed: bool | None
    ) -> None:
        """Model `name` was released; `info` is its backend's info read just before."""
        self.events += 1
        start = self.resident.pop(name)
        self.stays.setdefault(name, []).append(_stay(start, self.events, freed, info))
        self.earlier.setdefault(name, []).append((dict(info), dict(load)))

    def residency(self, name: str, info: Mapping[str, Any]) -> list[dict[str, Any]]:
        """`ModelLoad.residency` of `name`: its finished stays and the current one (if any)."""
        stays = list(self.stays.get(name, []))
        if name in self.resident:
            stays.append(_stay(self.resident[name], None, None, info))
        return stays

    def merged(
        self, name: str, info: Mapping[str, Any], load: Mapping[str, Any] | None
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """The backend info and load figures of every load of `name` in this process: loads
        counted, load seconds and energy summed (None when one is unknown), the largest peak
        memory, the parameter count of any load. Unchanged for a model never unloaded."""
        earlier = self.earlier.get(name)
        if not earlier:
            return dict(info), None if load is None else dict(load)
        infos = [i for i, _ in earlier] + ([dict(info)] if name in self.resident else [])
        loads = [figures for _, figures in earlier] + ([dict(load)] if load else [])
        merged = dict(info)
        merged["model_loads"] = sum(int(i.get("model_loads") or 0) for i in infos)
        merged["load_time_s"] = _total([i.get("load_time_s") for i in infos])
        peaks = [int(i["peak_vram_bytes"]) for i in infos if i.get("peak_vram_bytes") is not None]
        merged["peak_vram_bytes"] = max(peaks) if peaks else None
        counts = [i["parameters"] for i in infos if i.get("parameters") is not None]
        merged["parameters"] = counts[0] if counts else None
        figures: dict[str, Any] = {
            key: _total([f.get(key) for f in loads])
            for key in ("load_energy_j", "load_cpu_energy_j", "load_window_s")
        }
        reasons = [f["load_energy_reason"] for f in loads if f.get("load_energy_reason")]
        figures["load_energy_reason"] = reasons[-1] if reasons else None
        return merged, figures


def _stay(
    start: int, end: int | None, freed: bool | None, info: Mapping[str, Any]
) -> dict[str, Any]:
    return {
        "loaded": start,
        "unloaded": end,
        "freed": freed,
        "load_time_s": info.get("load_time_s"),
        "peak_vram_bytes": info.get("peak_vram_bytes"),
    }


def _total(values: Sequence[float | None]) -> float | None:
    if not values or any(v is None for v in values):
        return None
    return round(sum(float(v or 0) for v in values), 6)


def model_major(items: list[pytest.Item]) -> None:
    """Reorder the eval items in place, model by model (in the order models first appear),
    stable within a model; other items keep their places. Nothing with fewer than 2 models."""
    from pytest_llmeval.run.items import EvalItem  # items imports the engine: not at import

    slots = [i for i, item in enumerate(items) if isinstance(item, EvalItem)]
    evals = [items[i] for i in slots]
    rank: dict[str, int] = {}
    for item in evals:
        rank.setdefault(_model(item), len(rank))
    if len(rank) < 2:
        return
    for slot, item in zip(slots, sorted(evals, key=lambda it: rank[_model(it)]), strict=True):
        items[slot] = item


def _model(item: pytest.Item) -> str:
    return str(item.spec.name)  # type: ignore[attr-defined]  # an EvalItem


def _models_of(item: pytest.Item) -> set[str]:
    """The models an eval item generates with: its own and its agreement reference's."""
    spec = getattr(item, "spec", None)
    if spec is None:
        return set()
    reference = getattr(item, "reference", None)
    return {spec.name} | ({reference.name} if reference is not None else set())


@dataclass(frozen=True)
class _Plan:
    """In-process: each model's last position in the final item list, and each item's."""

    count: int
    last: dict[str, int]
    position: dict[str, int]


_PLAN = pytest.StashKey[_Plan]()


@dataclass
class _Queued:
    """Under xdist: the worker's queue followed, and per model its queued items."""

    follower: QueueFollower = field(default_factory=QueueFollower)
    counts: Counter[str] = field(default_factory=Counter)


_QUEUED = pytest.StashKey[_Queued]()


def models_after(worker: Worker, item: pytest.Item) -> set[str] | None:
    """The models the items this process runs after `item` generate with; None when that
    cannot be known (an xdist queue that cannot be read, an item not in the list)."""
    config = worker.config
    items = item.session.items
    if is_xdist_worker(config):
        # Per model, how many queued items need it, updated by what left and joined the
        # queue since the last item: O(1) amortised per item, never the whole queue again.
        queued = config.stash.get(_QUEUED, None)
        if queued is None:
            queued = config.stash[_QUEUED] = _Queued()
        try:
            left, arrived = queued.follower.advance(config)
        except XdistQueueUnavailable:
            return None
        for indices, step in ((left, -1), (arrived, 1)):
            for i in indices:
                for name in _models_of(items[i]) if i < len(items) else ():
                    queued.counts[name] += step
        return {name for name, count in queued.counts.items() if count > 0}
    plan = config.stash.get(_PLAN, None)
    if plan is None or plan.count != len(items):  # once per final list: no O(n^2) scans
        last = {name: i for i, each in enumerate(items) for name in _models_of(each)}
        position = {each.nodeid: i for i, each in enumerate(items)}
        plan = config.stash[_PLAN] = _Plan(len(items), last, position)
    index = plan.position.get(item.nodeid)
    if index is None:
        return None
    return {name for name, at in plan.last.items() if at > index}


def release_unneeded(worker: Worker, item: pytest.Item) -> None:
    """After eval item `item`: unload each resident model no later item of this process needs."""
    engine = worker.engine
    if not engine.sweep.resident:
        return
    needed = models_after(worker, item)
    if needed is None:
        return
    for name in list(engine.sweep.resident):
        if name not in needed:
            engine.unload(name)
