"""docs/math.md quotes the code: every quoted line must still be in the source. Every link of the README and the
pages in docs/ resolves, anchors included, and the pages carry the measurements committed in results/ verbatim."""

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


PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def anchors(page: Path) -> set[str]:
    """The anchors GitHub gives the headings of a Markdown page (code blocks left out)."""
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.DOTALL | re.MULTILINE)
    found, seen = set(), {}
    for heading in re.findall(r"^#{1,6} (.+)$", text, flags=re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(f"{slug}-{seen[slug]}" if slug in seen else slug)  # a repeated heading gets -1, -2, ...
        seen[slug] = seen.get(slug, 0) + 1
    return found


def test_the_anchor_of_a_heading_is_githubs():
    assert anchors(ROOT / "docs" / "training.md") >= {"the-command-line", "run-folders---out---overwrite---resume"}
    assert "gpu-cupy" in anchors(ROOT / "docs" / "gpu.md")


def test_every_relative_link_resolves():
    assert len(PAGES) >= 12  # the README, design, math, tutorial and the pages that left the README
    broken = []
    for doc in PAGES:
        for link in re.findall(r"\]\(((?!https?://)[^)]+)\)", doc.read_text()):
            path, _, anchor = link.partition("#")
            target = doc.parent / path if path else doc
            if not target.exists() or (anchor and target.suffix == ".md" and anchor not in anchors(target)):
                broken.append((doc.name, link))
    assert not broken


def test_the_pages_carry_the_committed_measurements_verbatim():
    for page, measured in (("results.md", "table.md"), ("speed.md", "speed.md"), ("mpi.md", "mpi_scaling.md")):
        committed = (ROOT / "results" / measured).read_text().strip()
        assert committed and committed in (ROOT / "docs" / page).read_text(), (page, measured)


def test_the_api_reference_lists_every_library_module():
    """docs/api/index.rst names every module of the library's tiers (all but the private ones and the applications
    cli/ and web/, of which numpycnn.plots is public); the Sphinx build in .ci/run checks the pages themselves."""
    import numpycnn

    src = ROOT / "src" / "numpycnn"
    modules = set()
    for path in src.rglob("*.py"):
        parts = path.relative_to(src.parent).with_suffix("").parts
        parts = parts[:-1] if parts[-1] == "__init__" else parts
        if not any(part.startswith("_") for part in parts) and parts[1:2] not in (("cli",), ("web",)):
            modules.add(".".join(parts))
    modules |= set(numpycnn.PUBLIC_MODULES.values())
    index = (ROOT / "docs" / "api" / "index.rst").read_text()
    listed = {line.strip() for line in index.splitlines() if line.startswith("   numpycnn")}
    assert listed == modules, (sorted(modules - listed), sorted(listed - modules))
