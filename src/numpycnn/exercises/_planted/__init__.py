"""Layers with a planted bug, one per file: the stubs of the find-the-bug exercises (``numpycnn exercise start``)."""
