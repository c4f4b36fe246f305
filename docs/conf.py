"""Sphinx configuration: the guide pages (Markdown, through myst-parser) and the API reference generated from the
numpydoc docstrings. Build with warnings as errors, as CI does:

    python -m sphinx -W --keep-going -b html docs docs/_build/html

Why Sphinx: docs/index.rst, "About these pages".
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent / "src"))  # document this tree's source, installed or not
sys.path.insert(0, str(DOCS / "_ext"))

from sphinx.pycode import ModuleAnalyzer  # noqa: E402

import numpycnn  # noqa: E402

project = "numpycnn"
author = "the numpycnn authors"
copyright = "the numpycnn authors, MIT licence"
release = version = numpycnn.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "myst_parser",
    "house_style",  # docs/_ext: the Shape section, unknown sections, what numpydoc validates
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
templates_path = ["_templates"]
exclude_patterns = ["_build", "_templates"]

# -- every reference must resolve --------------------------------------------------------------------------------
# A broken :func:/:class:/:mod: target, or a link in a guide page to a heading that does not exist, is a warning and
# so (with -W) an error. There is no intersphinx (no network at build time), so the types of other projects that
# appear in signatures and docstrings have no inventory to resolve against; they, and only they, are listed here.
nitpicky = True
nitpick_ignore_regex = [
    # NumPy and Matplotlib: numpy.ndarray, np.random.Generator, np.dtype, matplotlib.figure.Figure.
    ("py:class", r"(numpy|np|matplotlib)\..+"),
    # The standard library: collections.abc.Sequence, Callable, ...; contextlib.AbstractContextManager; os.PathLike;
    # pathlib.Path.
    ("py:class", r"(collections\.abc|contextlib|os|pathlib)\.\w+"),
]

# -- the API reference --------------------------------------------------------------------------------------------
autosummary_generate = True
autosummary_ignore_module_all = False
autodoc_default_options = {
    "members": True,
    "undoc-members": True,  # so that a public function or class without a docstring reaches numpydoc's GL08 below
    "member-order": "bysource",
    "show-inheritance": True,
}
autodoc_typehints = "signature"
autodoc_preserve_defaults = True

numpydoc_show_class_members = False  # autodoc lists the members itself
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True
# GL08: "The object does not have a docstring" -- a public function, class or method without one fails the build.
numpydoc_validation_checks = {"GL08"}
# numpydoc validates the ``__doc__`` of the object a name holds. For a type alias that is the alias object's own
# (empty) ``__doc__``, not the ``#:`` comment that documents it on the page; the aliases are listed here by name, and
# so are class attributes whose default is ``None`` (``None.__doc__`` is empty too).
numpydoc_validation_exclude = {r"^numpycnn\.training\.loop\.Augment$", r"^numpycnn\.layers\.base\.Layer\.build_axis$"}


def _public_paths() -> dict[str, str]:
    """Real module name -> its short public path (numpycnn.PUBLIC_MODULES), for the pages' "Public path" note."""
    return {real: short for short, real in numpycnn.PUBLIC_MODULES.items()}


def _assigns(module_name: str, attr: str) -> bool:
    """Whether the source of ``module_name`` assigns ``attr`` at module level (``X = ...``, ``A, X = ...``)."""
    if ("", attr) in ModuleAnalyzer.for_module(module_name).find_attr_docs():
        return True
    source = inspect.getsource(sys.modules[module_name])
    return re.search(rf"^(?:\w+\s*,\s*)*{re.escape(attr)}\s*(?:,\s*\w+\s*)*(?::[^=\n]+)?=", source, re.M) is not None


def _home(package: str, attr: str, obj: Any) -> str | None:
    """The full real name of what ``package`` imports as ``attr``: a class's or a function's own module and name; for
    a constant, the submodule whose source assigns it (``numpycnn.layers.LAYER_REGISTRY`` ->
    ``numpycnn.layers.base.LAYER_REGISTRY``). None for a module, or for a name ``package`` defines itself."""
    if inspect.ismodule(obj):
        return None
    if inspect.isclass(obj) or inspect.isroutine(obj):
        return None if obj.__module__ == package else f"{obj.__module__}.{obj.__qualname__}"
    for name, module in sorted(sys.modules.items()):
        if name.startswith(f"{package}.") and vars(module).get(attr) is obj and _assigns(name, attr):
            return f"{name}.{attr}"
    return None


def _private(name: str) -> bool:
    return any(part.startswith("_") for part in name.split("."))


def _exports(packages: list[str]) -> tuple[dict[str, list[str]], dict[str, list[dict[str, Any]]]]:
    """What each package's ``__all__`` imports from its modules.

    autodoc documents each object once, where it is defined; the package's page links there
    (``numpycnn.layers`` -> ``numpycnn.layers.conv.Conv2D``, ...). Constants defined in a private module
    (``numpycnn.interchange.OPSET``, from ``_onnx``) are documented on the package's page instead, with their ``#:``
    comment, since the private module has no page. Returns (package -> real names, package -> constants).
    """
    links: dict[str, list[str]] = {}
    constants: dict[str, list[dict[str, Any]]] = {}
    for package in packages:
        module = importlib.import_module(package)
        for attr in dict.fromkeys(getattr(module, "__all__", ())):
            home = _home(package, attr, getattr(module, attr))
            if home is None or home in links.get(package, ()):
                continue
            if not _private(home):
                links.setdefault(package, []).append(home)
                continue
            home_module = home.rpartition(".")[0]
            comment = ModuleAnalyzer.for_module(home_module).find_attr_docs().get(("", attr), [])
            constants.setdefault(package, []).append(
                {"name": attr, "value": repr(getattr(module, attr)), "doc": list(comment)})
    return links, constants


def _hidden(modules: list[str]) -> dict[str, list[str]]:
    """Module -> its public constants that its own ``__dir__`` leaves out, so that autodoc (which lists a module's
    members with ``dir()``) would not see them: ``numpycnn.PUBLIC_MODULES``. The page documents them explicitly."""
    found = {}
    for name in modules:
        module = importlib.import_module(name)
        listed = set(dir(module))
        hidden = [attr for attr, value in vars(module).items() if not attr.startswith("_") and attr not in listed
                  and not inspect.ismodule(value) and getattr(value, "__module__", name) == name]
        if hidden:
            found[name] = hidden
    return found


def _api_modules() -> list[str]:
    """The modules listed in docs/api/index.rst (its autosummary entries)."""
    lines = (DOCS / "api" / "index.rst").read_text().splitlines()
    return [line.strip() for line in lines if line.startswith("   numpycnn")]


_API_MODULES = _api_modules()
_LINKS, _CONSTANTS = _exports(_API_MODULES)
autosummary_context = {"public_paths": _public_paths(), "reexports": _LINKS, "constants": _CONSTANTS,
                       "hidden": _hidden(_API_MODULES)}

# -- the guide pages (Markdown) -----------------------------------------------------------------------------------
# docs/overview/readme.md includes the README; a guide page's link to ../README.md goes there (see
# docs/_ext/house_style.py). It lives in a folder of its own: every docs/*.md page must be linked from the README
# (tests/test_readme.py).
readme_page = "overview/readme"
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 6  # GitHub's anchors, so that `page.md#a-heading` links work here as they do on GitHub

# -- HTML --------------------------------------------------------------------------------------------------------
html_theme = "alabaster"
html_title = f"numpycnn {release}"
html_static_path: list[str] = []
