"""Foundation: where arrays live (:mod:`~numpycnn.core.backend`), argument checks with one message template
(:mod:`~numpycnn.core.checks`), atomic file writes (:mod:`~numpycnn.core.files`), what an MPI launcher says
(:mod:`~numpycnn.core.launch`) and the worker threads (:mod:`~numpycnn.core.parallel`). Imports nothing of
numpycnn but :mod:`numpycnn.errors`."""
