"""pytest_llmeval: LLM evaluations as pytest test suites.

Declare a `Task` at module level in a `test_*.py` file; every dataset row becomes a test item,
models stay resident for the session, generation is batched behind the per-item tests, and
aggregate gates decide the exit status. Importing this package imports no torch and no pytest
(the plugin itself is `pytest_llmeval.plugin`, loaded by pytest through its entry point).
"""

from __future__ import annotations

from pytest_llmeval import metrics, scoring
from pytest_llmeval.backends import GenerationRequest, GenerationResult
from pytest_llmeval.declare.task import ChatPrompt, DataSource, Generation, Task, TaskError
from pytest_llmeval.score.scorers import Score

__version__ = "0.1.0"
__all__ = [
    "ChatPrompt",
    "DataSource",
    "Generation",
    "GenerationRequest",
    "GenerationResult",
    "Score",
    "Task",
    "TaskError",
    "metrics",
    "scoring",
]
