"""One round of an A/B comparison of two source trees: the original network's training and inference and
``deep_cnn``'s training, in images per second, printed as one JSON line.

Run it alternately with each tree's ``src`` first on the path, several rounds, each in a fresh process; for example,
to compare the commit before a change (checked out in ``/tmp/before``) with the working tree::

    for r in 1 2 3 4 5; do
      for tree in /tmp/before .; do echo "$tree $(PYTHONPATH=$tree/src python -m benchmarks.tree_ab)"; done
    done

docs/speed.md's comparison of the engine before and after the worker threads was made this way.
"""

from __future__ import annotations

import inspect
import json
import time

from numpycnn.datasets import load
from numpycnn.optim import SGD, Adam

try:
    from numpycnn.model.zoo import deep_cnn, seed_cnn
except ImportError:  # a tree from before the package's folders (issue 20) kept its models in numpycnn.models
    from numpycnn.models import deep_cnn, seed_cnn  # type: ignore[no-redef]


def timed(run: object) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def engine_only() -> dict:
    """``fit``'s options that leave out what is not the engine: the gradient-health record (issue 22, on by
    default since; it costs the original network about 3% of a step) where the tree has it."""
    from numpycnn.training import fit

    return {"gradient_health": False} if "gradient_health" in inspect.signature(fit).parameters else {}


def main() -> None:
    """Print ``{"seed_train_img_s", "seed_infer_img_s", "deep_train_img_s"}`` for the numpycnn on the path."""
    x, y = load("mnist")
    results = {}
    extra = engine_only()
    model = seed_cnn(seed=0)
    seed_fit = dict(epochs=1, batch_size=64, optimizer=SGD(lr=0.1), verbose=0, **extra)
    model.fit(x[:2000], y[:2000], **seed_fit)  # warm-up
    results["seed_train_img_s"] = 20000 / timed(lambda: model.fit(x[:20000], y[:20000], **seed_fit))
    results["seed_infer_img_s"] = 10000 / timed(lambda: model.predict(x[:10000], batch_size=1000))
    deep = deep_cnn(seed=0)
    deep_fit = dict(epochs=1, batch_size=128, optimizer=Adam(), verbose=0, **extra)
    deep.fit(x[:256], y[:256], **deep_fit)  # warm-up
    results["deep_train_img_s"] = 2560 / timed(lambda: deep.fit(x[:2560], y[:2560], **deep_fit))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
