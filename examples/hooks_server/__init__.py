"""Workflow 4: a hooked model behind an HTTP API, baseline vs patched on the same items."""
