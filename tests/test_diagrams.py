"""docs/diagrams/make_diagrams.py draws every diagram the pages show, the same bytes on every run."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("make_diagrams", ROOT / "docs" / "diagrams" / "make_diagrams.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_diagram_is_drawn_reproducibly_committed_and_shown(tmp_path):
    script = _script()
    first = script.main(["--out", str(tmp_path / "a")])
    second = script.main(["--out", str(tmp_path / "b")])
    assert [p.name for p in first] == list(script.DIAGRAMS) and len(first) == 5
    pages = (ROOT / "docs" / "tutorial.md").read_text() + (ROOT / "docs" / "math.md").read_text()
    for a, b in zip(first, second, strict=True):
        text = a.read_text()
        assert text.startswith("<?xml") and "<svg" in text
        assert a.read_bytes() == b.read_bytes(), a.name  # no date, a fixed hash salt
        assert (ROOT / "docs" / "images" / a.name).is_file(), f"run docs/diagrams/make_diagrams.py: {a.name}"
        assert f"images/{a.name}" in pages, a.name


def test_the_diagrams_show_numpycnns_numbers(tmp_path):
    script = _script()
    script.maxpool_routing(tmp_path / "pool.svg")
    script.network_shapes(tmp_path / "net.svg")
    net = (tmp_path / "net.svg").read_text()
    assert "(8, 13, 13)" in net and "(1352,)" in net  # from the seed model's layers
    pool = (tmp_path / "pool.svg").read_text()
    assert ">40<" in pool or "40</text>" in pool or ">40" in pool
