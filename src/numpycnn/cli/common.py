"""What the command-line modules share (:mod:`numpycnn.cli`, :mod:`~numpycnn.cli.onnx_commands` and
:mod:`~numpycnn.cli.data_commands`): the one-line error report (:func:`report_error`) and reading MODEL
arguments. The command modules import it, never the parser in :mod:`numpycnn.cli` itself.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from numpycnn.errors import ModelFileError


def report_error(command: str, err: BaseException, code: int) -> int:
    """Print ``err`` as one line on stderr (the traceback too with ``NUMPYCNN_DEBUG=1``); return ``code``."""
    if os.environ.get("NUMPYCNN_DEBUG"):
        raise err
    text = " ".join(str(err).split()) or type(err).__name__
    if isinstance(err, OSError) and err.filename and str(err.filename) not in text:
        text = f"{text}: {err.filename}"
    print(f"numpycnn {command}: error: {text}", file=sys.stderr)
    return code


def load_model_file(path: Path, device: str = "cpu") -> Any:
    """The model in the file ``path`` on ``device``, with a one-line error for a folder or a missing file."""
    from numpycnn.model.io import load_model

    if path.is_dir():
        inside = path / "model.safetensors"
        hint = (f"Did you mean {str(inside)!r}?" if inside.is_file()
                else "Give the .safetensors file of a model, e.g. RUN/model.safetensors.")
        raise ModelFileError(f"MODEL {str(path)!r} is a folder, not a model file. {hint}")
    if not path.is_file():
        raise ModelFileError(f"model file {str(path)!r} does not exist.")
    return load_model(path, device=device)
