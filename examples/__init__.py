"""Examples shipped with pytest_llmeval (importable from the repository root)."""
