"""The notebooks in notebooks/ are docs/tutorial.md and docs/lab.md, built by docs/notebooks.py: the committed files
are byte for byte what `build` writes (no drift), their code cells are the pages' Python blocks, their links resolve,
and they run in a Jupyter kernel (nbclient and ipykernel, the optional `notebooks` extra)."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load_builder():
    spec = importlib.util.spec_from_file_location("docs_notebooks", ROOT / "docs" / "notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


notebooks = load_builder()


@pytest.mark.parametrize("page, target", sorted(notebooks.PAGES.items()))
def test_the_committed_notebook_is_what_build_writes_from_its_page(page, target):
    committed = ROOT / target
    assert committed.is_file(), f"{target} is missing: run `python docs/notebooks.py build`"
    assert committed.read_bytes() == notebooks.notebook_bytes(ROOT / "docs" / page), (
        f"{target} differs from docs/{page}: run `python docs/notebooks.py build` and commit the result")


@pytest.mark.parametrize("page, target", sorted(notebooks.PAGES.items()))
def test_the_code_cells_are_the_pages_python_blocks_and_the_links_resolve(page, target):
    nb = json.loads((ROOT / target).read_text(encoding="utf-8"))
    assert nb["nbformat"] == 4 and nb["metadata"]["kernelspec"]["name"] == "python3"
    text = (ROOT / "docs" / page).read_text(encoding="utf-8")
    code = ["".join(cell["source"]) for cell in nb["cells"] if cell["cell_type"] == "code"]
    assert code == [block.rstrip("\n") for block in notebooks.python_blocks(text)] and len(code) >= 6
    assert all(cell["outputs"] == [] and cell["execution_count"] is None
               for cell in nb["cells"] if cell["cell_type"] == "code")
    assert len({cell["id"] for cell in nb["cells"]}) == len(nb["cells"])
    prose = "".join("".join(cell["source"]) for cell in nb["cells"] if cell["cell_type"] == "markdown")
    links = re.findall(r"\]\((?!https?://|#)([^)#\s]+)", prose)
    assert links and all(link.startswith("../docs/") or link.startswith("../") for link in links), links
    missing = [link for link in links if not (ROOT / "notebooks" / link).exists()]
    assert not missing, missing


def test_cells_split_prose_from_python_and_rewrite_only_relative_links():
    page = ("# Title\n\nSee [math](math.md#one), [site](https://x.org/a.md), [here](#two) and "
            "![a figure](images/a.svg), [b](../notebooks/b.ipynb).\n\n```bash\nls\n```\n\n"
            "```python\nx = 1\nprint(x)\n```\n\nEnd.\n")
    cells = notebooks.cells(page)
    assert [kind for kind, _ in cells] == ["markdown", "code", "markdown"]
    assert cells[1][1] == "x = 1\nprint(x)\n".rstrip("\n")
    assert "```bash\nls\n```" in cells[0][1]  # other fences stay prose
    nb = notebooks.notebook(page)
    first = "".join(nb["cells"][0]["source"])
    assert "](../docs/math.md#one)" in first and "](https://x.org/a.md)" in first and "](#two)" in first
    assert "](../docs/images/a.svg)" in first and "](../notebooks/b.ipynb)" in first
    assert nb["cells"][1]["source"] == ["x = 1\n", "print(x)"]


def test_build_check_reports_a_stale_notebook_and_writes_nothing(tmp_path, monkeypatch):
    page = tmp_path / "docs" / "page.md"
    page.parent.mkdir()
    page.write_text("Prose.\n\n```python\nprint(1)\n```\n")
    monkeypatch.setattr(notebooks, "DOCS", page.parent)
    monkeypatch.setattr(notebooks, "ROOT", tmp_path)
    monkeypatch.setattr(notebooks, "PAGES", {"page.md": "notebooks/page.ipynb"})
    assert notebooks.build(check=True) == ["notebooks/page.ipynb"] and not (tmp_path / "notebooks").exists()
    assert notebooks.main(["build", "--check"]) == 1
    assert notebooks.build() == ["notebooks/page.ipynb"]
    written = (tmp_path / "notebooks" / "page.ipynb").read_bytes()
    assert notebooks.build() == [] and notebooks.main(["build", "--check"]) == 0
    page.write_text("Prose.\n\n```python\nprint(2)\n```\n")
    assert notebooks.build(check=True) == ["notebooks/page.ipynb"]
    assert (tmp_path / "notebooks" / "page.ipynb").read_bytes() == written


def test_run_executes_a_page_in_order_and_names_a_missing_page(tmp_path, capsys):
    page = tmp_path / "page.md"
    page.write_text("```python\nx = 2\n```\n\nText.\n\n```python\nprint(x * 21)\n```\n")
    assert notebooks.run(page)["x"] == 2
    assert capsys.readouterr().out == "42\n"
    with pytest.raises(FileNotFoundError, match="must be a Markdown file"):
        notebooks.run(tmp_path / "absent.md")


def test_the_notebooks_are_valid_nbformat():
    nbformat = pytest.importorskip("nbformat", reason="the notebooks extra: pip install -e '.[notebooks]'")
    for target in notebooks.PAGES.values():
        nbformat.validate(nbformat.read(ROOT / target, as_version=4))


@pytest.mark.parametrize("target", sorted(notebooks.PAGES.values()))
def test_the_notebook_runs_in_a_jupyter_kernel(target, tmp_path):
    nbformat = pytest.importorskip("nbformat", reason="the notebooks extra: pip install -e '.[notebooks]'")
    nbclient = pytest.importorskip("nbclient", reason="the notebooks extra: pip install -e '.[notebooks]'")
    pytest.importorskip("ipykernel", reason="the notebooks extra: pip install -e '.[notebooks]'")
    nb = nbformat.read(ROOT / target, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})  # the kernel's working dir
    client.execute()  # raises CellExecutionError, with the cell and its traceback, if a cell fails
    printed = "".join(output.get("text", "") for cell in nb.cells if cell.cell_type == "code"
                      for output in cell.outputs if output.get("output_type") == "stream")
    if "lab" in target:
        assert "wrote lab-figures/training-mode.png" in printed and (tmp_path / "lab-figures").is_dir()
    else:
        assert "test accuracy" in printed
