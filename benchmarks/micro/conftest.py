"""Shared fixtures of the microbenchmarks (pytest-benchmark): sizes and the realistic inputs.

`--micro-quick` divides every size by 100: what the smoke test in tests/ runs, with
`--benchmark-disable`, so the benchmarks cannot rot. Figures are only comparable at full size.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

MICRO = Path(__file__).resolve().parent
REPO = MICRO.parent.parent
BASELINES = MICRO.parent / "baselines"
# benchmarks/common.py (GSM8K rows) and the scripts' shared constants.
sys.path.insert(0, str(MICRO.parent))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--micro-quick",
        action="store_true",
        help="Divide every benchmark size by 100 (smoke test: with --benchmark-disable)",
    )


def pytest_configure(config: pytest.Config) -> None:
    # Baselines live in benchmarks/baselines/ whatever the working directory (pytest-benchmark
    # would take ./.benchmarks); an explicit --benchmark-storage wins. pytest-benchmark opens
    # its storage in its own pytest_configure, which is trylast, so after this.
    if config.getoption("benchmark_storage") == "file://./.benchmarks":
        config.option.benchmark_storage = f"file://{BASELINES}"


@pytest.fixture(scope="session")
def scale(request: pytest.FixtureRequest) -> int:
    """The divisor of every size: 1, or 100 under --micro-quick."""
    return 100 if request.config.getoption("--micro-quick") else 1


@pytest.fixture(scope="session")
def corpus() -> ModuleType:
    """tests/test_extraction_corpus.py: the realistic responses and their expected answers."""
    path = REPO / "tests" / "test_extraction_corpus.py"
    spec = importlib.util.spec_from_file_location("extraction_corpus", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
