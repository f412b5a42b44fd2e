"""Up-front xdist shares and GPU pinning (pure parts)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from pytest_llmeval.declare.ids import is_eval_item, model_of
from pytest_llmeval.run.gpus import GpuPinningWarning, assign_gpus, visible_gpus
from pytest_llmeval.run.scheduling import assign_shares


def ids(task: str, n: int, model: str | None = None) -> list[str]:
    suffix = f"[{model}]" if model else ""
    return [f"evals/test_{task}.py::{task}/test/{i:04d}{suffix}" for i in range(n)]


def test_eval_item_ids_are_recognised() -> None:
    assert is_eval_item("evals/test_g.py::gsm8k/test/0042")
    assert model_of("evals/test_g.py::gsm8k/test/0042[qwen7b]") == "qwen7b"
    assert model_of("evals/test_g.py::gsm8k/test/0042") is None
    assert not is_eval_item("tests/test_x.py::test_thing[a/b/1]")
    assert not is_eval_item("tests/test_x.py::TestA::test_b")


def test_one_model_is_split_in_contiguous_halves() -> None:
    shares = assign_shares(ids("gsm8k", 10), 2)
    assert shares == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]


def test_each_model_goes_to_its_own_worker() -> None:
    nodeids = ids("gsm8k", 6, "a") + ids("gsm8k", 6, "b")
    shares = assign_shares(nodeids, 2)
    assert [{model_of(nodeids[i]) for i in share} for share in shares] == [{"a"}, {"b"}]


def test_spare_workers_split_the_biggest_model() -> None:
    nodeids = ids("t", 8, "big") + ids("t", 2, "small")
    shares = assign_shares(nodeids, 3)
    assert [len(s) for s in shares] == [4, 4, 2]
    assert all(len({model_of(nodeids[i]) for i in share}) == 1 for share in shares)


def test_more_models_than_workers_keeps_models_whole() -> None:
    nodeids = ids("t", 4, "a") + ids("t", 3, "b") + ids("t", 2, "c")
    shares = assign_shares(nodeids, 2)
    assert sorted(i for s in shares for i in s) == list(range(9))
    for share in shares:
        models = [model_of(nodeids[i]) for i in share]
        for model in set(models):
            assert models.count(model) == [m for m in map(model_of, nodeids)].count(model)


def test_a_models_prompt_variants_stay_with_its_workers() -> None:
    # Two models x two variants on two workers: each worker holds one model's weights.
    # Grouped by the whole bracket, there were four groups for two workers and a worker held
    # both models (qwen-cot with smol-plain).
    nodeids = [
        *ids("t", 3, "qwen-plain"), *ids("t", 3, "smol-plain"),
        *ids("t", 3, "qwen-cot"), *ids("t", 3, "smol-cot"),
    ]  # fmt: skip
    shares = assign_shares(nodeids, 2, ["qwen", "smol"])
    held = [{model_of(nodeids[i]).split("-")[0] for i in share} for share in shares]  # type: ignore[union-attr]
    assert sorted(map(sorted, held)) == [["qwen"], ["smol"]]
    assert sorted(i for s in shares for i in s) == list(range(12))


def test_assignment_is_deterministic_and_complete() -> None:
    nodeids = ids("a", 7) + ids("b", 5)
    assert assign_shares(nodeids, 3) == assign_shares(list(nodeids), 3)
    assert sorted(i for s in assign_shares(nodeids, 3) for i in s) == list(range(12))


def test_visible_gpus_follow_an_outer_cuda_visible_devices() -> None:
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "3,5"}) == ["3", "5"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "GPU-aa, GPU-bb"}) == ["GPU-aa", "GPU-bb"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []
    assert visible_gpus({}) == []  # no NVML on this machine: no GPUs, nothing to pin


def test_assign_gpus_round_robin_warns_when_oversubscribed() -> None:
    assert assign_gpus(2, ["3", "5"]) == ["3", "5"]
    assert assign_gpus(2, []) == [None, None]
    with pytest.warns(GpuPinningWarning, match="3 xdist workers but 2 GPU"):
        assert assign_gpus(3, ["3", "5"]) == ["3", "5", "3"]


def test_the_load_scheduling_members_eval_scheduling_uses_exist(pytester: pytest.Pytester) -> None:
    # EvalScheduling extends xdist's LoadScheduling: a release that renames what it uses
    # fails here, by name, rather than somewhere in a run.
    from pytest_llmeval.run.scheduling import LOAD_SCHEDULING_MEMBERS, EvalScheduling

    scheduler = EvalScheduling(pytester.parseconfig("-p", "xdist", "--tx", "2*popen"))
    missing = [name for name in LOAD_SCHEDULING_MEMBERS if not hasattr(scheduler, name)]
    assert missing == [], f"pytest-xdist's LoadScheduling no longer has {missing}"


def test_pinned_worker_specs_say_how_many_workers_share_their_gpu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import execnet

    from pytest_llmeval.run.xdist_hooks import XdistHooks

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    specs = [execnet.XSpec("popen") for _ in range(3)]
    for index, spec in enumerate(specs):
        spec.id = f"gw{index}"
    config = SimpleNamespace(pluginmanager=SimpleNamespace(get_plugin=lambda name: None))
    with pytest.warns(GpuPinningWarning):
        XdistHooks(pin_gpus=True).pytest_xdist_setupnodes(config, specs)  # type: ignore[arg-type]
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in specs] == ["0", "1", "0"]
    assert [s.env["LLMEVAL_GPU_SHARED_BY"] for s in specs] == ["2", "1", "2"]
    assert [s.id for s in specs] == ["gw0", "gw1", "gw2"]
