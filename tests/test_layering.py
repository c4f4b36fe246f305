"""The dependency rule of docs/design.md ("Layering"), checked on the source: every import of a numpycnn module,
at module level or inside a function, points to the same or a lower tier, the imports form no cycle, and
function-level imports of the project appear only where they keep a command fast to start, never to dodge a
cycle. Imports under ``if TYPE_CHECKING:`` are annotations only and are not counted."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

#: The tiers of docs/design.md, lowest first: each is a set of top-level entries of src/numpycnn (a folder or a
#: module), and every module inside a folder is in that folder's tier.
TIERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundation", ("numpycnn.errors", "numpycnn.core", "numpycnn.functional")),
    ("data", ("numpycnn.datasets",)),
    ("layers", ("numpycnn.layers",)),
    ("optimisers", ("numpycnn.optim",)),
    ("model files", ("numpycnn.files",)),
    ("training", ("numpycnn.training",)),
    ("model", ("numpycnn.model",)),
    ("above the model", ("numpycnn.interchange", "numpycnn.pretrained")),
    ("exercises", ("numpycnn.exercises",)),
    ("applications", ("numpycnn.cli", "numpycnn.web", "numpycnn.__main__")),
]

#: The only modules that import parts of the project inside functions, and why. Each such import must still
#: point down the tiers (checked below): it defers loading, it does not dodge a cycle.
LAZY_IMPORTERS = {
    "numpycnn.cli": "each subcommand imports what it runs, so `numpycnn --help` and `numpycnn data` start fast",
    "numpycnn.cli.train": "imported by cli at start; loads data, models and plots only for `train`",
    "numpycnn.cli.train_settings": "imported by cli at start; loads the data and model modules only to check a run",
    "numpycnn.cli.train_distributed": "loads numpycnn.training.distributed (and mpi4py) only for a --distributed run",
    "numpycnn.cli.onnx_commands": "the ONNX converters need the optional onnx package",
    "numpycnn.cli.exercise_commands": "loads the exercises and their checker only for `numpycnn exercise`",
    "numpycnn.cli.common": "imported by cli at start; loads the model stack only to read a MODEL argument",
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


def test_the_top_level_is_the_tiers():
    """``ls src/numpycnn`` reads like docs/design.md: the tier entries, the package's ``__init__`` and nothing else;
    at most 16 entries, each with a docstring that says what it holds."""
    entries = {path.name for path in (SRC / "numpycnn").iterdir() if not path.name.startswith((".", "__pycache__"))}
    listed = {prefix.split(".")[1] + ("" if (SRC / "numpycnn" / prefix.split(".")[1]).is_dir() else ".py")
              for _, prefixes in TIERS for prefix in prefixes}
    assert entries == listed | {"__init__.py"}
    assert len(entries) <= 16
    for name in entries:
        path = SRC / "numpycnn" / name
        path = path if path.is_file() else path / "__init__.py"
        assert ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))), name


def test_the_public_paths_are_the_modules_they_name():
    """``numpycnn.losses`` and the other short paths the docs teach are the tier modules themselves."""
    import importlib

    import numpycnn

    for short, real in numpycnn.PUBLIC_MODULES.items():
        assert importlib.import_module(short) is importlib.import_module(real), short
        assert importlib.import_module(real).__spec__.name == real, real
        assert short not in MODULES, f"{short} is both a file and a public path"


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


def test_functional_imports_nothing_of_the_project_but_the_core():
    """The math imports NumPy and takes its array module from ``numpycnn.core.backend`` (the loop reference also
    reads its pairs with ``core.checks``), and the core imports only the project's exceptions."""
    assert not [(m, e) for m, e in GRAPH.items() if m.startswith("numpycnn.functional.") and any(
        not name.startswith(("numpycnn.functional", "numpycnn.core")) for name, _, _ in e)]
    assert {name for name, _, _ in GRAPH["numpycnn.core.backend"]} == {"numpycnn.errors"}


def test_model_training_and_files_keep_their_order():
    """The cycle this rule replaced: model -> training -> callbacks -> io -> model."""
    below_model = [module for module in MODULES if module.startswith(("numpycnn.training", "numpycnn.files"))]
    for module in below_model:
        assert "numpycnn.model.sequential" not in {name for name, _, _ in GRAPH[module]}, module
        assert "numpycnn.model.io" not in {name for name, _, _ in GRAPH[module]}, module


def test_one_pair_helper_outside_functional():
    """``core.checks.int_pair`` reads a size or pair, ``core.checks.pair_config`` writes one; the fast paths of
    ``functional/`` keep their own because they import nothing of the project but the backend."""
    helpers = [f"{module}.{node.name}" for module, path in MODULES.items()
               if not module.startswith("numpycnn.functional")
               for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
               if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and "pair" in node.name.lower()]
    assert sorted(helpers) == ["numpycnn.core.checks.int_pair", "numpycnn.core.checks.pair_config"]


def test_layer_errors_use_the_one_template():
    """``core.checks.fail``'s "{owner}: `{arg}` must be ... Got ..." rather than "expected ..., got ..."."""
    stray = [f"{module}:{node.lineno}" for module, path in MODULES.items()
             if module.startswith("numpycnn.layers")
             or module in ("numpycnn.core.checks", "numpycnn.model.sequential", "numpycnn.layers.losses")
             for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
             if isinstance(node, ast.Constant) and isinstance(node.value, str) and ", got " in node.value]
    assert not stray
