"""What the API reference needs beyond autodoc and numpydoc to render docs/STYLE.md's docstrings, and to check them.

1. **The ``Shape`` section.** numpydoc parses a fixed set of sections and drops any other with only a Python
   ``UserWarning``, which ``sphinx -W`` does not see (numpydoc issue #202 asks for custom sections). The house style
   adds ``Shape`` (the input and output shapes with the output-size formula, as PyTorch's ``Shape:``), placed after
   ``Parameters``: it is registered here as a section numpydoc keeps and rendered right after the parameters.
2. **No other unknown section.** Any other section title in a function, class or method docstring is a Sphinx
   warning (an error under ``-W``) naming the object, instead of text that quietly disappears from the page.
3. **numpydoc validates what the page shows.** Its check GL08 ("the object does not have a docstring") runs on every
   docstring autodoc processes. Two kinds of member are therefore skipped before autodoc loads them:

   * a name a module imports from elsewhere (``Callable``, ``Layer`` in the optimisers' module): autodoc documents it
     where it is defined and never here, but Sphinx 9 loads (and numpydoc validates) members before dropping the
     imported ones;
   * a method that overrides a documented method and has no docstring of its own (``Conv2D.forward`` under
     ``Layer.forward``): the contract is documented once, on the base class the page links to
     (``show-inheritance``), as :func:`inspect.getdoc` would inherit it.

   Everything else public that autodoc documents, without a docstring, fails the build.
4. **Source links lead to the reference.** A guide page links to the code as GitHub shows it
   (``[functional/conv.py](../src/numpycnn/functional/conv.py)``, a folder such as ``../src/numpycnn/layers/``). In the
   HTML such a link to a module or package that has an API page goes to that page; a link to any other file of the
   repository stays what myst-parser makes it, a download of the file. A link to the README (``../README.md``,
   anchors included) goes to the page that includes the README (``readme_page`` in docs/conf.py).
5. **Public paths resolve.** A cross-reference may name an object by any path it is imported from:
   ``numpycnn.ModelFileError``, ``numpycnn.io.load_model`` (a short public path), or a name the module imports
   (``Sequential.to`` in :mod:`numpycnn.model.io`). When the name itself has no entry, it is imported and the
   reference goes to where the object is documented, ``numpycnn.errors.ModelFileError``; a name that does not
   import stays a broken reference.
6. **Constructor signatures.** ``Layer.__new__(cls, *args, **kwargs)`` checks keyword names for every layer and
   passes everything on; Python's :func:`inspect.signature`, and so autodoc, would show that pass-through as the
   signature of every layer. A class whose ``__new__`` takes only ``*args, **kwargs`` shows its ``__init__``'s.
7. **Summaries keep their module.** autosummary's tables show each object's first sentence on another page (the
   API index, a package's page), where a relative reference such as ``:func:`fail``` in :mod:`numpycnn.errors`
   would resolve against the wrong module or none. A reference to a bare name that the docstring's own module
   defines or imports from numpycnn is therefore written out in full (``:func:`~numpycnn.errors.fail```), which
   renders the same.
8. **Public bases.** ``show-inheritance`` lists a class's bases; a private base (``_Loss``) has no page, so the list
   shows its public bases instead.
"""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path
from typing import Any

from docutils import nodes
from numpydoc.docscrape import NumpyDocString
from numpydoc.docscrape_sphinx import SphinxDocString
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.ext.autodoc import preserve_defaults
from sphinx.util import logging
from sphinx.util.inspect import stringify_signature

logger = logging.getLogger(__name__)

EXTRA_SECTIONS = ("Shape",)  # each rendered right after Parameters, in this order

_param_list = SphinxDocString._str_param_list


def _param_list_and_extra_sections(self: SphinxDocString, name: str, fake_autosummary: bool = False) -> list[str]:
    out = _param_list(self, name, fake_autosummary)
    if name == "Parameters":
        for extra in EXTRA_SECTIONS:
            out += self._str_section(extra)
    return out


def _register_sections() -> None:
    for extra in EXTRA_SECTIONS:
        NumpyDocString.sections.setdefault(extra, [])
    SphinxDocString._str_param_list = _param_list_and_extra_sections


def _section_titles(lines: list[str]) -> list[str]:
    """The numpydoc section titles of a docstring: a line underlined with at least as many dashes or equals."""
    titles = []
    for title, underline in zip(lines, lines[1:], strict=False):
        title, underline = title.strip(), underline.strip()
        if title and len(underline) >= 3 and set(underline) in ({"-"}, {"="}) and len(underline) >= len(title):
            titles.append(" ".join(word.capitalize() for word in title.split(" ")))
    return titles


def check_sections(app: Sphinx, what: str, name: str, obj: Any, options: Any, lines: list[str]) -> None:
    """Warn about a section numpydoc would drop (connected to run before numpydoc rewrites the docstring)."""
    if what == "module":  # numpydoc leaves module docstrings to reST, where such titles are real sections
        return
    for title in _section_titles(lines):
        if title not in NumpyDocString.sections:
            logger.warning("docstring of %s: unknown section %r, which numpydoc drops; use a numpydoc section "
                           "(Parameters, Shape, Returns, Raises, Notes, Examples, ...) or a `.. rubric::`",
                           name, title, type="house_style", subtype="section")


_BARE_REFERENCE = re.compile(r":(func|class|exc|data|obj):`([A-Za-z_]\w*)`")


def qualify_references(app: Sphinx, what: str, name: str, obj: Any, options: Any, lines: list[str]) -> None:
    """Write a reference to a bare name of the docstring's own module in full (module docstring, 7)."""
    module_name = obj.__name__ if what == "module" else getattr(inspect.getmodule(obj), "__name__", None)
    module = importlib.import_module(module_name) if module_name else None
    if module is None:
        return

    def qualify(match: re.Match[str]) -> str:
        role, target = match.groups()
        ours = getattr(getattr(module, target, None), "__module__", module_name) or ""  # a constant has none
        if not hasattr(module, target) or not ours.startswith("numpycnn"):  # pathlib.Path stays Path
            return match.group(0)
        return f":{role}:`~{module_name}.{target}`"

    lines[:] = [_BARE_REFERENCE.sub(qualify, line) for line in lines]


def _documented(app: Sphinx) -> tuple[str, str]:
    """The module and the class (or '') whose members autodoc is choosing now."""
    current = getattr(app.env, "current_document", None)
    if current is not None:  # Sphinx >= 8.2
        return current.autodoc_module, current.autodoc_class
    data = app.env.temp_data
    return data.get("autodoc:module") or "", data.get("autodoc:class") or ""


def _overrides_documented(cls: type, name: str) -> bool:
    """Whether ``name`` on ``cls`` has no docstring of its own and overrides one that has."""
    own = cls.__dict__.get(name)
    if own is None:
        return False
    function = own.fget if isinstance(own, property) else getattr(own, "__func__", own)
    if getattr(function, "__doc__", None):
        return False
    return any(name in base.__dict__ and inspect.getdoc(getattr(base, name)) for base in cls.__mro__[1:])


def skip_member(app: Sphinx, what: str, name: str, obj: Any, skip: bool, options: Any) -> bool | None:
    """Skip the imported names of a module and the undocumented overrides of a class (module docstring, 3)."""
    if skip:
        return None
    module, cls_name = _documented(app)
    if what == "module" and module and (inspect.isclass(obj) or inspect.isroutine(obj)):
        return True if getattr(obj, "__module__", module) != module else None
    if what in ("class", "exception") and module and cls_name:
        cls = importlib.import_module(module)
        for part in cls_name.split("."):
            cls = getattr(cls, part)
        return True if _overrides_documented(cls, name) else None
    return None


def _module_of(path: Path, package_root: Path) -> str | None:
    """``.../src/numpycnn/layers/conv.py`` -> ``numpycnn.layers.conv``; a folder or ``__init__.py`` -> the package."""
    try:
        parts = list(path.relative_to(package_root.parent).parts)
    except ValueError:
        return None
    if parts and parts[-1] == "__init__.py":
        parts.pop()
    elif parts and parts[-1].endswith(".py"):
        parts[-1] = parts[-1][:-3]
    return ".".join(parts) or None


def source_links_to_reference(app: Sphinx, doctree: nodes.document) -> None:
    """Point a guide page's link to a module's source at the module's API page (module docstring, 4)."""
    package_root = Path(app.srcdir).parent / "src" / "numpycnn"
    readme = Path(app.srcdir).parent / "README.md"
    pages = {name.rpartition("/")[2]: name for name in app.env.found_docs if name.startswith("api/")}
    for node in list(doctree.findall(lambda n: isinstance(n, (addnodes.pending_xref, addnodes.download_reference)))):
        if node.get("reftype") != "myst" or "#" in node.get("reftarget", ""):
            continue
        target = (Path(app.srcdir) / node["refdoc"]).parent / node["reftarget"]
        if node.get("refdomain") == "doc" and target.with_suffix(".md").resolve() == readme:
            node["reftarget"] = app.config.readme_page  # the page that includes the README
            continue
        module = _module_of(target.resolve(), package_root)
        if module is None or module not in pages:
            continue
        xref = addnodes.pending_xref("", *node.children, refdomain="py", reftype="mod", reftarget=module,
                                     refdoc=node["refdoc"], refexplicit=True)
        node.replace_self(xref)


def public_bases(app: Sphinx, name: str, obj: Any, options: Any, bases: list[type]) -> None:
    """Show a class's public bases: a private base (``_Loss``, which has no page) is replaced by its own bases."""
    public: list[type] = []
    pending = list(bases)
    while pending:
        base = pending.pop(0)
        if base.__name__.startswith("_"):
            pending[:0] = list(base.__bases__)
        elif base not in public:
            public.append(base)
    bases[:] = public


def _documented_name(name: str) -> str | None:
    """The name under which the object that ``name`` imports is documented: a module's own name, a class's or a
    function's module and qualified name (methods and properties through their class). None if ``name`` does not
    import, or names a constant (documented under the name its module gives it)."""
    parts = name.split(".")
    for split in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        break
    else:
        return None
    owner = None
    for attr in parts[split:]:
        owner, obj = obj, getattr(obj, attr, None)
        if obj is None:
            return None
    if inspect.ismodule(obj):
        return obj.__name__
    if inspect.isclass(obj) or inspect.isfunction(obj):
        return f"{obj.__module__}.{obj.__qualname__}"
    if inspect.isclass(owner):  # a property, a classmethod bound to its class, ...
        return f"{owner.__module__}.{owner.__qualname__}.{parts[-1]}"
    return None


def resolve_public_path(app: Sphinx, env: Any, node: addnodes.pending_xref, contnode: nodes.Element) -> Any:
    """Resolve a Python reference that names an object by a path it is imported from (module docstring, 5)."""
    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"].lstrip("~.")
    module = node.get("py:module")
    candidates = [target] if target.startswith("numpycnn.") or not module else [f"{module}.{target}", target]
    domain = env.get_domain("py")
    for candidate in candidates:
        real = _documented_name(candidate) if candidate.startswith("numpycnn") else None
        if real and real != target:
            found = domain.resolve_xref(env, node["refdoc"], app.builder, node["reftype"], real, node, contnode)
            if found is not None:
                return found
        if node["reftype"] == "class" and candidate.startswith("numpycnn"):
            # a type alias in an annotation (``augment: Augment | None``) is documented as data; Sphinx >= 8
            # finds it for a class reference by itself, older ones need the object search
            found = domain.resolve_xref(env, node["refdoc"], app.builder, "obj", candidate, node, contnode)
            if found is not None:
                return found
    return None


def _passes_everything_on(function: Any) -> bool:
    """Whether ``function(cls, *args, **kwargs)`` takes nothing but the pass-through arguments."""
    try:
        kinds = [p.kind for p in list(inspect.signature(function).parameters.values())[1:]]
    except (TypeError, ValueError):
        return False
    return kinds == [inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD]


def _keep_written_defaults(app: Sphinx, function: Any) -> None:
    if hasattr(preserve_defaults, "update_default_value"):  # Sphinx >= 7.4
        preserve_defaults.update_default_value(function, False)
    else:
        preserve_defaults.update_defvalue(app, function, False)


def constructor_signature(app: Sphinx, what: str, name: str, obj: Any, options: Any, signature: str | None,
                          return_annotation: str | None) -> tuple[str, str | None] | None:
    """``__init__``'s signature for a class whose ``__new__`` only passes its arguments on (module docstring, 6)."""
    if what not in ("class", "exception") or not inspect.isclass(obj) or obj.__init__ is object.__init__:
        return None
    if obj.__new__ is object.__new__ or not _passes_everything_on(obj.__new__):
        return None
    if app.config.autodoc_preserve_defaults:
        _keep_written_defaults(app, obj.__init__)  # defaults as written (np.float32), as autodoc shows them
    init = inspect.signature(obj.__init__)  # annotations as written (the modules use postponed annotations)
    init = init.replace(parameters=list(init.parameters.values())[1:])  # without self
    return stringify_signature(init, show_return_annotation=False), return_annotation


def setup(app: Sphinx) -> dict[str, Any]:
    _register_sections()
    app.setup_extension("numpydoc")
    app.add_config_value("readme_page", "", "env")
    app.connect("autodoc-process-docstring", check_sections, priority=100)  # numpydoc's handler runs at 500
    app.connect("autodoc-process-docstring", qualify_references, priority=100)
    app.connect("autodoc-skip-member", skip_member)
    app.connect("autodoc-process-bases", public_bases)
    app.connect("missing-reference", resolve_public_path)
    app.connect("autodoc-process-signature", constructor_signature, priority=400)  # before numpydoc's (500)
    app.connect("doctree-read", source_links_to_reference, priority=400)  # before the download collector (500)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
