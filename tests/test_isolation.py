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
