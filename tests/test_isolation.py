"""The plugin stays out of the way: no heavy imports, no effect on sessions that don't use it."""

from __future__ import annotations

import subprocess
import sys

import pytest


def test_importing_the_plugin_imports_no_torch_or_transformers() -> None:
    code = (
        "import sys, pytest_llmeval.plugin, pytest_llmeval.backends; "
        "print(sorted(m for m in ('torch', 'transformers', 'datasets', 'pandas', 'vllm') "
        "if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_plain_session_is_unchanged(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_ok():
            assert 1 + 1 == 2

        def test_bad():
            assert 1 + 1 == 3
        """
    )
    result = pytester.runpytest("-W", "ignore::pytest.PytestAssertRewriteWarning")
    result.assert_outcomes(passed=1, failed=1)
    assert result.ret == 1  # a plain failure keeps pytest's exit status
    result.stdout.no_fnmatch_line("*llmeval summary*")
    result.stdout.no_fnmatch_line("*gates::*")
    assert not (pytester.path / "reports").exists()
    # The plugin must be active (through its entry point) for this test to mean anything.
    result.stdout.fnmatch_lines(["plugins:*llmeval-harness*"])


def test_plain_xdist_session_keeps_the_outer_gpu_list(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GPU pinning is for eval runs; a plain suite under -n sees the environment it was given.
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    pytester.makepyfile(
        """
        import os

        def test_a():
            assert os.environ["CUDA_VISIBLE_DEVICES"] == "3,5"

        def test_b():
            assert os.environ["CUDA_VISIBLE_DEVICES"] == "3,5"
        """
    )
    result = pytester.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    forced = pytester.runpytest_subprocess(
        "-n", "2", "-p", "no:cacheprovider", "--llmeval-pin-gpus=on"
    )
    forced.assert_outcomes(failed=2)  # pinned: each worker sees one GPU
