"""The dependency rule of docs/design.md ("Layering"), checked on the source: every import of a numpycnn module,
at module level or inside a function, points to the same or a lower tier, the imports form no cycle, and
function-level imports of the project appear only where they keep a command fast to start, never to dodge a
cycle. Imports under ``if TYPE_CHECKING:`` are annotations only and are not counted."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

#: The tiers of docs/design.md, lowest first. A module is placed by its longest listed prefix.
TIERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundation", ("numpycnn.errors", "numpycnn._checks", "numpycnn._files", "numpycnn._launch", "numpycnn.init",
                    "numpycnn.backend", "numpycnn.functional")),
    ("data", ("numpycnn.datasets", "numpycnn.images", "numpycnn.augment", "numpycnn.schedules", "numpycnn.runs",
              "numpycnn.profiling")),
    ("layers", ("numpycnn.layers", "numpycnn.losses", "numpycnn.gradcheck", "numpycnn.plan", "numpycnn.reference")),
    ("training", ("numpycnn._modelfile", "numpycnn.callbacks", "numpycnn.resume", "numpycnn.distributed",
                  "numpycnn.training")),
    ("model", ("numpycnn.model",)),
    ("above the model", ("numpycnn.io", "numpycnn.optim", "numpycnn.models", "numpycnn.interchange",
                         "numpycnn.pretrained")),
    ("applications", ("numpycnn._commands", "numpycnn.train_distributed", "numpycnn.train_command",
                      "numpycnn.plots", "numpycnn.web", "numpycnn.interchange.commands",
                      "numpycnn.datasets.commands", "numpycnn.cli", "numpycnn.__main__")),
]

#: The only modules that import parts of the project inside functions, and why. Each such import must still
#: point down the tiers (checked below): it defers loading, it does not dodge a cycle.
LAZY_IMPORTERS = {
    "numpycnn.cli": "each subcommand imports what it runs, so `numpycnn --help` and `numpycnn data` start fast",
    "numpycnn.train_command": "imported by cli at start; loads data, models and plots only for `train`",
    "numpycnn.train_distributed": "loads numpycnn.distributed (and mpi4py) only for a --distributed run",
    "numpycnn.interchange.commands": "the ONNX converters need the optional onnx package",
    "numpycnn._commands": "imported by cli at start; loads the model stack only to read a MODEL argument",
    "numpycnn.pretrained": "listing the catalogue does not load the model stack",
    "numpycnn.web.server": "loads a model only when the server starts",
}


def module_files() -> dict[str, Path]:
    files = {}
    for path in sorted((SRC / "numpycnn").rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        files[".".join(parts)] = path
    return files


MODULES = module_files()


def tier(module: str) -> int:
    best = None
    for index, (_, prefixes) in enumerate(TIERS):
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "."):
                if best is None or len(prefix) > best[0]:
                    best = (len(prefix), index)
    if best is None:
        raise KeyError(module)
    return best[1]


def imports(module: str) -> list[tuple[str, int, bool]]:
    """``(imported numpycnn module, line, inside a function)`` for every import outside ``TYPE_CHECKING``."""
    found: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for other in child.orelse:
                    visit(other, in_function)
                continue
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend((alias.name, child.lineno, inner) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                for alias in child.names:
                    full = f"{base}.{alias.name}"
                    found.append((full if full in MODULES else base, child.lineno, inner))
            visit(child, inner)

    visit(ast.parse(MODULES[module].read_text(encoding="utf-8")), False)
    # The package itself (``from numpycnn import __version__``) is loaded before any of its modules.
    return [(name, line, inner) for name, line, inner in found
            if name.split(".")[0] == "numpycnn" and name != "numpycnn"]


GRAPH = {module: imports(module) for module in MODULES}
ROOT = "numpycnn"


@pytest.mark.parametrize("module", sorted(set(MODULES) - {ROOT}))
def test_every_module_has_a_tier(module):
    tier(module)


def test_imports_point_down_the_tiers():
    upward = [f"{module}:{line} imports {name} ({TIERS[tier(module)][0]} -> {TIERS[tier(name)][0]})"
              for module, edges in GRAPH.items() if module != ROOT
              for name, line, _ in edges if tier(name) > tier(module)]
    assert not upward, "imports against the layering of docs/design.md:\n" + "\n".join(upward)


def test_function_level_imports_only_where_they_defer_loading():
    hidden = [f"{module}:{line} imports {name} inside a function"
              for module, edges in GRAPH.items() if module not in LAZY_IMPORTERS
              for name, line, inner in edges if inner]
    assert not hidden, "import at module level instead (docs/design.md, Layering):\n" + "\n".join(hidden)
    assert all(any(inner for _, _, inner in GRAPH[module]) for module in LAZY_IMPORTERS), "stale allow-list"


def test_the_imports_form_no_cycle():
    done: set[str] = set()

    def walk(module: str, path: tuple[str, ...]) -> None:
        if module in path:
            raise AssertionError("import cycle: " + " -> ".join((*path[path.index(module):], module)))
        if module in done:
            return
        for name, _, _ in GRAPH.get(module, []):
            walk(name, (*path, module))
        done.add(module)

    for module in GRAPH:
        walk(module, ())


def test_functional_imports_nothing_of_the_project_but_the_backend():
    """The math imports NumPy and takes its array module from ``numpycnn.backend``, which imports only the
    project's exceptions."""
    assert not [(m, e) for m, e in GRAPH.items() if m.startswith("numpycnn.functional.") and any(
        not name.startswith(("numpycnn.functional", "numpycnn.backend")) for name, _, _ in e)]
    assert {name for name, _, _ in GRAPH["numpycnn.backend"]} == {"numpycnn.errors"}


def test_model_training_and_files_keep_their_order():
    """The cycle this rule replaced: model -> training -> callbacks -> io -> model."""
    below_model = ("numpycnn.training", "numpycnn.callbacks", "numpycnn.resume", "numpycnn.distributed",
                   "numpycnn._modelfile")
    for module in below_model:
        assert "numpycnn.model" not in {name for name, _, _ in GRAPH[module]}, module
        assert "numpycnn.io" not in {name for name, _, _ in GRAPH[module]}, module


def test_one_pair_helper_outside_functional():
    """``_checks.int_pair`` reads a size or pair, ``_checks.pair_config`` writes one; ``functional/`` keeps its
    own because it imports nothing of the project."""
    helpers = [f"{module}.{node.name}" for module, path in MODULES.items()
               if not module.startswith("numpycnn.functional")
               for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
               if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and "pair" in node.name.lower()]
    assert sorted(helpers) == ["numpycnn._checks.int_pair", "numpycnn._checks.pair_config"]


def test_layer_errors_use_the_one_template():
    """``_checks.fail``'s "{owner}: `{arg}` must be ... Got ..." rather than "expected ..., got ..."."""
    stray = [f"{module}:{node.lineno}" for module, path in MODULES.items()
             if module.startswith("numpycnn.layers")
             or module in ("numpycnn._checks", "numpycnn.model", "numpycnn.losses")
             for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
             if isinstance(node, ast.Constant) and isinstance(node.value, str) and ", got " in node.value]
    assert not stray
