"""The cache serves only what this exact setup would generate: the identity of callable and
transformers backends (issue 10, points 5 and 6).

Callable backends are driven through whole pytester runs (a first run fills the cache, the
second shows whether it was served from it); the transformers identity is built with the real
tokenizer of the embedded model and a mocked `torch.cuda` for the GPU name (no weights load).
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from fake_nvml import FakeNvml

from conftest import TASK_MODULE, mini_rows
from pytest_llmeval.backends.callable_backend import CallableBackend, CallableOptions
from pytest_llmeval.backends.fingerprint import source_identity
from pytest_llmeval.declare.models import ModelSpec, resolve_model
from pytest_llmeval.declare.task import Generation
from pytest_llmeval.run.cache_key import cache_key

# A pipeline whose answer goes through a helper of the same module; `OFFSET` is what the
# tests edit between runs (0: right answers, 1000: every answer wrong).
PIPE_MODULE = """
import functools

OFFSET = {offset}


def add(left, right):
    return left + right + OFFSET


def reply(messages, settings, extra=""):
    question = messages[-1]["content"]
    left, _op, right = question.split("q: ")[1].split()[:3]
    return f"The sum is {{add(int(left), int(right))}}.{{extra}}\\n#### {{add(int(left), int(right))}}"


reply_partial = functools.partial(reply, extra=" (via a partial)")
"""


def write_pipe(pytester: pytest.Pytester, offset: int) -> None:
    # The file's size changes with the offset, so Python never reuses a stale .pyc either.
    (pytester.path / "pipe.py").write_text(PIPE_MODULE.format(offset=offset))


@pytest.fixture
def pipeproject(pytester: pytest.Pytester) -> pytest.Pytester:
    """A pytester project with the mini task (10 sums) and the pipeline module `pipe`."""
    pytester.syspathinsert()
    pytester.makepyfile(test_mini=TASK_MODULE)
    write_pipe(pytester, offset=0)
    (pytester.path / "data").mkdir()
    (pytester.path / "data" / "mini.jsonl").write_text(mini_rows())
    return pytester


def run_pipe(
    pytester: pytest.Pytester, model: str
) -> tuple[pytest.RunResult, list[dict[str, Any]]]:
    result = pytester.runpytest(
        "--model",
        model,
        "--llmeval-data-dir=data",
        "--llmeval-report",
        "out/report.json",
        "-W",
        "ignore::pytest.PytestAssertRewriteWarning",
    )
    lines = (pytester.path / "out" / "items.jsonl").read_text().splitlines()
    return result, [json.loads(line) for line in lines]


def test_editing_a_helper_in_the_functions_module_invalidates_the_cache(
    pipeproject: pytest.Pytester,
) -> None:
    first, records = run_pipe(pipeproject, "callable:pipe:reply")
    first.assert_outcomes(passed=11)  # 10 items and the gate
    assert [r["cached"] for r in records] == [False] * 10

    write_pipe(pipeproject, offset=1000)  # `reply` itself is unchanged; its helper is not
    second, records = run_pipe(pipeproject, "callable:pipe:reply")
    second.assert_outcomes(passed=0, failed=11)  # as an uncached run of the new code
    assert [r["cached"] for r in records] == [False] * 10


def test_a_partial_is_served_from_the_cache_on_the_second_run(
    pipeproject: pytest.Pytester,
) -> None:
    first, records = run_pipe(pipeproject, "callable:pipe:reply_partial")
    first.assert_outcomes(passed=11)
    assert all(r["response"].startswith("The sum is") for r in records)
    assert "(via a partial)" in records[0]["response"]
    assert [r["cached"] for r in records] == [False] * 10

    second, records = run_pipe(pipeproject, "callable:pipe:reply_partial")
    second.assert_outcomes(passed=11)
    assert [r["cached"] for r in records] == [True] * 10


def test_a_version_change_in_the_alias_invalidates_the_cache(
    pipeproject: pytest.Pytester,
) -> None:
    def alias(version: str) -> None:
        (pipeproject.path / "pyproject.toml").write_text(
            textwrap.dedent(
                f"""
                [tool.llmeval.models.mypipe]
                backend = "callable"
                model = "pipe:reply"
                version = "{version}"
                """
            )
        )

    alias("1")
    _, records = run_pipe(pipeproject, "mypipe")
    assert [r["cached"] for r in records] == [False] * 10
    _, records = run_pipe(pipeproject, "mypipe")
    assert [r["cached"] for r in records] == [True] * 10, "same version: served from the cache"
    alias("2")  # e.g. a helper in another module changed
    result, records = run_pipe(pipeproject, "mypipe")
    result.assert_outcomes(passed=11)
    assert [r["cached"] for r in records] == [False] * 10


def test_callable_identity_names_the_module_files_and_version() -> None:
    spec = ModelSpec(name="pipe", backend="callable", model_id="json:dumps")
    plain = CallableBackend(spec, CallableOptions()).identity()
    versioned = CallableBackend(spec, CallableOptions(version="2")).identity()
    assert plain["version"] is None and versioned["version"] == "2"
    assert plain["source"] == versioned["source"]
    # json.dumps is defined in json/__init__.py: its file contents are the source identity.
    (module,) = plain["source"]["modules"]
    assert module["module"] == "json" and len(module["sha256"]) == 64
    assert cache_key(plain, "p", Generation()) != cache_key(versioned, "p", Generation())


def test_a_partials_identity_holds_no_memory_address() -> None:
    import functools

    def render(function: Any) -> str:
        return json.dumps(source_identity("m:f", function), sort_keys=True)

    first = render(functools.partial(json.dumps, indent=2, default=object, cls=None))
    second = render(functools.partial(json.dumps, indent=2, default=object, cls=None))
    assert first == second and "0x" not in first
    assert "indent=2" in first and "default=builtins.object" in first
    assert render(functools.partial(json.dumps, indent=3)) != render(
        functools.partial(json.dumps, indent=2)
    )
    # An argument with the default repr is rendered by its type, not its address.
    assert "0x" not in render(functools.partial(json.dumps, default=Path.cwd, cls=object()))


# --- transformers ---------------------------------------------------------------------------


class NamedNvml(FakeNvml):
    """NVML with GPU models: `gpus` is a list of (name, compute capability major)."""

    def __init__(self, gpus: list[tuple[str, int]]) -> None:
        super().__init__([100.0] * len(gpus))
        self.gpus = gpus

    def nvmlDeviceGetName(self, handle: int) -> str:  # noqa: N802 - pynvml's names
        return self.gpus[handle][0]

    def nvmlDeviceGetCudaComputeCapability(self, handle: int) -> tuple[int, int]:  # noqa: N802
        return self.gpus[handle][1], 0


def on_gpus(patch: pytest.MonkeyPatch, gpus: list[tuple[str, int]], cuda: str = "12.8") -> None:
    """This CPU machine dressed as a CUDA one: torch's build file names `cuda`, NVML `gpus`."""
    from pytest_llmeval.backends import local_device

    build = local_device.TorchBuild("2.13.0+cu128", cuda, None)
    patch.setattr(local_device, "torch_build", lambda: build)
    patch.setattr("pytest_llmeval.backends.transformers_backend.torch_build", lambda: build)
    patch.setitem(sys.modules, "pynvml", NamedNvml(gpus))
    patch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


def make_local(patch: pytest.MonkeyPatch, **options: Any) -> Any:
    """The embedded model's transformers backend (files read, nothing loaded)."""
    from pytest_llmeval.backends.transformers_backend import (
        TransformersBackend,
        TransformersOptions,
    )
    from pytest_llmeval.backends.weights import CACHE_ENV, model_cache_dir

    patch.setenv("HF_HUB_OFFLINE", "1")
    patch.setenv(CACHE_ENV, str(model_cache_dir()))
    return TransformersBackend(resolve_model("smollm2-135m"), TransformersOptions(**options))


H100 = ("NVIDIA H100 80GB HBM3", 9)


def test_transformers_identity_holds_versions_device_name_and_dtype(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from importlib import metadata

    from pytest_llmeval.backends.local_device import matmul_precision

    on_gpus(monkeypatch, [H100, H100])
    backend = make_local(monkeypatch, device="cuda:0")
    identity = backend.identity()
    assert identity["torch"] == "2.13.0+cu128"
    assert identity["transformers"] == metadata.version("transformers")
    assert identity["device_type"] == "cuda"
    assert identity["device_name"] == "NVIDIA H100 80GB HBM3"
    assert identity["dtype"] == "bfloat16"  # auto on a GPU with native bfloat16
    assert identity["cuda"] == "12.8"
    assert identity["float32_matmul_precision"] == matmul_precision()
    assert len(identity["chat_template_sha256"]) == len(identity["tokenizer_sha256"]) == 16
    assert backend._model is None and backend._tokenizer is None, "the identity loads nothing"
    json.dumps(identity)  # plain JSON, as the cache key needs
    assert backend.info()["device_name"] == "NVIDIA H100 80GB HBM3"


def test_transformers_auto_dtype_is_float16_before_ampere(monkeypatch: pytest.MonkeyPatch) -> None:
    on_gpus(monkeypatch, [("Tesla T4", 7)])
    backend = make_local(monkeypatch)
    assert (backend.device, backend.dtype) == ("cuda", "float16")


def test_transformers_identity_on_the_cpu_says_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    on_gpus(monkeypatch, [H100])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # hides every GPU, as CUDA reads it
    identity = make_local(monkeypatch).identity()
    assert identity["device_type"] == "cpu" and identity["device_name"] == "cpu"
    assert identity["cuda"] is None and identity["dtype"] == "float32"


def test_transformers_cache_key_changes_with_the_transformers_version_and_gpu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pytest_llmeval.backends import transformers_backend

    settings = Generation(max_new_tokens=8)
    on_gpus(monkeypatch, [("NVIDIA A10G", 8)])
    before = cache_key(make_local(monkeypatch).identity(), "prompt", settings)
    assert cache_key(make_local(monkeypatch).identity(), "prompt", settings) == before
    monkeypatch.setattr(transformers_backend, "_version", lambda package: "99.0.0")
    assert cache_key(make_local(monkeypatch).identity(), "prompt", settings) != before
    monkeypatch.undo()
    on_gpus(monkeypatch, [("NVIDIA L4", 8)])
    assert cache_key(make_local(monkeypatch).identity(), "prompt", settings) != before


def test_gpus_of_different_models_are_named_by_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Which GPU `cuda:1` is follows CUDA's order, not NVML's: with two models, torch says."""
    from pytest_llmeval.backends import local_device

    on_gpus(monkeypatch, [H100, ("NVIDIA L4", 8)])
    asked: list[Any] = []

    def torch_answer(requested: str | None) -> local_device.LocalDevice:
        asked.append(requested)
        return local_device.LocalDevice("cuda:1", "NVIDIA L4", "12.8", 8)

    monkeypatch.setattr(local_device, "_asked_torch", torch_answer)
    backend = make_local(monkeypatch, device="cuda:1")
    assert asked == ["cuda:1"] and backend.identity()["device_name"] == "NVIDIA L4"


def test_an_unusable_cuda_device_is_a_one_line_backend_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pytest_llmeval.backends import BackendError, local_device

    build = local_device.TorchBuild("2.13.0+cpu", None, None)
    monkeypatch.setattr(local_device, "torch_build", lambda: build)
    with pytest.raises(BackendError, match="^device 'cuda:0' is not usable: torch 2.13.0"):
        make_local(monkeypatch, device="cuda:0")
    on_gpus(monkeypatch, [])
    with pytest.raises(BackendError, match="^device 'cuda:0' is not usable: no NVIDIA GPU"):
        make_local(monkeypatch, device="cuda:0")
