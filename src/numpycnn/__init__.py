"""numpycnn: convolutional neural networks from first principles in NumPy.

Every layer's forward and backward pass is written by hand in :mod:`numpycnn.functional`; layers, losses and
optimisers are small classes around that math. Submodules and public names load on first use, so
``import numpycnn`` stays fast and imports nothing but NumPy.
"""

from __future__ import annotations

import importlib
from typing import Any

from numpycnn._launch import limit_blas_threads
from numpycnn.errors import DataError, DeviceError, ModelFileError, TrainingError

__version__ = "0.1.0"

# Under `mpiexec -n K`, each of the K processes on a machine gets cores // K BLAS threads, unless the user set
# OPENBLAS_NUM_THREADS, OMP_NUM_THREADS or MKL_NUM_THREADS; it must happen before NumPy loads (numpycnn._launch).
limit_blas_threads()

_LAZY_NAMES = {
    "Sequential": "numpycnn.model",
    "gradcheck": "numpycnn.gradcheck",
    "load_model": "numpycnn.io",
    "History": "numpycnn.training",
}
_SUBMODULES = (
    "callbacks", "datasets", "functional", "init", "io", "layers", "losses", "model", "models", "optim",
    "pretrained", "reference", "schedules", "training",
)

__all__ = ["DataError", "DeviceError", "ModelFileError", "TrainingError", "__version__", *_LAZY_NAMES, *_SUBMODULES]


def __getattr__(name: str) -> Any:
    if name in _LAZY_NAMES:
        return getattr(importlib.import_module(_LAZY_NAMES[name]), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"numpycnn.{name}")
    raise AttributeError(f"module 'numpycnn' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
