"""Where arrays live: the array module of an array (NumPy or CuPy) and the devices a model can run on.

numpycnn has one hand-written code path. Every function of :mod:`numpycnn.functional` and every layer takes its
array module from its input, ``xp = get_array_module(x)``, as Chainer and DeZero do, so the same lines run on
NumPy arrays (device ``"cpu"``) and on CuPy arrays (device ``"cuda"``, an NVIDIA GPU). CuPy is imported only when
the ``"cuda"`` device is asked for: ``import numpycnn`` never imports it.

Arrays cross between host and device only through :func:`to_device` and :func:`to_host`, called in a few named
places (``docs/design.md``, "Devices"): batches in ``fit``/``evaluate``/``predict``, ``Sequential.to``, model
files and checkpoints, dropout masks (drawn on the host generator) and freshly drawn initial weights
(:func:`like`). A layer never moves an array itself.

A device is a row of a small table: its name, a loader of its array module, and the two copies. Tests register
a NumPy-backed stand-in with :func:`register_device`, so that CI without a GPU runs the device code paths.

Examples
--------
>>> x = np.ones((2, 3), np.float32)
>>> get_array_module(x) is np, device_of(x)
(True, 'cpu')
>>> to_host(to_device(x, "cpu")) is x
True
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any, NamedTuple

import numpy as np

from numpycnn.errors import DeviceError, fail

#: How to get CuPy: the extra that installs it, and what it needs.
GPU_HINT = ('Install CuPy with pip install "numpycnn[gpu]" (it needs an NVIDIA GPU with CUDA 12 and its '
            'driver), or use device "cpu".')


class Device(NamedTuple):
    """One row of the device table.

    ``module()`` returns the array module (imported on first use; it raises when the device cannot run here);
    ``to_device(a)`` copies a host or device array onto the device; ``to_host(a)`` copies one of its arrays
    into a new ``numpy.ndarray``.
    """

    name: str
    module: Callable[[], Any]
    to_device: Callable[[Any], Any]
    to_host: Callable[[Any], np.ndarray]


def get_array_module(*arrays: Any) -> Any:
    """The array module of the first device array among ``arrays``: CuPy for CuPy arrays, the namespace an
    array offers through ``__array_namespace__`` for other non-NumPy arrays, NumPy otherwise.

    For NumPy inputs this is one type test per argument, so the NumPy path costs nothing more.
    """
    for a in arrays:
        cls = type(a)
        if cls is np.ndarray or isinstance(a, (np.ndarray, np.generic)):
            continue
        if cls.__module__.startswith("cupy"):
            return sys.modules["cupy"]
        namespace = getattr(a, "__array_namespace__", None)
        if namespace is not None:
            return namespace()
    return np


@functools.cache
def _cupy() -> ModuleType:
    """CuPy, checked once to reach a GPU; a ``DeviceError`` (a ``RuntimeError``) naming the fix otherwise."""
    try:
        import cupy
    except ImportError:
        cupy = None
    if cupy is None:
        fail("device", "device", "a device this machine can run", "cuda", GPU_HINT, DeviceError,
             got="'cuda', but CuPy is not installed")
    problem = None
    try:
        cupy.zeros(1, np.float32)  # allocates on the current GPU: fails without a driver or a GPU
    except Exception as err:  # CuPy raises several CUDA error types; all mean the same here
        problem = f"{type(err).__name__}: {err}"
    if problem is not None:
        fail("device", "device", "a device this machine can run", "cuda", GPU_HINT, DeviceError,
             got=f"'cuda', but CuPy cannot allocate on a GPU ({problem})")
    return cupy


def _cupy_to_device(a: Any) -> Any:
    return _cupy().asarray(a)


def _cupy_to_host(a: Any) -> np.ndarray:
    return a.get()


_DEVICES: dict[str, Device] = {
    "cpu": Device("cpu", lambda: np, lambda a: to_host(a), np.asarray),
    "cuda": Device("cuda", _cupy, _cupy_to_device, _cupy_to_host),
}


def register_device(name: str, module: Callable[[], Any], to_device: Callable[[Any], Any],
                    to_host: Callable[[Any], np.ndarray]) -> None:
    """Add (or replace) the device ``name``; see :class:`Device` for the three functions. ``"cpu"`` is fixed.

    The tests register a NumPy-backed stand-in this way (``tests/fake_device.py``).
    """
    if not isinstance(name, str) or not name or name == "cpu":
        fail("register_device", "name", "a new device name other than 'cpu'", name)
    _DEVICES[name] = Device(name, module, to_device, to_host)


def get_device(name: Any) -> Device:
    """The device called ``name``, its array module loaded (raises if it cannot run on this machine)."""
    device = _DEVICES.get(name) if isinstance(name, str) else None
    if device is None:
        fail("device", "device", f"one of {sorted(_DEVICES)}", name)
    device.module()
    return device


def device_of(array: Any) -> str:
    """The name of the device ``array`` lives on: ``"cpu"`` for NumPy arrays and Python scalars."""
    xp = get_array_module(array)
    if xp is np:
        return "cpu"
    for device in _DEVICES.values():
        if device.name != "cpu" and _loaded(device) is xp:
            return device.name
    fail("device_of", "array", f"an array of a registered device ({sorted(_DEVICES)})", array,
         "Register its device with numpycnn.core.backend.register_device.", TypeError, got=type(array).__name__)


def _loaded(device: Device) -> Any:
    """The device's array module if it is already imported (never imports CuPy to answer ``device_of``)."""
    if device.name == "cuda":
        return sys.modules.get("cupy")
    return device.module()


def to_device(array: Any, device: str) -> Any:
    """``array`` (host or device) on ``device``: the array itself when it is there already, else a copy."""
    target = get_device(device)
    if get_array_module(array) is not np and device_of(array) == device:
        return array
    return target.to_device(array)


def to_host(array: Any) -> np.ndarray:
    """``array`` as a ``numpy.ndarray``: itself for a NumPy array, else a host copy (of a device array, or
    ``np.asarray`` of a list or scalar)."""
    if isinstance(array, np.ndarray):
        return array
    return _DEVICES[device_of(array)].to_host(array)


def like(host: np.ndarray, reference: Any) -> Any:
    """The host array ``host`` moved to the device of ``reference`` (itself when that is the CPU).

    The one place where arrays drawn by a host random generator (initial weights, dropout masks) go to the
    device, so that one seed gives the same numbers on every device.
    """
    if type(reference) is np.ndarray:
        return host
    return to_device(host, device_of(reference))
