"""What an exercise is: its statement, the cases it is checked on, the reference answer and the classic mistakes.

Two kinds. A *function* exercise asks for one function (``conv_forward``, ``dense_backward``, ...); the checker
runs it on every :class:`Case`, compares each output with :attr:`Exercise.reference` (the library's own math, the
loop reference or the optimiser) and, when an output is wrong, with each :class:`Mistake`'s deliberately wrong
variant to name the bug. A *find-the-bug* exercise (:class:`BugHunt`) hands over a layer with a planted bug; the
learner finds it with :func:`numpycnn.gradcheck.gradcheck` and fixes it, and the checker runs ``gradcheck`` on the
fixed class.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Case:
    """One set of arguments the learner's function is called with, and what makes it a case of its own.

    Attributes
    ----------
    label : str
        What the case tests, shown in messages: ``"stride 2"``, ``"a batch of one"``.
    args : dict of str to object
        The keyword arguments of the call (arrays in float64).
    """

    label: str
    args: dict[str, Any]


@dataclass(frozen=True)
class Mistake:
    """A classic mistake as a wrong variant of the reference.

    Attributes
    ----------
    name : str
        What the mistake is, as the checker names it: ``"missing sum over the batch"``.
    compute : callable
        ``compute(**case.args)`` returns the outputs that the mistake produces, in the order of
        :attr:`Exercise.outputs`.
    look : str
        Where to look in the learner's code, and what the right rule is.
    """

    name: str
    compute: Callable[..., tuple[Any, ...]]
    look: str


@dataclass(frozen=True)
class Exercise:
    """A function to write, checked against a reference, finite differences and a catalogue of mistakes.

    Attributes
    ----------
    name : str
        The command-line name, ``"conv-backward"``.
    title : str
        One line.
    function : str
        The name of the function the learner writes; the stub file is ``{function}.py``.
    signature : str
        The ``def`` line of the stub.
    statement : str
        The equation and what to compute (plain text, written into the stub's docstring).
    shapes : str
        The shapes of the arguments and outputs.
    hint : str
        A hint that does not give the answer away.
    outputs : tuple of str
        Names of the outputs, in the order the function returns them.
    cases : callable
        ``cases(rng)`` returns the list of :class:`Case` the function is checked on, smallest first.
    reference : callable
        ``reference(**case.args)`` returns the right outputs.
    mistakes : tuple of Mistake
        The classic mistakes the checker recognises.
    numeric : callable or None
        ``numeric(**case.args)`` returns central finite differences of the outputs that are gradients (``None``
        for the others); the checker reports the learner's distance to them on the first case.
    look : dict of str to str
        Where to look when an output is wrong and no mistake of the catalogue matches.
    """

    name: str
    title: str
    function: str
    signature: str
    statement: str
    shapes: str
    hint: str
    outputs: tuple[str, ...]
    cases: Callable[[np.random.Generator], list[Case]]
    reference: Callable[..., tuple[Any, ...]]
    mistakes: tuple[Mistake, ...] = ()
    numeric: Callable[..., tuple[Any, ...]] | None = None
    look: dict[str, str] = field(default_factory=dict)

    @property
    def filename(self) -> str:
        """The stub's file name, ``{function}.py``."""
        return f"{self.function}.py"


@dataclass(frozen=True)
class BugHunt:
    """A layer with a planted bug: run ``gradcheck`` on it, find the wrong gradient, fix ``backward``.

    Attributes
    ----------
    name : str
        The command-line name, ``"find-the-bug-dense"``.
    title : str
        One line.
    class_name : str
        The layer class in the stub (and the one the checker loads from the learner's file).
    module : str
        The file in ``numpycnn/exercises/_planted/`` (and ``_solutions/``) that holds the layer, without ``.py``.
    statement : str
        What the layer computes and what to do.
    hint : str
        Where to start, without naming the bug.
    kwargs : dict of str to object
        The constructor arguments the checker builds the layer with.
    input_shapes : tuple of tuple of int
        Shapes of the inputs ``gradcheck`` runs on (each drawn from N(0, 1)).
    forward : callable
        ``forward(layer, x)`` computes the right output from the layer's parameters, so that a "fix" that changes
        the forward pass is caught too.
    planted : str
        The planted bug, for teachers and the tests: the mistake and the gradient it breaks.
    broken : str
        Which gradient the planted bug breaks (``"input"`` or a parameter name).
    """

    name: str
    title: str
    class_name: str
    module: str
    statement: str
    hint: str
    kwargs: dict[str, Any]
    input_shapes: tuple[tuple[int, ...], ...]
    forward: Callable[[Any, np.ndarray], np.ndarray]
    planted: str
    broken: str

    @property
    def filename(self) -> str:
        """The stub's file name: the module's, ``find_the_bug_dense.py``."""
        return f"{self.module}.py"
