"""Stateless math: each operation as ``out, cache = *_forward(...)`` and ``grads = *_backward(dout, cache)``.

Nothing here imports anything of the project; only NumPy.
"""
