"""Whole-share generation for backends that batch internally (issue 12, target 3).

The engine hands such a backend (vLLM, the HTTP backend with `concurrency`) the worker's whole
share at once and commits each result to the cache as it finishes, so a killed run loses at
most the requests in flight. vLLM is not installed here: its engine is the fake in
`fake_vllm.py`, which follows vLLM's step API (`add_request`, `step`, `abort_request`).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections import Counter
from collections.abc import Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fake_vllm
import pytest
from chat_tokenizers import CHAT_MODELS, save_tokenizer
from fault_server import FaultServer

from conftest import mini_rows
from pytest_llmeval.backends import (
    GenerationRequest,
    GenerationResult,
    create_backend,
)
from pytest_llmeval.backends.openai_backend import OpenAIBackend
from pytest_llmeval.backends.options import parse_options
from pytest_llmeval.backends.vllm_backend import VLLMBackend, VLLMOptions
from pytest_llmeval.backends.vllm_requests import sampling_kwargs
from pytest_llmeval.declare.models import ModelSpec
from pytest_llmeval.declare.task import Generation, Message
from pytest_llmeval.run.cache import GenerationCache
from pytest_llmeval.run.crash_journal import BatchJournal, read_batch
from pytest_llmeval.run.engine import Engine
from pytest_llmeval.run.meters import EnergyReading

GSM8K_TEST_ITEMS = 1319
SAMPLED = Generation(max_new_tokens=8, temperature=0.7, seed=3)


@dataclass
class Item:
    nodeid: str
    model_spec: ModelSpec
    content: str
    settings: Generation = SAMPLED

    def batch_key(self) -> Hashable:
        return self.settings

    def request(self) -> GenerationRequest:
        messages: list[Message] = [{"role": "user", "content": self.content}]
        return GenerationRequest(messages, self.settings, item_id=self.nodeid)


def share(spec: ModelSpec, count: int, **kwargs: Any) -> list[Item]:
    """`count` items with prompts of varied lengths (so they finish out of order)."""
    return [
        Item(f"gsm8k/test/{i:04d}", spec, "how many " * (i % 13) + f"apples {i}?", **kwargs)
        for i in range(count)
    ]


def stored(directory: Path) -> int:
    with sqlite3.connect(directory / "generations.sqlite3") as conn:
        count: int = conn.execute("SELECT COUNT(*) FROM generations").fetchone()[0]
    return count


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local Llama-3-Instruct-like tokenizer directory (what `vllm:<dir>` loads)."""
    return save_tokenizer(CHAT_MODELS[0], tmp_path_factory.mktemp("llama3"))


def vllm_backend(model_dir: Path) -> VLLMBackend:
    spec = ModelSpec(name="m", backend="vllm", model_id=str(model_dir))
    return VLLMBackend(spec, parse_options(VLLMOptions, spec, {}))


def engine_for(backend: Any, cache_dir: Path) -> Engine:
    return Engine(make_backend=lambda spec: backend, cache=GenerationCache(cache_dir))


# --- vLLM: the whole share through the step API ----------------------------------------------


def test_vllm_gets_the_whole_share_and_keeps_its_scheduler_full(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    vllm = fake_vllm.install(monkeypatch, max_num_seqs=64)
    backend = vllm_backend(model_dir)
    engine = engine_for(backend, tmp_path)
    items = share(backend.spec, GSM8K_TEST_ITEMS)

    assert engine.result_for(items[0], items[1:]).text == "42"

    [llm] = vllm.LLM.created
    fake = llm.llm_engine
    assert llm.calls == [], "no LLM.generate call: the step API fed the whole share"
    assert len(fake.added) == GSM8K_TEST_ITEMS  # in the first item's setup
    assert fake.max_running == 64, "the scheduler always had max_num_seqs requests to run"
    assert fake.max_unfinished <= 2 * 64, "requests are added as others finish"
    assert stored(tmp_path) == GSM8K_TEST_ITEMS
    # Each later item reads its result without any model work.
    assert all(engine.result_for(item, ()).text == "42" for item in items[1:])
    assert len(fake.added) == GSM8K_TEST_ITEMS


def test_vllm_requests_keep_their_seeded_params_and_ask_for_final_outputs_only(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    vllm = fake_vllm.install(monkeypatch, max_num_seqs=4)
    backend = vllm_backend(model_dir)
    engine = engine_for(backend, tmp_path)
    items = share(backend.spec, 10)
    results = {item.nodeid: engine.result_for(item, items[i + 1 :]) for i, item in enumerate(items)}

    fake = vllm.LLM.created[0].llm_engine
    sent = [fake.params[request_id] for request_id in fake.added]
    assert {p.seed for p in sent} == {sampling_kwargs(item.request())["seed"] for item in items}
    assert all(p.output_kind is fake_vllm.RequestOutputKind.FINAL_ONLY for p in sent)
    # The record says what was sent (the output kind is not a decoding setting).
    first = results[items[0].nodeid]
    assert first.decoding == sampling_kwargs(items[0].request())
    assert first.tokens_out == 2 and first.tokens_in is not None


@pytest.mark.parametrize(
    ("metrics", "method"),
    [
        ("v0", "vllm request metrics: first scheduled until finished"),
        (
            None,
            "per-request: wall time from adding it to the engine until its output "
            "(queueing included; this vLLM version reported no per-request metrics)",
        ),
    ],
)
def test_vllm_streamed_latency_is_each_requests_own(
    model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    metrics: str | None,
    method: str,
) -> None:
    fake_vllm.install(monkeypatch, metrics=metrics, max_num_seqs=4)
    backend = vllm_backend(model_dir)
    engine = engine_for(backend, tmp_path)
    items = share(backend.spec, 6)
    results = [engine.result_for(item, items[i + 1 :]) for i, item in enumerate(items)]
    assert {r.latency_method for r in results} == {method}


def test_a_killed_vllm_run_loses_only_the_requests_in_flight(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    vllm = fake_vllm.install(monkeypatch, max_num_seqs=64)
    backend = vllm_backend(model_dir)
    backend.load()
    killed = backend.engine.llm_engine
    killed.kill_after_steps = 30
    engine = engine_for(backend, tmp_path)
    items = share(backend.spec, GSM8K_TEST_ITEMS)

    with pytest.raises(fake_vllm.Killed):
        engine.result_for(items[0], items[1:])

    finished = set(killed.finished)
    in_flight = set(killed.added) - finished
    assert 0 < len(finished) < GSM8K_TEST_ITEMS
    assert stored(tmp_path) == len(finished), "every finished request was on disk"
    assert len(in_flight) <= 2 * 64, "only requests added and not finished are lost"
    assert set(killed.aborted) == in_flight, "the engine is left with nothing to run"

    # The rerun generates only the rest.
    again = vllm_backend(model_dir)
    rerun = engine_for(again, tmp_path)
    results = [rerun.result_for(item, items[i + 1 :]) for i, item in enumerate(items)]
    assert len(vllm.LLM.created[-1].llm_engine.added) == GSM8K_TEST_ITEMS - len(finished)
    assert sum(r.cached for r in results) == len(finished)
    assert stored(tmp_path) == GSM8K_TEST_ITEMS


def test_an_engine_that_dies_mid_share_leaves_each_item_its_own_error(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_vllm.install(monkeypatch, max_num_seqs=8)
    backend = vllm_backend(model_dir)
    backend.load()
    backend.engine.llm_engine.crash_after_steps = 3
    engine = engine_for(backend, tmp_path)
    items = share(backend.spec, 40)
    outcomes = []
    for i, item in enumerate(items):
        try:
            outcomes.append(engine.result_for(item, items[i + 1 :]).text)
        except RuntimeError as exc:
            outcomes.append(str(exc))
    # What finished before the crash is kept; every other item reports the engine's error.
    assert set(outcomes) == {"42", "EngineCore encountered an issue"}
    assert stored(tmp_path) == outcomes.count("42")


# --- the engine's side: windows, energy, journal ----------------------------------------------


class StreamingBackend:
    """Submits requests in order, at most `max_in_flight` unfinished, finishing the newest
    first; records, at each finish, what was in flight and what the journal said."""

    def __init__(self, journal_dir: Path | None = None, max_in_flight: int = 4) -> None:
        self.spec = ModelSpec("m", "fake", "m")
        self.default_batch_size = 3
        self.max_in_flight = max_in_flight
        self.journal_dir = journal_dir
        self.seen: list[tuple[set[str], list[str] | None]] = []
        self.streams = 0

    def identity(self) -> Mapping[str, Any]:
        return {"backend": "fake-stream"}

    def render(self, messages: list[Message]) -> str:
        return messages[-1]["content"]

    def energy_devices(self) -> str:
        return "cpu"

    def generate(
        self, requests: Sequence[GenerationRequest], batch_id: str
    ) -> list[GenerationResult]:
        raise AssertionError("a streaming backend gets the whole share as a stream")

    def generate_stream(
        self, requests: Sequence[GenerationRequest]
    ) -> Iterator[list[tuple[int, GenerationResult | Exception]]]:
        self.streams += 1
        waiting = list(range(len(requests)))
        live: list[int] = []
        while waiting or live:
            while waiting and len(live) < self.max_in_flight:
                live.append(waiting.pop(0))
            index = live.pop()  # the newest first: out of order
            prompt = requests[index].item_id
            journal = None if self.journal_dir is None else read_batch(self.journal_dir, "gw1")
            self.seen.append(({requests[i].item_id for i in [*live, index]}, journal))
            tokens = 1 + index % 3
            yield [(index, GenerationResult("ok", prompt, 5, tokens, 0.1, "stop", "", 0, 0.0, "t"))]


class FakeMeter:
    """Every window measures 12 J on gpu0."""

    def __init__(self) -> None:
        self.windows = 0

    def start(self) -> None:
        self.windows += 1

    def stop(self) -> list[EnergyReading]:
        return [EnergyReading("nvml-energy-counter", 12.0, None, 1.0, 12.0, None, "gpu0")]

    def unavailable(self) -> list[EnergyReading]:
        return []

    def notes(self) -> list[str]:
        return []


def test_the_journal_always_holds_every_request_in_flight(tmp_path: Path) -> None:
    backend = StreamingBackend(journal_dir=tmp_path)
    engine = Engine(make_backend=lambda spec: backend, worker="gw1")
    engine.journal = BatchJournal(tmp_path, "gw1")
    items = share(backend.spec, 20)
    engine.result_for(items[0], items[1:])
    assert backend.streams == 1 and len(backend.seen) == 20
    for in_flight, journal in backend.seen:
        assert journal is not None and in_flight <= set(journal)
        # Not the whole share: the requests in flight and the next window's.
        assert len(journal) <= backend.max_in_flight + backend.default_batch_size
    assert read_batch(tmp_path, "gw1") is None, "nothing on record once the share is done"


def test_energy_windows_close_every_few_finished_requests_and_split_by_tokens(
    tmp_path: Path,
) -> None:
    backend = StreamingBackend()
    engine = engine_for(backend, tmp_path)
    meter = FakeMeter()
    engine.meter_of["m"] = meter  # type: ignore[assignment]
    items = share(backend.spec, 7)
    results = [engine.result_for(item, items[i + 1 :]) for i, item in enumerate(items)]

    windows: dict[str, list[GenerationResult]] = {}
    for result in results:
        windows.setdefault(result.batch_id, []).append(result)
    assert meter.windows == 3  # 3 + 3 + 1 finished requests (the batch size is 3)
    assert sorted(len(w) for w in windows.values()) == [1, 3, 3]
    for window in windows.values():
        assert {r.batch_size for r in window} == {len(window)}
        assert {r.batch_energy_j for r in window} == {12.0}
        tokens = [r.tokens_out or 0 for r in window]
        shares = [round(12.0 * t / sum(tokens), 6) for t in tokens]
        assert [r.energy_j for r in window] == shares
        assert all("finished" in (r.energy_method or "") for r in window)
    # What the cache holds is the final record, energy included.
    cached = engine_for(backend, tmp_path)
    again = cached.result_for(items[0], ())
    assert again.cached and again.energy_j == results[0].energy_j


def test_the_windowed_path_stays_for_backends_that_do_not_stream(tmp_path: Path) -> None:
    class Plain(StreamingBackend):
        generate_stream = None  # type: ignore[assignment]

        def generate(
            self, requests: Sequence[GenerationRequest], batch_id: str
        ) -> list[GenerationResult]:
            self.streams -= 1
            return [
                GenerationResult("ok", r.item_id, 5, 1, 0.1, "stop", batch_id, 3, 0.0, "t")
                for r in requests
            ]

    backend = Plain()
    engine = engine_for(backend, tmp_path)
    items = share(backend.spec, 20)
    engine.result_for(items[0], items[1:])
    # Windows of 4 batches of 3, generated until the item's own result exists.
    assert 1 <= -backend.streams <= 4 and stored(tmp_path) <= 12


# --- HTTP: the whole share through the concurrency pool --------------------------------------


def http_backend(url: str, concurrency: int) -> OpenAIBackend:
    options = {"concurrency": concurrency, "max_retries": 0, "read_timeout": 5}
    made = create_backend(ModelSpec("served", "openai", f"test-model@{url}", options=options), {})
    assert isinstance(made, OpenAIBackend)
    return made


def test_http_share_goes_through_the_pool_and_each_answer_is_cached_as_it_arrives(
    tmp_path: Path,
) -> None:
    with FaultServer(delay_s=0.01) as server:
        backend = http_backend(server.base_url, concurrency=4)
        engine = engine_for(backend, tmp_path)
        assert engine.cache is not None
        items = share(backend.spec, 40, settings=Generation(max_new_tokens=8))
        items[5].content = "HOLD " + items[5].content
        # The held request answers only once every other answer is on disk: it would wait
        # forever if answers were committed when the share is done.
        committed: set[str] = set()
        everything_else = threading.Event()
        put_many = engine.cache.put_many

        def recording(entries: Sequence[tuple[str, Mapping[str, Any]]]) -> None:
            put_many(entries)
            committed.update(key for key, _ in entries)
            if len(committed) >= 39:
                everything_else.set()

        engine.cache.put_many = recording  # type: ignore[method-assign]
        attempt = backend._attempt

        def held(request: GenerationRequest, *args: Any) -> Any:
            if request.messages[-1]["content"].startswith("HOLD"):
                assert everything_else.wait(timeout=10), "answers were not committed as they came"
            return attempt(request, *args)

        backend._attempt = held  # type: ignore[method-assign]
        assert engine.result_for(items[0], items[1:]).text.startswith("echo: ")
        asked = [r for r in server.received if r.body["messages"][-1]["content"] != "Hi"]
        assert len(asked) == 40, "the whole share went out in the first item's setup"
        assert server.max_in_flight == 4
    assert stored(tmp_path) == 40
    results = [engine.result_for(item, ()) for item in items[1:]]
    assert all(r.energy_reason == "remote backend" for r in results)


def test_the_vllm_engine_starts_in_the_load_window_not_before(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    vllm = fake_vllm.install(monkeypatch, max_num_seqs=4)
    backend = vllm_backend(model_dir)
    engine = engine_for(backend, tmp_path)
    told: list[tuple[str, int]] = []
    engine.notify = lambda kind, model, facts: told.append((kind, len(vllm.LLM.created)))
    items = share(backend.spec, 5)
    engine.result_for(items[0], items[1:])
    # No engine exists before "loading" is told; it exists once "loaded" is.
    assert told[:2] == [("loading", 0), ("loaded", 1)]
    assert engine.loaded["m"]["load_window_s"] >= 0


def test_a_pytest_run_on_vllm_streams_the_share_and_reports_windows_as_batches(
    evalproject: pytest.Pytester, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    vllm = fake_vllm.install(monkeypatch, max_num_seqs=4)
    (evalproject.path / "data" / "mini.jsonl").write_text(mini_rows(30))
    result = evalproject.runpytest(
        f"--model=vllm:{model_dir}",
        "--llmeval-data-dir=data",
        "--llmeval-report=out/report.json",
        "--llmeval-batch-size=8",
        "-W",
        "ignore::pytest.PytestAssertRewriteWarning",
    )
    result.assert_outcomes(failed=31)  # 30 misses (the fake answers 42) and the gate
    [llm] = vllm.LLM.created
    assert llm.calls == [] and len(llm.llm_engine.added) == 30
    records = [
        json.loads(line)
        for line in (evalproject.path / "out" / "items.jsonl").read_text().splitlines()
    ]
    windows = Counter(r["batch_id"] for r in records)
    assert sorted(windows.values()) == [6, 8, 8, 8]  # 8 finished requests a window
    envelope = json.loads((evalproject.path / "out" / "report.json").read_text())
    [entry] = envelope["tasks"]["mini"]["models"].values()
    assert entry["metrics"]["batches"] == 4 and entry["metrics"]["generated"] == 30
    assert entry["metrics"]["tokens_out"] == 60
