"""Repository-wide pytest configuration.

The plugin itself is registered through its `pytest11` entry point (installed with the
package); the shipped suites in `evals/` and the plugin's tests in `tests/` need nothing more
here. Project-specific model aliases live in pyproject.toml under [tool.llmeval.models].
"""
