"""The cache serves only what this exact setup would generate: the identity of callable and
transformers backends (issue 10, points 5 and 6).

Callable backends are driven through whole pytester runs (a first run fills the cache, the
second shows whether it was served from it); the transformers identity is built with the real
tokenizer of the embedded model and a mocked `torch.cuda` for the GPU name (no weights load).
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from conftest import TASK_MODULE, mini_rows
from pytest_llmeval.backends.callable_backend import CallableBackend, CallableOptions
from pytest_llmeval.backends.fingerprint import source_identity
from pytest_llmeval.declare.models import ModelSpec, resolve_model
from pytest_llmeval.declare.task import Generation
from pytest_llmeval.run.cache import cache_key

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


@pytest.fixture(scope="module")
def local_backend() -> Any:
    """The embedded model's transformers backend on a (mocked) CUDA device: its tokenizer
    loads, its weights never do."""
    from pytest_llmeval.backends.transformers_backend import (
        TransformersBackend,
        TransformersOptions,
    )

    # An explicit dtype: "auto" would ask this GPU-less machine whether it supports bfloat16.
    options = TransformersOptions(device="cuda:0", dtype="bfloat16")
    with pytest.MonkeyPatch.context() as patch:
        from pytest_llmeval.backends.weights import CACHE_ENV, model_cache_dir

        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setenv(CACHE_ENV, str(model_cache_dir()))
        return TransformersBackend(resolve_model("smollm2-135m"), options)


def test_transformers_identity_holds_versions_device_name_and_dtype(
    local_backend: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch
    import transformers

    asked: list[Any] = []

    def device_name(device: Any = None) -> str:
        asked.append(device)
        return "NVIDIA H100 80GB HBM3"

    monkeypatch.setattr(torch.cuda, "get_device_name", device_name)
    identity = local_backend.identity()
    assert identity["torch"] == torch.__version__
    assert identity["transformers"] == transformers.__version__
    assert identity["device_type"] == "cuda"
    assert identity["device_name"] == "NVIDIA H100 80GB HBM3"
    assert identity["dtype"] == "bfloat16"
    assert identity["cuda"] == torch.version.cuda
    assert identity["float32_matmul_precision"] == torch.get_float32_matmul_precision()
    assert [str(d) for d in asked] == ["cuda:0"]
    assert local_backend._model is None, "the identity must not load the weights"
    json.dumps(identity)  # plain JSON, as the cache key needs
    assert local_backend.info()["device_name"] == "NVIDIA H100 80GB HBM3"


def test_transformers_identity_on_the_cpu_says_cpu(
    local_backend: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    def no_gpu(device: Any = None) -> str:
        raise AssertionError("the CPU identity must not ask CUDA")

    monkeypatch.setattr(torch.cuda, "get_device_name", no_gpu)
    monkeypatch.setattr(local_backend, "device", "cpu")
    identity = local_backend.identity()
    assert identity["device_type"] == "cpu" and identity["device_name"] == "cpu"
    assert identity["cuda"] is None


def test_transformers_cache_key_changes_with_the_transformers_version(
    local_backend: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch
    import transformers

    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA A10G")
    settings = Generation(max_new_tokens=8)
    before = cache_key(local_backend.identity(), "prompt", settings)
    assert cache_key(local_backend.identity(), "prompt", settings) == before
    monkeypatch.setattr(transformers, "__version__", "99.0.0")
    assert cache_key(local_backend.identity(), "prompt", settings) != before
    monkeypatch.undo()
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA L4")
    assert cache_key(local_backend.identity(), "prompt", settings) != before


def test_an_unusable_cuda_device_is_a_one_line_backend_error(
    local_backend: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    from pytest_llmeval.backends import BackendError

    def no_cuda(device: Any = None) -> str:
        raise AssertionError("Torch not compiled with CUDA enabled")

    monkeypatch.setattr(torch.cuda, "get_device_name", no_cuda)
    with pytest.raises(BackendError, match="^device 'cuda:0' is not usable: Torch not compiled"):
        local_backend.identity()
