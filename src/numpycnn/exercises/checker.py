"""The checker: run the learner's code on every case, compare it with the reference and finite differences, and
name the bug.

A function exercise is checked case by case (smallest first). For the first case that goes wrong, each wrong output
is compared with the same output of every :class:`~numpycnn.exercises.catalogue.Mistake`; the mistake that produces
all the wrong outputs is named, with the indices of the wrong elements and where to look. A find-the-bug exercise
is checked with :func:`numpycnn.gradcheck.gradcheck`. The learner's file is executed (that is the point) by
:func:`load`, and nothing else of theirs; an exception in it or in their function is an answer (WRONG, with the
line that raised), never a crash of the checker.
"""

from __future__ import annotations

import importlib.util
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from numpycnn.exercises.catalogue import BugHunt, Case, Exercise
from numpycnn.layers.gradcheck import gradcheck

#: Relative and absolute tolerance of a right answer: float64 loops and the library agree to about 1e-12.
RTOL, ATOL = 1e-6, 1e-9

#: Seed of the cases, fixed so that a message names the same elements every time.
SEED = 2024


@dataclass(frozen=True)
class CheckResult:
    """The checker's answer.

    Attributes
    ----------
    name : str
        The exercise.
    ok : bool
        Whether the answer is right.
    message : str
        ``"OK: ..."`` or ``"WRONG: ..."`` and why, in a few lines.
    mistake : str or None
        The name of the classic mistake the answer matches, if any.
    """

    name: str
    ok: bool
    message: str
    mistake: str | None = None

    def __str__(self) -> str:
        return self.message


class LearnerError(Exception):
    """The learner's file or function failed; the message says where."""


def load(path: str | Path, attribute: str) -> Any:
    """Execute the learner's file ``path`` and return its ``attribute``; raise :class:`LearnerError` if the file
    fails to run or does not define it.

    The module is named ``numpycnn_exercise_{attribute}`` whatever the file, so that checking a file twice, or a
    stub and then a solution, defines the same layer class again rather than a second one.
    """
    path = Path(path)
    module_name = f"numpycnn_exercise_{attribute}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise LearnerError(f"{path} is not a Python file.")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as err:  # the learner's file: any error is an answer
        raise LearnerError(f"running {path.name} raised {_last_line(err, path)}") from None
    finally:
        sys.modules.pop(module_name, None)
    if not hasattr(module, attribute):
        raise LearnerError(f"{path.name} does not define `{attribute}`. Keep the name the stub gave it.")
    return getattr(module, attribute)


def _last_line(err: BaseException, path: Path | None = None) -> str:
    """``"IndexError: ... (file.py, line 12: `code`)"``: the exception and the deepest line of the learner's file."""
    text = "".join(traceback.format_exception_only(type(err), err)).strip().splitlines()[-1]
    frames = traceback.extract_tb(err.__traceback__)
    if path is not None:
        frames = [f for f in frames if Path(f.filename).resolve() == path.resolve()] or frames
    frames = [f for f in frames if "numpycnn/exercises/checker" not in f.filename.replace("\\", "/")] or frames
    if frames:
        f = frames[-1]
        text += f" ({Path(f.filename).name}, line {f.lineno}: `{(f.line or '').strip()}`)"
    return text


def _as_outputs(value: Any, count: int) -> tuple[Any, ...]:
    if count == 1:
        return (value,)
    if not isinstance(value, (tuple, list)) or len(value) != count:
        got = f"a {type(value).__name__} of {len(value)}" if isinstance(value, (tuple, list)) else type(value).__name__
        raise LearnerError(f"it must return {count} values; it returned {got}.")
    return tuple(value)


def _same(got: Any, expected: Any) -> bool:
    got, expected = np.asarray(got, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    return got.shape == expected.shape and bool(np.allclose(got, expected, rtol=RTOL, atol=ATOL))


def _difference(name: str, got: Any, expected: Any) -> str | None:
    """What is wrong with one output, or ``None`` if it is right."""
    try:
        got = np.asarray(got, dtype=np.float64)
    except (TypeError, ValueError):
        return f"{name} is not an array of numbers (got {type(got).__name__})."
    expected = np.asarray(expected, dtype=np.float64)
    if got.shape != expected.shape:
        return f"{name} has shape {got.shape}; expected {expected.shape}."
    bad = ~np.isclose(got, expected, rtol=RTOL, atol=ATOL)
    if not bad.any():
        return None
    where = [tuple(int(i) for i in index) for index in np.argwhere(bad)]
    shown = ", ".join(f"{list(i) if i else '[]'} (expected {expected[i] + 0.0:.6g}, got {got[i] + 0.0:.6g})"
                      for i in where[:4])  # + 0.0 shows -0 as 0
    more = f" and {len(where) - 4} more" if len(where) > 4 else ""
    nonfinite = "; it holds NaN or inf: does something overflow?" if not np.all(np.isfinite(got)) else ""
    return f"{name}: {len(where)} of {bad.size} elements are wrong, at {shown}{more}{nonfinite}."


def _relative(got: Any, numeric: Any) -> float:
    got, numeric = np.asarray(got, dtype=np.float64), np.asarray(numeric, dtype=np.float64)
    if got.shape != numeric.shape:
        return float("inf")
    scale = max(float(np.max(np.abs(got), initial=0.0)), float(np.max(np.abs(numeric), initial=0.0)))
    return 0.0 if scale == 0.0 else float(np.max(np.abs(got - numeric)) / scale)


def _call(function: Any, case: Case, count: int) -> tuple[Any, ...]:
    args = {key: value.copy() if isinstance(value, np.ndarray) else value for key, value in case.args.items()}
    try:
        value = function(**args)
    except NotImplementedError as err:
        frame = traceback.extract_tb(err.__traceback__)[-1]
        raise LearnerError(f"it is not written yet: it raises NotImplementedError ({Path(frame.filename).name}, "
                           f"line {frame.lineno}). Write the function body in place of the `raise`.") from None
    except Exception as err:  # the learner's code: any error is an answer
        raise LearnerError(f"it raised {_last_line(err, _source(function))}") from None
    return _as_outputs(value, count)


def _source(function: Any) -> Path | None:
    code = getattr(function, "__code__", None)
    return Path(code.co_filename) if code is not None else None


def _describe(case: Case) -> str:
    parts = [f"{k} {tuple(v.shape)}" if isinstance(v, np.ndarray) else f"{k}={v!r}" for k, v in case.args.items()]
    return ", ".join(parts)


def _name_the_mistake(exercise: Exercise, case: Case, got: tuple[Any, ...], wrong: list[int]) -> Any:
    """The mistake whose outputs equal all the wrong outputs, or ``None``."""
    for mistake in exercise.mistakes:
        try:
            produced = mistake.compute(**case.args)
        except ValueError:  # a variant that cannot exist at these shapes (W^T of a non-square W)
            continue
        if all(_same(got[i], produced[i]) for i in wrong) and not all(
                _same(produced[i], exercise.reference(**case.args)[i]) for i in wrong):
            return mistake
    return None


def _against_finite_differences(exercise: Exercise, case: Case, got: tuple[Any, ...], expected: tuple[Any, ...],
                                wrong: list[int]) -> list[str]:
    """One line comparing the wrong gradients with central finite differences on the failing case, so that the
    learner sees the reference is not the only witness; none for outputs that are not gradients."""
    if exercise.numeric is None:
        return []
    numeric = exercise.numeric(**case.args)
    parts = []
    for i in wrong:
        if numeric[i] is None:
            continue
        error = _relative(got[i], numeric[i])
        yours = f"{error:.2g}" if np.isfinite(error) else "not comparable (shape or NaN)"
        parts.append(f"{exercise.outputs[i]}: the reference {_relative(expected[i], numeric[i]):.1e}, yours {yours}")
    return [f"  Against finite differences on this case (relative error): {'; '.join(parts)}."] if parts else []


def check_function(exercise: Exercise, function: Any) -> CheckResult:
    """Check ``function`` on every case of ``exercise``; see :func:`numpycnn.exercises.check`."""
    title = f"{exercise.name} ({exercise.function})"
    cases = exercise.cases(np.random.default_rng(SEED))
    for number, case in enumerate(cases, 1):
        expected = exercise.reference(**case.args)
        try:
            got = _call(function, case, len(exercise.outputs))
        except LearnerError as err:
            return CheckResult(exercise.name, False, f"WRONG: {title}: {err}\n  case {number}, {case.label}: "
                                                     f"{_describe(case)}.")
        problems = {i: _difference(name, got[i], expected[i]) for i, name in enumerate(exercise.outputs)}
        wrong = [i for i, problem in problems.items() if problem]
        if not wrong:
            continue
        lines = [f"WRONG: {title}, case {number} of {len(cases)}, {case.label}: {_describe(case)}."]
        lines += [f"  {problems[i]}" for i in wrong]
        mistake = _name_the_mistake(exercise, case, got, wrong)
        if mistake is not None:
            lines.append(f"  It looks like: {mistake.name}.")
            lines.append(f"  Where to look: {mistake.look}")
        else:
            lines += [f"  Where to look: {exercise.look[exercise.outputs[i]]}" for i in wrong
                      if exercise.outputs[i] in exercise.look]
        lines += _against_finite_differences(exercise, case, got, expected, wrong)
        return CheckResult(exercise.name, False, "\n".join(lines), mistake.name if mistake else None)
    labels = "; ".join(case.label for case in cases)
    message = f"OK: {title}: right on all {len(cases)} cases ({labels})"
    if exercise.numeric is not None:
        first = cases[0]
        numeric = exercise.numeric(**first.args)
        got = _call(function, first, len(exercise.outputs))
        errors = [(name, _relative(g, n)) for name, g, n in zip(exercise.outputs, got, numeric, strict=True)
                  if n is not None]
        message += ("; against finite differences on case 1, relative errors "
                    + ", ".join(f"{name} {err:.1e}" for name, err in errors))
    return CheckResult(exercise.name, True, message + ".")


def check_layer(hunt: BugHunt, cls: Any) -> CheckResult:
    """Check a fixed layer class with ``gradcheck``; see :func:`numpycnn.exercises.check`."""
    rng = np.random.default_rng(SEED)
    title = f"{hunt.name} ({hunt.class_name})"
    for shape in hunt.input_shapes:
        x = rng.standard_normal(shape)
        try:
            layer = cls(**hunt.kwargs)
            expected = hunt.forward(layer, x)
            y = layer.forward(x.copy(), training=True)
            result = gradcheck(layer, x)
        except Exception as err:  # the learner's class: any error is an answer
            return CheckResult(hunt.name, False, f"WRONG: {title} raised {_last_line(err)} on an input of shape "
                                                 f"{shape}.")
        problem = _difference("the output of forward", y, expected)
        if problem:
            return CheckResult(hunt.name, False, f"WRONG: {title}: forward changed; the bug is in backward. "
                                                 f"On an input of shape {shape}, {problem}")
        if not result.passed:
            bad = [k for k, e in result.errors.items() if e > result.threshold]
            details = "; ".join(f"the gradient of `{k}` has relative error {result.errors[k]:.2g}, worst at "
                                f"index {list(result.worst.get(k, ()))}" for k in bad)
            where = ("the value backward returns" if bad == ["input"] else
                     "the lines of backward that fill " + ", ".join(f"grads[{k!r}]" for k in bad if k != "input"))
            return CheckResult(hunt.name, False, f"WRONG: {title}: gradcheck fails on an input of shape {shape}: "
                                                 f"{details}.\n  Where to look: {where}.")
    return CheckResult(hunt.name, True, f"OK: {title}: gradcheck passes at random parameter values on inputs of "
                                        f"shapes {', '.join(str(s) for s in hunt.input_shapes)}, and forward is "
                                        "unchanged.")
