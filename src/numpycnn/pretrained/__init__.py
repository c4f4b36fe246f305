"""Small models trained on MNIST that ship inside the package, so ``numpycnn serve`` works offline at once.

Each file was written by the ``numpycnn train`` command recorded beside it, from seed 0, on the project's
2-core machine; :func:`load` checks the file's SHA-256 against the value recorded here before reading it.

Examples
--------
>>> from numpycnn import pretrained
>>> model = pretrained.load("seed")          # the original network, 98.05% on MNIST's test set
>>> model.summary()                          # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from numpycnn.errors import ModelFileError

FOLDER = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Shipped:
    """One shipped model file: its name, a title, the command that trained it, its test accuracy, its SHA-256."""

    filename: str
    title: str
    command: str
    test_accuracy: float
    sha256: str


#: The shipped models by name, in the order the page offers them.
SHIPPED: dict[str, Shipped] = {
    "seed": Shipped(
        "seed-mnist.safetensors", "Original network (Conv 8, 3x3; 13,610 parameters)",
        "numpycnn train", 0.9805,
        "23b7e3688a1d85a15b44cf1675f9996e56ed645e3d109ac80a6de78d5ce3e881"),
    "lenet5": Shipped(
        "lenet5-mnist.safetensors", "LeNet-5 (61,706 parameters)",
        "numpycnn train --model lenet5 --val-split 0.1 --optimizer adam --lr 0.001 --schedule cosine "
        "--batch-size 128 --augment --epochs 10", 0.9897,
        "c14be7af689eb155b77b6d32a24a280873f819566b1d572937dc8d50415c4867"),
    "deep": Shipped(
        "deep-mnist.safetensors", "Deep CNN (3 conv blocks with batch norm; 431,018 parameters)",
        "numpycnn train --model deep --val-split 0.1 --optimizer adam --lr 0.001 --schedule cosine "
        "--batch-size 128 --augment --epochs 8", 0.9939,
        "57ce20ef5389ae8126a473afb12eb74fb7da010ebb4965fff1f2104facd4d503"),
}


def path(name: str) -> Path:
    """Where the shipped model ``name`` lies; ``ValueError`` for an unknown name."""
    if name not in SHIPPED:
        raise ValueError(f"pretrained: `name` must be one of {sorted(SHIPPED)}. Got {name!r}.")
    return FOLDER / SHIPPED[name].filename


def sha256(file: Path) -> str:
    """The SHA-256 of a file's bytes, in hexadecimal."""
    digest = hashlib.sha256()
    with open(file, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load(name: str) -> Any:
    """The shipped model ``name`` as a ``Sequential``, after checking its file's SHA-256.

    Raises
    ------
    ValueError
        For an unknown name.
    ModelFileError
        If the file is missing or differs from the one recorded in :data:`SHIPPED`.
    """
    from numpycnn.model.io import load_model

    file = path(name)
    if not file.is_file():
        raise ModelFileError(f"{file}: the shipped model {name!r} is missing; reinstall numpycnn.")
    found = sha256(file)
    if found != SHIPPED[name].sha256:
        raise ModelFileError(f"{file}: SHA-256 {found} differs from the recorded {SHIPPED[name].sha256}; "
                             "the file is damaged. Reinstall numpycnn.")
    return load_model(file)
