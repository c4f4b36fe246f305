"""docs/tutorial.md runs: its Python blocks, in order, in one namespace, each printing what it claims."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

TUTORIAL = Path(__file__).resolve().parents[1] / "docs" / "tutorial.md"


def test_the_tutorial_runs_top_to_bottom():
    blocks = re.findall(r"```python\n(.*?)```", TUTORIAL.read_text(), flags=re.DOTALL)
    assert len(blocks) >= 8
    namespace: dict = {"__name__": "tutorial"}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        for i, block in enumerate(blocks):
            exec(compile(block, f"{TUTORIAL}:block{i + 1}", "exec"), namespace)
    out = printed.getvalue()
    assert out.count("True") >= 6, out  # each comparison printed True
    assert "False" not in out.replace("bool(", ""), out
    accuracy = float(re.search(r"test accuracy ([0-9.]+)%", out).group(1))
    assert accuracy > 80, out
    assert "Did you mean `kernel_size`?" in out and "channels-last" in out and "x[None, None]" in out
    assert "filters.png" in out and "layers.png" in out and "mistakes.png" in out
