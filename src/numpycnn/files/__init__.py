"""The model-file format: safetensors model files and checkpoints written, checked and read with NumPy alone
(:mod:`~numpycnn.files.model_file`, on the checked container of :mod:`~numpycnn.files.safetensors`). Works on
any model object; imports the layers tier and below, never the model, the training loop or the application.
:func:`numpycnn.io.load_model` builds a ``Sequential`` from it."""
