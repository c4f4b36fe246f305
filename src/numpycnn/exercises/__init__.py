"""Exercises that are checked and name the bug: write a layer's math, run the checker, get OK or what is wrong.

``numpycnn exercise list``, ``numpycnn exercise start NAME [DIR]`` and ``numpycnn exercise check NAME [FILE]``
on the command line; :func:`check` and :func:`start` from Python. See docs/exercises.md.

Examples
--------
>>> from numpycnn import exercises
>>> def relu_backward(dy, x):
...     return dy * (x > 0)
>>> exercises.check("relu-backward", relu_backward).ok
True
>>> print(exercises.check("relu-backward", lambda dy, x: dy).message.splitlines()[-2])
  It looks like: missing ReLU mask.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from numpycnn.exercises import conv_problems, dense_problems
from numpycnn.exercises.bugs import BUG_HUNTS
from numpycnn.exercises.catalogue import BugHunt, Exercise
from numpycnn.exercises.checker import CheckResult, LearnerError, check_function, check_layer, load
from numpycnn.exercises.stubs import write_stub

__all__ = ["EXERCISES", "CheckResult", "check", "get", "start"]

#: Every exercise by name: the functions to write first, then the find-the-bug layers.
EXERCISES: dict[str, Exercise | BugHunt] = {
    e.name: e for e in (*conv_problems.EXERCISES, *dense_problems.EXERCISES, *BUG_HUNTS)}


def get(name: str) -> Exercise | BugHunt:
    """The exercise called ``name``; a ``ValueError`` names the closest one for a typo."""
    if name not in EXERCISES:
        close = difflib.get_close_matches(str(name), EXERCISES, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else " `numpycnn exercise list` shows them."
        raise ValueError(f"exercise: `NAME` must be one of {sorted(EXERCISES)}. Got {name!r}.{hint}")
    return EXERCISES[name]


def start(name: str, directory: str | Path = ".") -> Path:
    """Write the stub of exercise ``name`` into ``directory``; return its path.

    Parameters
    ----------
    name : str
        An exercise of :data:`EXERCISES`.
    directory : str or Path
        The folder (created if missing).

    Returns
    -------
    Path
        The file written, ``directory / exercise.filename``.

    Raises
    ------
    FileExistsError
        If that file exists: it is never overwritten.
    ValueError
        For an unknown name.
    """
    return write_stub(get(name), directory)


def check(name: str, answer: Any = None) -> CheckResult:
    """Check an answer to exercise ``name``.

    Parameters
    ----------
    name : str
        An exercise of :data:`EXERCISES`.
    answer : str, Path, function, class or None
        The learner's file (the function or class of the stub's name is loaded from it), the function (or, for a
        find-the-bug exercise, the layer class) itself, or ``None`` for the stub's file name in the current folder.

    Returns
    -------
    CheckResult
        ``.ok`` and ``.message`` (``"OK: ..."`` or ``"WRONG: ..."``; for a classic mistake, its name, the wrong
        elements' indices and where to look) and ``.mistake``. An error in the learner's file or function is a
        WRONG answer with the line that raised, not an exception.

    Raises
    ------
    ValueError
        For an unknown name.
    FileNotFoundError
        If the file does not exist.
    """
    exercise = get(name)
    attribute = exercise.class_name if isinstance(exercise, BugHunt) else exercise.function
    if answer is None or isinstance(answer, (str, Path)):
        path = Path(answer if answer is not None else exercise.filename)
        if not path.is_file():
            raise FileNotFoundError(f"exercise check: {str(path)!r} does not exist. Write it with `numpycnn "
                                    f"exercise start {name}`, or give the path of your file.")
        try:
            answer = load(path, attribute)
        except LearnerError as err:
            return CheckResult(name, False, f"WRONG: {name}: {err}")
    if isinstance(exercise, BugHunt):
        return check_layer(exercise, answer)
    return check_function(exercise, answer)
