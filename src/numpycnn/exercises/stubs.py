"""The files a learner starts from: a function stub with the statement in its docstring, or a planted-bug layer.

:func:`write_stub` writes one into a folder and never overwrites a file that is there: the learner's work is theirs.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from numpycnn.core.files import atomic_write
from numpycnn.exercises.catalogue import BugHunt, Exercise

PLANTED = Path(__file__).resolve().parent / "_planted"


def _indent(text: str, prefix: str = "    ") -> str:
    return textwrap.indent(text, prefix)


def stub_text(exercise: Exercise | BugHunt) -> str:
    """The text of the stub file for ``exercise``."""
    if isinstance(exercise, BugHunt):
        return (PLANTED / exercise.filename).read_text(encoding="utf-8")
    return f'''"""Exercise {exercise.name}: {exercise.title}.

{exercise.statement}

Shapes: {exercise.shapes}

Hint: {exercise.hint}

Check your answer (OK, or WRONG with what is wrong and where to look):

    numpycnn exercise check {exercise.name} {exercise.filename}
"""

import numpy as np


{exercise.signature}
    """{exercise.title}: returns {", ".join(exercise.outputs)}."""
    raise NotImplementedError("{exercise.function}: write it here, then run: numpycnn exercise check {exercise.name}")
'''


def write_stub(exercise: Exercise | BugHunt, directory: str | Path = ".") -> Path:
    """Write the stub of ``exercise`` into ``directory`` (created if missing) as ``exercise.filename``; return its
    path. Raise ``FileExistsError`` if that file exists: a learner's work is never overwritten."""
    folder = Path(directory)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"exercise start: DIR {str(folder)!r} is a file, not a folder. Give a folder.")
    path = folder / exercise.filename
    if path.exists():
        raise FileExistsError(f"exercise start: {str(path)!r} exists and is left as it is (it may be your work). "
                              f"Check it with `numpycnn exercise check {exercise.name} {path}`, or move it away "
                              "to start again.")
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "w") as handle:
        handle.write(stub_text(exercise))
    return path
