"""The README is a front door: its hand-written training step runs and prints the losses its comments state, its test
command is the one CI runs, and it stays short and links every page in docs/."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


def test_the_training_step_by_hand_prints_what_the_readme_says():
    block = next(b for b in python_blocks() if "optimizer.step(model)" in b)
    stated = [float(v) for v in re.findall(r"print\(.*\)\s+# ([0-9.]+):", block)]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(block, str(README), "exec"), {})
    values = [float(line) for line in printed.getvalue().split()]
    assert len(stated) == 2 and len(values) == 2
    assert [round(v, 3) for v in values] == stated
    assert values[1] < values[0]


def test_ci_runs_the_readme_test_command_verbatim():
    readme_commands = re.findall(r"^(python -m pip install -e .*pytest.*)$", README.read_text(), flags=re.MULTILINE)
    ci_script = (README.parent / ".ci" / "run").read_text().splitlines()
    assert len(readme_commands) == 1
    assert readme_commands[0] in ci_script


def test_the_readme_is_short_and_links_every_page_in_docs():
    text = README.read_text()
    assert len(text.splitlines()) <= 200
    linked = set(re.findall(r"\]\(docs/([^)#]+\.md)", text))
    unlinked = {page.name for page in (README.parent / "docs").glob("*.md")} - linked
    assert linked and not unlinked
