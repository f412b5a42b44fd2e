"""Each built-in backend says where its model sits (what the engine meters) and loads on
demand (so the engine can meter the load apart from the batches)."""

from __future__ import annotations

import pytest

from pytest_llmeval.backends import create_backend, devices_of
from pytest_llmeval.backends.vllm_backend import VLLMOptions, energy_devices_for
from pytest_llmeval.declare.models import ModelSpec


@pytest.mark.parametrize(
    ("device", "expected"),
    [("cuda", (0,)), ("cuda:0", (0,)), ("cuda:3", (3,)), ("cpu", "cpu"), ("mps", "cpu")],
)
def test_a_local_device_names_its_cuda_ordinal_or_the_cpu(device: str, expected: object) -> None:
    assert devices_of(device) == expected


def test_vllm_occupies_its_tensor_parallel_gpus() -> None:
    assert energy_devices_for(VLLMOptions()) == (0,)
    assert energy_devices_for(VLLMOptions(tensor_parallel_size=4)) == (0, 1, 2, 3)


def test_callable_and_openai_backends_are_remote_and_load_nothing() -> None:
    specs = [
        ModelSpec("c", "callable", "json:dumps"),
        ModelSpec("o", "openai", "m", options={"base_url": "http://127.0.0.1:9/v1"}),
    ]
    for spec in specs:
        backend = create_backend(spec, {})
        backend.load()  # nothing to load: returns at once, no request made
        assert backend.energy_devices() is None
