"""Model sweeps: several local models in one process, one resident at a time, each unloaded
before the next loads; models.csv with one row per model; a rerun loads nothing.

The real sweep runs in a subprocess (torch never enters this process): the embedded
smollm2-135m plus two random-weight models built here from small configs (Llama and Qwen2,
hidden 64, 2 layers), the embedded model's tokenizer saved beside them.
"""

from __future__ import annotations

import collections
import contextlib
import csv
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from conftest import REPO_ROOT
from pytest_llmeval.backends import GenerationRequest, GenerationResult
from pytest_llmeval.declare.models import ModelSpec
from pytest_llmeval.declare.task import Message
from pytest_llmeval.run.engine import Engine

# ---- the engine: unload, reload, the merged load record (no torch) -----------------------


class LocalBackend:
    """A local backend on the CPU whose load takes `load_s` seconds (as it reports it) and
    whose peak memory is `peak` bytes per load; counts its loads and unloads."""

    default_batch_size = 4

    def __init__(self, name: str, load_s: Sequence[float], peak: Sequence[int]) -> None:
        self.spec = ModelSpec(name, "fake", name)
        self.load_s, self.peak = list(load_s), list(peak)
        self.loads = 0
        self.unloads = 0
        self.resident = False

    def identity(self) -> Mapping[str, Any]:
        return {"backend": "fake", "model": self.spec.name}

    def render(self, messages: list[Message]) -> str:
        return messages[-1]["content"]

    def energy_devices(self) -> str:
        return "cpu"

    def load(self) -> None:
        if not self.resident:
            self.resident, self.loads = True, self.loads + 1

    def unload(self) -> bool:
        self.resident, self.unloads = False, self.unloads + 1
        return True

    def info(self) -> Mapping[str, Any]:
        done = self.loads - 1
        return {
            "model_loads": int(self.resident),
            "load_time_s": self.load_s[done] if self.loads else None,
            "peak_vram_bytes": self.peak[done] if self.resident else None,
            "parameters": 1000 if self.resident else None,
            "dtype": "float32",
        }

    def generate(
        self, requests: Sequence[GenerationRequest], batch_id: str
    ) -> list[GenerationResult]:
        assert self.resident, "generate on an unloaded model"
        texts = [r.messages[-1]["content"] for r in requests]
        return [
            GenerationResult(t, t, 1, 1, 0.0, "stop", batch_id, len(texts), 0.0, "t") for t in texts
        ]

    def close(self) -> None:
        self.resident = False


class Item:
    def __init__(self, nodeid: str, spec: ModelSpec) -> None:
        self.nodeid, self.model_spec = nodeid, spec

    def batch_key(self) -> str:
        return self.model_spec.name

    def request(self) -> GenerationRequest:
        from pytest_llmeval.declare.task import Generation

        return GenerationRequest([{"role": "user", "content": self.nodeid}], Generation())


def test_an_unloaded_model_needed_again_is_loaded_again_and_counted() -> None:
    a = LocalBackend("a", load_s=[1.5, 2.5], peak=[100, 300])
    b = LocalBackend("b", load_s=[4.0], peak=[50])
    engine = Engine(make_backend=lambda spec: {"a": a, "b": b}[spec.name])
    first = Item("t::a1", a.spec)
    engine.result_for(first, [])
    engine.unload("a")
    assert (a.loads, a.unloads) == (1, 1)
    engine.result_for(Item("t::b1", b.spec), [])
    engine.unload("b")
    engine.result_for(Item("t::a2", a.spec), [])  # a later item of a: a loads again
    engine.unload("nobody")  # a model never seen: nothing
    records = {r.model: r for r in engine.load_records()}
    assert (a.loads, b.loads) == (2, 1)
    assert records["a"].model_loads == 2 and records["b"].model_loads == 1
    assert records["a"].load_time_s == 4.0  # 1.5 + 2.5: both loads cost time
    assert records["a"].peak_vram_bytes == 300  # the larger of its two loads' peaks
    assert records["a"].parameters == 1000
    # One counter for both models: a, then b, then a again, never two at once.
    assert [(s["loaded"], s["unloaded"], s["freed"]) for s in records["a"].residency] == [
        (1, 2, True),
        (5, None, None),
    ]
    assert [(s["loaded"], s["unloaded"]) for s in records["b"].residency] == [(3, 4)]
    assert [s["peak_vram_bytes"] for s in records["a"].residency] == [100, 300]


def test_a_model_without_unload_or_never_loaded_is_left_alone() -> None:
    a = LocalBackend("a", load_s=[1.0], peak=[1])
    engine = Engine(make_backend=lambda spec: a)
    engine.backend(a.spec)
    engine.unload("a")  # created, never loaded (a cached run): nothing to release
    assert a.unloads == 0
    records = engine.load_records()
    assert records[0].model_loads == 0 and records[0].residency == []


def test_models_csv_load_time_is_the_mean_per_load() -> None:
    """A model loaded twice in one process (smoked, unloaded, loaded again) must not show twice
    the load time of a model loaded once: models.csv gives seconds per load."""
    from pytest_llmeval.analyze.hardware import ModelLoad
    from pytest_llmeval.report.models_table import RUN_COLUMNS, ArmFacts

    a = LocalBackend("a", load_s=[0.4, 0.2], peak=[1, 1])
    engine = Engine(make_backend=lambda spec: a)
    engine.result_for(Item("t::a1", a.spec), [])
    engine.unload("a")
    engine.result_for(Item("t::a2", a.spec), [])
    (record,) = engine.load_records()
    assert (record.model_loads, record.load_time_s) == (2, 0.6)  # the record keeps the sum
    column = dict(RUN_COLUMNS)["load_time_s"]
    assert column(ArmFacts("a", "a", None, [record], [], {})) == 0.3  # (0.4 + 0.2) / 2
    # Over workers: gw1 loaded it once in 0.9 s; a failed creation (no load) does not count.
    other = ModelLoad(worker="gw1", model="a", error=None, model_loads=1, load_time_s=0.9)
    failed = ModelLoad(worker="gw2", model="a", error="E: x", model_loads=0, load_time_s=5.0)
    assert column(ArmFacts("a", "a", None, [record, other, failed], [], {})) == 0.5  # 1.5 / 3


# ---- under xdist: which models the worker's queue still needs (no xdist: a fake queue) -----

SHUTDOWN = object()  # xdist's end-of-queue marker (not an item index)


class SpyQueue(collections.deque):  # type: ignore[type-arg]
    """xdist's queue (a deque of indices) counting every element any reader iterates."""

    read = 0

    def __iter__(self) -> Iterator[Any]:
        for each in super().__iter__():
            self.read += 1
            yield each

    def __reversed__(self) -> Iterator[Any]:
        for each in super().__reversed__():
            self.read += 1
            yield each


class WorkerInteractor:
    """xdist's worker loop as this plugin reads it: `torun.lock()` yields the queue,
    `nextitem_index` is the item after the running one (taken before it runs, as xdist does)."""

    def __init__(self, first: Sequence[int]) -> None:
        self.queue = SpyQueue(first)
        self.nextitem_index: Any = None
        self.torun = self

    @contextlib.contextmanager
    def lock(self) -> Iterator[SpyQueue]:
        yield self.queue

    def get(self) -> Any:
        return self.queue.popleft()


def xdist_sweep(models: str, arrivals: Mapping[int, Sequence[Any]], first: Sequence[int]) -> Any:
    """Run items (one model letter each) through the fake worker loop; after each item, the
    models `models_after` says the queue still needs. `arrivals[i]`: what the controller
    sends while item i runs."""
    from pytest_llmeval.run.sweep import models_after

    interactor = WorkerInteractor(first)
    config = SimpleNamespace(
        workerinput={},
        stash=pytest.Stash(),
        pluginmanager=SimpleNamespace(get_plugins=lambda: [interactor]),
    )
    session = SimpleNamespace(items=[])
    for i, name in enumerate(models):
        each = SimpleNamespace(
            nodeid=f"t::{i}", spec=ModelSpec(name, "fake", name), session=session
        )
        session.items.append(each)
    worker = SimpleNamespace(config=config)
    decisions = []
    interactor.nextitem_index = interactor.get()
    while interactor.nextitem_index is not SHUTDOWN:
        running = interactor.nextitem_index
        interactor.nextitem_index = interactor.get()  # before the item runs, as in xdist
        for index in arrivals.get(running, ()):
            interactor.queue.append(index)
        needed = models_after(worker, session.items[running])  # type: ignore[arg-type]
        decisions.append(None if needed is None else "".join(sorted(needed)))
    return decisions, interactor.queue.read


def test_under_xdist_the_models_still_queued_are_known_as_items_arrive_and_leave() -> None:
    # Order a, a, b, b, a; xdist sends 0-1 first, 2-3 while 0 runs, 4 and the end while 2 runs.
    decisions, _ = xdist_sweep("aabba", {0: [2, 3], 2: [4, SHUTDOWN]}, first=[0, 1])
    # after 0: 1 (a), 2, 3 (b); after 1: 2, 3; after 2: 3 (b), 4 (a); after 3: 4; after 4: none
    assert decisions == ["ab", "b", "ab", "a", ""]


def test_under_xdist_each_queued_index_is_read_about_once_not_once_per_item() -> None:
    # 3000 items, three models, sent 100 at a time: reading the whole queue (100-200 indices
    # here, up to the whole share in general) after every item reads 435,600 elements;
    # following it as items leave and arrive reads each about once.
    n = 3000
    arrivals = {i: list(range(i + 100, min(i + 200, n))) for i in range(0, n, 100)}
    arrivals[n - 100] = [*arrivals.get(n - 100, []), SHUTDOWN]
    decisions, read = xdist_sweep("a" * 1000 + "b" * 1000 + "c" * 1000, arrivals, range(100))
    # Item i (a multiple of 100) brings i+100..i+199: after 0 the queue holds 1..199 (a);
    # after 999, 1000..1099 (b); after 1900, 1901..2099 (b and c); after the last, nothing.
    assert (decisions[0], decisions[999], decisions[1900], decisions[-1]) == ("a", "b", "bc", "")
    assert read <= 2 * n


# ---- a real three-model sweep on the CPU --------------------------------------------------

BUILD = textwrap.dedent(
    """
    import json, sys
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM
    from pytest_llmeval.backends.weights import locate_weights
    from pytest_llmeval.declare.models import resolve_model

    out = sys.argv[1]
    tokenizer_dir = locate_weights(resolve_model("smollm2-135m").model_id, None).path
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    shape = dict(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                 num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                 max_position_embeddings=2048, tie_word_embeddings=False,
                 bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    for name, config, model in (("tiny-llama", LlamaConfig, LlamaForCausalLM),
                                ("tiny-qwen", Qwen2Config, Qwen2ForCausalLM)):
        built = model(config(**shape))
        built.save_pretrained(f"{out}/{name}", safe_serialization=True)
        tokenizer.save_pretrained(f"{out}/{name}")
    print(json.dumps({"vocab": len(tokenizer)}))
    """
)

TASK = textwrap.dedent(
    """
    from pytest_llmeval import ChatPrompt, DataSource, Generation, Task, scoring

    def task(name, ask, scorer):
        return Task(
            name=name,
            data=DataSource(files="mini.jsonl"),
            prompt=ChatPrompt(user=ask + " {question}"),
            target="answer",
            scorer=scorer,
            generation=Generation(max_new_tokens=8),
        )

    add = task("add", "q:", scoring.numeric)
    # Another prompt (not served by the first task's cache); exact match parses any text, so
    # the random-weight models pass --llmeval-smoke and run all their items.
    more = task("more", "Compute:", scoring.exact)
    """
)

MODELS = ["smollm2-135m", "tiny-llama", "tiny-qwen"]


def expected_parameters(vocab: int, qwen: bool) -> int:
    """The parameter count of the configs built above, by hand: embedding and LM head
    (untied) vocab x 64 each; per layer q and o 64x64, k and v 64x32 (2 of 4 heads' width),
    Qwen2's q/k/v biases (64 + 32 + 32), gate/up/down 3 x 64x128, two RMSNorms of 64; a
    final norm of 64."""
    hidden, kv, inter = 64, 32, 128
    layer = 2 * hidden * hidden + 2 * hidden * kv + 3 * hidden * inter + 2 * hidden
    if qwen:
        layer += hidden + 2 * kv
    return 2 * vocab * hidden + 2 * layer + hidden


def run_sweep(project: Path, out: str, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")])
    args = [sys.executable, "-m", "pytest", "-p", "no:randomly", "-p", "no:cacheprovider"]
    for model in MODELS:
        args += ["--model", model]
    args += ["--limit", "2", "--llmeval-data-dir", "data", "--llmeval-report", f"{out}/report.json"]
    args += ["--llmeval-progress", "1", "-q", *extra]
    return subprocess.run(
        args, cwd=project, env=env, capture_output=True, text=True, timeout=300, check=False
    )


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    project = tmp_path_factory.mktemp("sweep")
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": str(REPO_ROOT),
    }
    built = subprocess.run(
        [sys.executable, "-c", BUILD, str(project / "models")],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-3000:]
    vocab = json.loads(built.stdout.strip().splitlines()[-1])["vocab"]
    (project / "pyproject.toml").write_text(
        "".join(
            f'[tool.llmeval.models.{name}]\nmodel = "{project / "models" / name}"\n'
            for name in MODELS[1:]
        )
    )
    (project / "test_tasks.py").write_text(TASK)
    (project / "data").mkdir()
    rows = [{"question": f"{i} + {i + 1}", "answer": str(2 * i + 1)} for i in range(6)]
    (project / "data" / "mini.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    first = run_sweep(project, "first")
    second = run_sweep(project, "second")  # the same cache (.llmeval_cache): nothing to do
    # Two xdist workers, three models: one worker sweeps two of them (its own cache: all
    # new), after a smoke run of each model on its worker.
    xdist = run_sweep(
        project, "xdist", "-n", "2", "--llmeval-cache-dir", "xcache", "--llmeval-smoke"
    )
    return {"project": project, "vocab": vocab, "first": first, "second": second, "xdist": xdist}


def report_of(sweep: Mapping[str, Any], run: str) -> dict[str, Any]:
    result = sweep[run]
    assert result.returncode in (0, 1), result.stdout[-3000:] + result.stderr[-3000:]
    path = sweep["project"] / run / "report.json"
    assert path.is_file(), result.stdout[-3000:] + result.stderr[-3000:]
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def csv_rows(sweep: Mapping[str, Any], run: str) -> dict[str, dict[str, str]]:
    with (sweep["project"] / run / "models.csv").open(encoding="utf-8") as handle:
        return {row["model"]: row for row in csv.DictReader(handle)}


def test_each_model_is_unloaded_before_the_next_loads(sweep: dict[str, Any]) -> None:
    report = report_of(sweep, "first")
    loads = {load["model"]: load for load in report["model_loads"]}
    assert sorted(loads) == sorted(MODELS)
    stays = sorted(
        (stay["loaded"], stay["unloaded"], model)
        for model, load in loads.items()
        for stay in load["residency"]
    )
    # Model-major order (the two tasks' items of a model run together): one load each, in
    # the order given, each released (and its model object garbage-collected) before the next.
    assert [model for _, _, model in stays] == MODELS
    assert all(load["model_loads"] == 1 for load in loads.values())
    for (_, unloaded, _), (loaded_next, _, _) in zip(stays, stays[1:], strict=False):
        assert unloaded is not None and unloaded < loaded_next
    released = [s for load in loads.values() for s in load["residency"] if s["unloaded"]]
    # The last one too: no later item of the process needs it.
    assert len(released) == 3 and all(s["freed"] is True for s in released)
    # The same order on the terminal: loading a, a unloaded (freed), loading b, ...
    said = [
        " ".join(line.split()[1:4])
        for line in sweep["first"].stdout.splitlines()
        if line.startswith("llmeval: ") and ("loading" in line or "unloaded" in line)
    ]
    assert said == [
        "loading model smollm2-135m", "model smollm2-135m unloaded",
        "loading model tiny-llama", "model tiny-llama unloaded",
        "loading model tiny-qwen", "model tiny-qwen unloaded",
    ]  # fmt: skip
    items = [
        json.loads(x) for x in (sweep["project"] / "first" / "items.jsonl").read_text().splitlines()
    ]
    assert [r["model"] for r in items] == [m for m in MODELS for _ in range(4)]


def test_models_csv_has_one_row_per_model_with_true_parameter_counts(sweep: dict[str, Any]) -> None:
    report = report_of(sweep, "first")
    assert report["files"]["models"] == "models.csv"
    rows = csv_rows(sweep, "first")
    assert list(rows) == MODELS
    folder = sweep["project"] / "first"
    items = [json.loads(line) for line in (folder / "items.jsonl").read_text().splitlines()]
    summary = (folder / "summary.md").read_text()
    assert "## Models (all columns: models.csv)" in summary
    vocab = sweep["vocab"]
    assert int(rows["tiny-llama"]["parameters"]) == expected_parameters(vocab, qwen=False)
    assert int(rows["tiny-qwen"]["parameters"]) == expected_parameters(vocab, qwen=True)
    assert 130e6 < int(rows["smollm2-135m"]["parameters"]) < 140e6
    for model, row in rows.items():
        assert row["items"] == "4" and row["cached"] == "0" and row["model_loads"] == "1"
        assert row["dtype"] == "float32" and row["device"] == "cpu"
        assert row["gpu_name"] == "" and row["peak_vram_gb"] == ""  # unknown on the CPU: empty
        assert row["energy_wh"] == "" or float(row["energy_wh"]) >= 0
        assert float(row["model_size_gb"]) > 0 and float(row["load_time_s"]) > 0
        assert float(row["tokens_per_s"]) > 0
        assert float(row["latency_p50_s"]) <= float(row["latency_p95_s"])
        # Speed over all 4 of the model's items (both tasks), not an average of task figures:
        # numpy's percentile of the items' latencies and tokens over distinct batch walls.
        mine = [r for r in items if r["model"] == model]
        latencies = [r["latency_s"] for r in mine]
        assert float(row["latency_p50_s"]) == pytest.approx(np.percentile(latencies, 50), abs=1e-6)
        assert float(row["latency_p95_s"]) == pytest.approx(np.percentile(latencies, 95), abs=1e-6)
        walls = {r["batch_id"]: r["batch_wall_s"] for r in mine}
        tokens = sum(r["tokens_out"] for r in mine)
        assert float(row["tokens_per_s"]) == pytest.approx(tokens / sum(walls.values()), rel=1e-5)
        assert f"| {model} " in summary
        for task in ("add", "more"):
            metrics = report["tasks"][task]["models"][model]["metrics"]
            assert float(row[f"{task} accuracy"]) == pytest.approx(metrics["accuracy"])
            low, high = metrics["accuracy_ci95"]
            assert float(row[f"{task} accuracy_low"]) == pytest.approx(low, abs=1e-6)
            assert float(row[f"{task} accuracy_high"]) == pytest.approx(high, abs=1e-6)


def test_a_rerun_of_a_finished_sweep_loads_no_model(sweep: dict[str, Any]) -> None:
    first, second = report_of(sweep, "first"), report_of(sweep, "second")
    assert all(load["model_loads"] == 0 for load in second["model_loads"])
    assert all(load["residency"] == [] for load in second["model_loads"])
    before, after = csv_rows(sweep, "first"), csv_rows(sweep, "second")
    assert list(after) == MODELS
    for model in MODELS:
        assert after[model]["cached"] == "4" and after[model]["model_loads"] == "0"
        assert after[model]["tokens_per_s"] == "" and after[model]["load_time_s"] == ""
        for task in ("add", "more"):
            assert after[model][f"{task} accuracy"] == before[model][f"{task} accuracy"]
    assert first["totals"]["items"] == second["totals"]["items"] == 12


def test_under_xdist_a_worker_with_two_models_sweeps_them(sweep: dict[str, Any]) -> None:
    report = report_of(sweep, "xdist")
    by_worker: dict[str, list[tuple[int, int | None, str]]] = {}
    for load in report["model_loads"]:
        for stay in load["residency"]:
            by_worker.setdefault(load["worker"], []).append(
                (stay["loaded"], stay["unloaded"], load["model"])
            )
    # Whole models per worker (scheduling.assign_shares): gw0 smollm2-135m and tiny-qwen,
    # gw1 tiny-llama. gw0's smoke run tries tiny-qwen first and unloads it, then smollm2-135m,
    # which stays for its items; released after its last one (read from the xdist queue),
    # then tiny-qwen loads again for its own items: never two models at once.
    assert sorted(by_worker) == ["gw0", "gw1"]
    assert sorted(by_worker["gw0"]) == [
        (1, 2, "tiny-qwen"), (3, 4, "smollm2-135m"), (5, 6, "tiny-qwen"),
    ]  # fmt: skip
    assert by_worker["gw1"] == [(1, 2, "tiny-llama")]
    rows = csv_rows(sweep, "xdist")
    assert list(rows) == MODELS
    loads = {model: row["model_loads"] for model, row in rows.items()}
    assert loads == {"smollm2-135m": "1", "tiny-llama": "1", "tiny-qwen": "2"}
    assert all(row["items"] == "4" and row["errors"] == "0" for row in rows.values())


FAKE_CUDA = textwrap.dedent(
    """
    import json, sys, weakref
    import torch
    from pytest_llmeval.backends import hf_model
    from pytest_llmeval.backends.transformers_backend import TransformersBackend, TransformersOptions
    from pytest_llmeval.declare.models import ModelSpec
    from pytest_llmeval.run.engine import Engine

    # A fake CUDA allocator: a loaded model allocates its weights' bytes, freed only when the
    # model object is garbage-collected; the peak is reset only by reset_peak_memory_stats.
    memory = {"allocated": 0, "peak": 0, "resets": 0}
    real_load = hf_model.load_model

    def load_model(path, revision, dtype, device):
        model = real_load(path, revision, dtype, "cpu")
        size = sum(p.numel() * p.element_size() for p in model.parameters())
        memory["allocated"] += size
        memory["peak"] = max(memory["peak"], memory["allocated"])
        weakref.finalize(model, memory.__setitem__, "allocated", memory["allocated"] - size)
        return model

    def reset(device=None):
        memory["resets"] += 1
        memory["peak"] = memory["allocated"]

    hf_model.load_model = load_model
    hf_model.cuda_usable = lambda: True
    torch.cuda.is_available = lambda: True
    torch.cuda.reset_peak_memory_stats = reset
    torch.cuda.max_memory_allocated = lambda device=None: memory["peak"]
    torch.cuda.empty_cache = lambda: None

    models = sys.argv[1]
    made = {}
    def make(spec):
        backend = TransformersBackend(spec, TransformersOptions(device="cpu"))
        backend.device = "cuda:0"  # what a GPU run holds; the weights stay on the CPU here
        made[spec.name] = backend
        return backend

    engine = Engine(make_backend=make)
    for name in ("tiny-qwen", "tiny-llama"):  # the larger first: its peak must not carry over
        backend = engine.backend(ModelSpec(name, "transformers", f"{models}/{name}"))
        engine._load(backend, engine._meter(backend))
        engine.unload(name)
    records = {r.model: r for r in engine.load_records()}
    print(json.dumps({
        "resets": memory["resets"],
        "allocated_after": memory["allocated"],
        "peaks": {n: r.peak_vram_bytes for n, r in records.items()},
        "freed": {n: [s["freed"] for s in r.residency] for n, r in records.items()},
        "parameters": {n: r.parameters for n, r in records.items()},
    }))
    """
)


# Two models resident at once (an agreement reference, or an xdist queue that cannot be read:
# nothing unloaded): qwen loads, a batch of it peaks `batch` bytes above its weights (freed
# after), then llama loads beside it.
FAKE_CUDA_TOGETHER = FAKE_CUDA[: FAKE_CUDA.index("engine = Engine(")] + textwrap.dedent(
    """
    engine = Engine(make_backend=make)
    qwen = engine.backend(ModelSpec("tiny-qwen", "transformers", f"{models}/tiny-qwen"))
    engine._load(qwen, engine._meter(qwen))
    memory["peak"] = max(memory["peak"], memory["allocated"] + int(sys.argv[2]))
    llama = engine.backend(ModelSpec("tiny-llama", "transformers", f"{models}/tiny-llama"))
    engine._load(llama, engine._meter(llama))
    records = {r.model: r for r in engine.load_records()}
    print(json.dumps({
        "resets": memory["resets"],
        "peaks": {n: r.peak_vram_bytes for n, r in records.items()},
        "shared": {n: r.backend_info.get("peak_vram_shared_with") for n, r in records.items()},
    }))
    """
)


def test_a_models_peak_vram_survives_another_model_loading_beside_it(
    sweep: dict[str, Any],
) -> None:
    """Resetting torch's process-wide peak at llama's load would erase qwen's batch peak while
    qwen is still resident: the running maximum is kept instead, and both say it is shared."""
    vocab = sweep["vocab"]
    qwen = 4 * expected_parameters(vocab, qwen=True)
    llama = 4 * expected_parameters(vocab, qwen=False)
    batch = 3 * llama  # qwen's batch needed more than llama's weights
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    env["PYTHONPATH"] = str(REPO_ROOT)
    done = subprocess.run(
        [sys.executable, "-c", FAKE_CUDA_TOGETHER, str(sweep["project"] / "models"), str(batch)],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["resets"] == 1  # at qwen's load only: nothing else was resident then
    # qwen + its batch (> qwen + llama's weights): both report that running maximum
    assert seen["peaks"] == {"tiny-qwen": qwen + batch, "tiny-llama": qwen + batch}
    assert seen["shared"] == {"tiny-qwen": ["tiny-llama"], "tiny-llama": ["tiny-qwen"]}


def test_peak_vram_is_each_models_own_with_a_fake_cuda_allocator(sweep: dict[str, Any]) -> None:
    """No GPU here: torch.cuda's memory API is replaced by a fake allocator that frees a
    model's bytes only when the model object is collected. Each model's peak is its own
    weights (reset at its load; the larger model loaded first does not carry over)."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": str(REPO_ROOT),
    }
    done = subprocess.run(
        [sys.executable, "-c", FAKE_CUDA, str(sweep["project"] / "models")],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    vocab = sweep["vocab"]
    own = {
        "tiny-llama": 4 * expected_parameters(vocab, qwen=False),  # float32: 4 bytes each
        "tiny-qwen": 4 * expected_parameters(vocab, qwen=True),
    }
    assert seen["resets"] == 2 and seen["allocated_after"] == 0
    assert seen["peaks"] == own
    assert seen["freed"] == {"tiny-llama": [True], "tiny-qwen": [True]}
