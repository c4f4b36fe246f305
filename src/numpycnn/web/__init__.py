"""The drawing page: ``numpycnn serve`` shows what a model sees and how each layer responds.

:mod:`numpycnn.web.explain` turns a model and one picture into plain data (the prepared input, every layer's
activation, one convolution output computed step by step); :mod:`numpycnn.web.server` serves that data and the
page in ``static/`` over HTTP with the standard library. Nothing here is imported by ``import numpycnn``.
"""
