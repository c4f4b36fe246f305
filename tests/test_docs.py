"""docs/math.md quotes the code: every quoted line must still be in the source, every link must resolve."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MATH = ROOT / "docs" / "math.md"


def test_every_quoted_code_line_is_in_the_source():
    source_lines = {line.strip() for path in (ROOT / "src" / "numpycnn").rglob("*.py")
                    for line in path.read_text().splitlines()}
    quoted = [line.strip() for block in re.findall(r"```python\n(.*?)```", MATH.read_text(), flags=re.DOTALL)
              for line in block.splitlines()]
    stale = [line for line in quoted if line and line != "..." and not line.startswith("#")
             and line not in source_lines]
    assert quoted and not stale


def test_every_relative_link_resolves():
    for doc in (MATH, ROOT / "README.md", ROOT / "docs" / "tutorial.md"):
        links = re.findall(r"\]\(((?!https?://|#)[^)]+)\)", doc.read_text())
        missing = [link for link in links if not (doc.parent / link.split("#")[0]).exists()]
        assert not missing, (doc.name, missing)
