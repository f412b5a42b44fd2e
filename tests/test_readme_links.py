"""Every relative link in README.md names a file of the repository (a schema renamed by a
version bump must not leave the README pointing at nothing)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_relative_readme_links_name_existing_files() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = [t for t in _LINK.findall(text) if "://" not in t and not t.startswith("mailto:")]
    assert any("schema.json" in t for t in targets), "the README links the record schema"
    missing = [t for t in targets if not (ROOT / t).exists()]
    assert missing == []
