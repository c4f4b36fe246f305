"""Stateless math: each operation as ``out, cache = *_forward(...)`` and ``grads = *_backward(dout, cache)``.

Nothing here imports anything of the project but :mod:`numpycnn.core.backend`: every function takes its array module
from its input, ``xp = get_array_module(x)``, so the same code runs on NumPy and on CuPy arrays.
"""
