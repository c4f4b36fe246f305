"""numpycnn: convolutional neural networks from first principles in NumPy.

Every layer's forward and backward pass is written by hand in :mod:`numpycnn.functional`; layers, losses and
optimisers are small classes around that math. Submodules and public names load on first use, so
``import numpycnn`` stays fast and imports nothing but NumPy.

The folders are the tiers of docs/design.md, lowest first: ``core`` and ``functional`` (the math), ``datasets``,
``layers``, ``optim``, ``files``, ``training``, ``model``, ``interchange`` and ``pretrained``, ``exercises``, then
the applications ``cli`` and ``web``. A few modules that the docs teach by a shorter path keep it
(:data:`PUBLIC_MODULES`): ``import numpycnn.losses`` is :mod:`numpycnn.layers.losses`, the same module object.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from types import ModuleType
from typing import Any

from numpycnn.core.launch import limit_blas_threads
from numpycnn.errors import DataError, DeviceError, ModelFileError, TrainingError

__version__ = "0.1.0"

# Under `mpiexec -n K`, each of the K processes on a machine gets cores // K BLAS threads, unless the user set
# OPENBLAS_NUM_THREADS, OMP_NUM_THREADS or MKL_NUM_THREADS; it must happen before NumPy loads (numpycnn.core.launch).
limit_blas_threads()

_LAZY_NAMES = {
    "Sequential": "numpycnn.model.sequential",
    "gradcheck": "numpycnn.layers.gradcheck",
    "load_model": "numpycnn.model.io",
    "History": "numpycnn.training.loop",
    "get_num_threads": "numpycnn.core.parallel",
    "set_num_threads": "numpycnn.core.parallel",
}
#: The short public paths that the README, the guide and the tutorial teach, and the module each one is.
#: Importing a short path imports the module it names and nothing more; both names give the same module object.
PUBLIC_MODULES = {
    "numpycnn.callbacks": "numpycnn.training.callbacks",
    "numpycnn.gradcheck": "numpycnn.layers.gradcheck",
    "numpycnn.io": "numpycnn.model.io",
    "numpycnn.losses": "numpycnn.layers.losses",
    "numpycnn.models": "numpycnn.model.zoo",
    "numpycnn.plots": "numpycnn.cli.plots",
    "numpycnn.reference": "numpycnn.functional.reference",
}
_SUBMODULES = (
    "callbacks", "datasets", "exercises", "functional", "gradcheck", "interchange", "io", "layers", "losses", "model",
    "models", "optim", "plots", "pretrained", "reference", "training",
)

__all__ = ["DataError", "DeviceError", "ModelFileError", "TrainingError", "__version__", *_LAZY_NAMES, *_SUBMODULES]


class _PublicPathFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolves each short path of :data:`PUBLIC_MODULES` to the module it names (PEP 451 finder and loader).

    ``create_module`` imports the real module and hands it over; ``exec_module`` has nothing left to run and puts
    back the real module's ``__spec__``, which the import system replaced with the short path's.
    """

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in PUBLIC_MODULES:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def __init__(self) -> None:
        self._specs: dict[str, importlib.machinery.ModuleSpec] = {}

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(PUBLIC_MODULES[spec.name])
        self._specs[spec.name] = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        for short, real in PUBLIC_MODULES.items():
            if real == module.__name__ and short in self._specs:
                module.__spec__ = self._specs.pop(short)


if not any(isinstance(finder, _PublicPathFinder) for finder in sys.meta_path):
    sys.meta_path.append(_PublicPathFinder())


def __getattr__(name: str) -> Any:
    if name in _LAZY_NAMES:
        return getattr(importlib.import_module(_LAZY_NAMES[name]), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"numpycnn.{name}")
    raise AttributeError(f"module 'numpycnn' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
