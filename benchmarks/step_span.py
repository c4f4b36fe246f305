"""How much code one training step runs: the functions of numpycnn that a step enters, their files and lines.

``python -m benchmarks.step_span`` trains the original network (``seed_cnn``, plain SGD, batch 64) for one step
through ``fit`` (``Trainer.train_step`` -> ``Sequential.forward`` -> the plan -> each layer -> ``functional``, and
back), with :func:`sys.settrace` recording every function of the package that runs. It prints, per file, the
functions entered and their lengths in lines (``def`` line to last line), and the totals: what a reader has to read
to follow one step from end to end. The first ``fit`` call is a warm-up (lazy imports, the plan, workspaces), so the
count is of a step like every later one; the data checks and the epoch's bookkeeping around it are left out.
"""

from __future__ import annotations

import inspect
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

import numpycnn

PACKAGE = Path(numpycnn.__file__).resolve().parent


def entered_functions(run: object) -> dict[Path, dict[str, int]]:
    """``{file: {qualified function name: lines}}`` of the package's functions that ``run()`` enters."""
    seen: dict[Path, dict[str, int]] = defaultdict(dict)

    def tracer(frame, event, arg):  # noqa: ANN001, ANN202 - the sys.settrace protocol
        if event == "call":
            path = Path(frame.f_code.co_filename).resolve()
            if PACKAGE in path.parents and not frame.f_code.co_name.startswith("<"):  # not comprehensions
                code = frame.f_code
                name = code.co_qualname
                if name not in seen[path]:
                    try:
                        lines, _ = inspect.getsourcelines(code)
                        seen[path][name] = len(lines)
                    except (OSError, TypeError):
                        seen[path][name] = 0
        return None

    sys.settrace(tracer)
    try:
        run()
    finally:
        sys.settrace(None)
    return seen


def main() -> None:
    """Print the functions, files and lines of one training step of the original network."""
    from numpycnn.model.zoo import seed_cnn
    from numpycnn.optim import SGD
    from numpycnn.training.loop import Trainer

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (64, 1, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, 64)
    model = seed_cnn(seed=0)
    model.fit(x, y, epochs=1, batch_size=64, optimizer=SGD(lr=0.1), verbose=0)  # warm-up
    captured = {}
    original = Trainer.train_step

    def traced_step(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        result = {}
        captured["span"] = entered_functions(lambda: result.setdefault("value", original(self, *args, **kwargs)))
        return result["value"]

    Trainer.train_step = traced_step
    try:
        model.fit(x, y, epochs=1, batch_size=64, optimizer=SGD(lr=0.1), verbose=0)
    finally:
        Trainer.train_step = original
    span = captured["span"]
    total_functions = total_lines = 0
    for path in sorted(span):
        functions = span[path]
        lines = sum(functions.values())
        total_functions += len(functions)
        total_lines += lines
        print(f"{path.relative_to(PACKAGE.parent)}: {len(functions)} functions, {lines} lines")
        for name, length in sorted(functions.items(), key=lambda item: -item[1]):
            print(f"    {length:4d}  {name}")
    print(f"\nOne training step (seed_cnn, SGD, batch 64) from Trainer.train_step: {total_functions} functions, "
          f"{total_lines} lines, in {len(span)} files.")


if __name__ == "__main__":
    main()
