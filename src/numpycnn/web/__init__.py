"""The drawing page: ``numpycnn serve`` shows what a model sees and how each layer responds.

:mod:`numpycnn.web.explain` turns a model and one picture into plain data (the prepared input, every layer's
activation, one convolution output computed step by step); :mod:`numpycnn.web.learn` does the same for the
backward pass; :mod:`numpycnn.web.train` trains a small network on MNIST in the background while the page
watches; :mod:`numpycnn.web.server` serves all of it and the page in ``static/`` over HTTP with the standard
library. Nothing here is imported by ``import numpycnn``.
"""
