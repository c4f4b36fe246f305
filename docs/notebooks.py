"""The runnable pages of the documentation as Jupyter notebooks, generated from their Markdown so they never drift.

A page (``docs/tutorial.md``, ``docs/lab.md``) is prose and fenced code. Each fenced ``python`` block becomes a code
cell; the prose between them (other fences included, such as ``bash``) becomes a Markdown cell. Relative links and
images (``images/x.svg``, ``math.md``) are rewritten to point from ``notebooks/`` back into ``docs/``. The
notebooks are nbformat v4.5 JSON with no outputs, no execution counts and cell ids numbered in order, written with
sorted keys, so the same page always gives the same bytes (no jupytext or nbformat needed to build them).

Usage, from the repository root or from ``docs/``::

    python docs/notebooks.py build          # writes notebooks/tutorial.ipynb and notebooks/lab.ipynb
    python docs/notebooks.py build --check  # exits 1 if a committed notebook differs from its page
    cd docs && python notebooks.py run lab.md   # runs the page's blocks in order, in one namespace

``run`` is how the lab's figures in ``docs/lab-figures/`` are made: the page writes them relative to the working
directory, so run it from ``docs/``. ``tests/test_notebooks.py`` checks that the committed notebooks equal what
``build`` writes and executes them with nbclient (``pip install -e ".[notebooks]"``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
NOTEBOOKS = ROOT / "notebooks"
#: The pages that become notebooks, and the notebook each one becomes (relative to the repository root).
PAGES = {"tutorial.md": "notebooks/tutorial.ipynb", "lab.md": "notebooks/lab.ipynb"}

_FENCE = re.compile(r"^```python\n(.*?)^```\n?", flags=re.DOTALL | re.MULTILINE)
# ](target) relative to docs/, but not ../x (docs/ and notebooks/ are siblings: ../x means the same from both), a URL,
# an anchor or an absolute path
_RELATIVE_LINK = re.compile(r"\]\((?![a-z][a-z0-9+.-]*:|#|/|\.\./)([^)\s]+)\)")


def python_blocks(text: str) -> list[str]:
    """The page's fenced ``python`` blocks, in order (what ``run`` executes and the code cells hold)."""
    return [match.group(1) for match in _FENCE.finditer(text)]


def cells(text: str) -> list[tuple[str, str]]:
    """The page as ``[("markdown", prose), ("code", block), ...]``, in order; empty prose is dropped."""
    parts, start = [], 0
    for match in _FENCE.finditer(text):
        parts.append(("markdown", text[start:match.start()]))
        parts.append(("code", match.group(1)))
        start = match.end()
    parts.append(("markdown", text[start:]))
    return [(kind, body.strip("\n")) for kind, body in parts if body.strip()]


def _lines(source: str) -> list[str]:
    """A cell's ``source`` as Jupyter stores it: lines, each but the last ending in a newline."""
    return source.splitlines(keepends=True)


def notebook(text: str) -> dict:
    """The nbformat v4.5 notebook of a page, as a JSON-ready dict, outputs stripped."""
    nb_cells = []
    for i, (kind, body) in enumerate(cells(text)):
        cell = {"cell_type": kind, "id": f"cell-{i:03d}", "metadata": {}}
        if kind == "markdown":
            cell["source"] = _lines(_RELATIVE_LINK.sub(r"](../docs/\1)", body))
        else:
            cell.update(execution_count=None, outputs=[], source=_lines(body))
        nb_cells.append(cell)
    return {
        "cells": nb_cells,
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def notebook_bytes(page: str | os.PathLike[str]) -> bytes:
    """The bytes of a page's notebook, deterministic: nbformat's own layout (indent 1, sorted keys), UTF-8."""
    text = Path(page).read_text(encoding="utf-8")
    return (json.dumps(notebook(text), indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def _write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.chmod(temporary, 0o644)                     # mkstemp makes it 0600; a notebook is an ordinary file
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def build(check: bool = False) -> list[str]:
    """Write every notebook of :data:`PAGES` (or, with ``check``, write nothing); the notebooks that differed."""
    stale = []
    for page, target in PAGES.items():
        data, path = notebook_bytes(DOCS / page), ROOT / target
        if not path.exists() or path.read_bytes() != data:
            stale.append(target)
            if not check:
                _write_atomically(path, data)
    return stale


def run(page: str | os.PathLike[str]) -> dict:
    """Run a page's ``python`` blocks in order in one namespace, in the current directory; returns the namespace."""
    path = Path(page)
    if not path.is_file():
        raise FileNotFoundError(f"notebooks.py run: `page` must be a Markdown file. Got {str(page)!r}, which does "
                                f"not exist; try one of {sorted(PAGES)} from docs/.")
    namespace: dict = {"__name__": "__main__"}
    for i, block in enumerate(python_blocks(path.read_text(encoding="utf-8"))):
        exec(compile(block, f"{path}:block{i + 1}", "exec"), namespace)
    return namespace


def main(argv: list[str] | None = None) -> int:
    """The command line: ``build [--check]`` or ``run PAGE``."""
    parser = argparse.ArgumentParser(prog="notebooks.py", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    build_parser = commands.add_parser("build", help="write notebooks/*.ipynb from their pages")
    build_parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a notebook is stale")
    run_parser = commands.add_parser("run", help="run a page's python blocks in order, in one namespace")
    run_parser.add_argument("page", help="the Markdown page, e.g. lab.md (run from docs/)")
    args = parser.parse_args(argv)
    if args.command == "run":
        run(args.page)
        return 0
    stale = build(check=args.check)
    verb = "differ from their pages (run `python docs/notebooks.py build`)" if args.check else "written"
    print(f"{', '.join(stale)}: {verb}" if stale else "notebooks are up to date")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
