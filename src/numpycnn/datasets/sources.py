"""Your own data set from a path, whichever kind it is: :func:`load_path` tells a folder of pictures, an ``.npz``
file and a folder of ``.npy`` files apart, and :func:`evaluation_data` loads one prepared as a model's pictures
were, labelled by the model's class names.

``numpycnn train --dataset PATH`` calls :func:`load_path`, ``evaluate --dataset PATH`` :func:`evaluation_data`; a
name such as ``mnist`` is not a path (:func:`~numpycnn.datasets.own.is_path`), so the built-in sets keep their
meaning.

Examples
--------
>>> data = load_path("my_pictures", image_size=32)            # doctest: +SKIP
>>> data.x_train.shape, data.class_names                       # doctest: +SKIP
((1200, 3, 32, 32), ['cat', 'dog'])
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from numpycnn.datasets.arrays import is_npy_folder, load_npy_folder, load_npz
from numpycnn.datasets.folder import load_folder
from numpycnn.datasets.own import TEST_FRACTION, ImageSet, is_path
from numpycnn.datasets.preparation import Preparation, parse_size
from numpycnn.errors import DataError


def load_path(path: str | os.PathLike[str], image_size: Any = None, channels: int | None = None, *,
              seed: int = 0, progress: bool | None = None, cache: bool = True) -> ImageSet:
    """Load the data set at ``path``: a folder of class folders, an ``.npz`` file or a folder of ``.npy`` files.

    Parameters
    ----------
    path : str or path-like
    image_size : int, (H, W) or str, optional
        Pictures of a folder are resized to this (default: the most common size, see
        :func:`numpycnn.datasets.folder.load_folder`); arrays must already have it if it is given.
    channels : {1, 3}, optional
        Pictures of a folder are converted to this; arrays must already have it if it is given.
    seed : int
        Chooses the held-out pictures when there is no test part.
    progress : bool, optional
        Progress bar while decoding pictures; by default only on a terminal.
    cache : bool
        Keep and reuse the decoded pictures of a folder.

    Raises
    ------
    DataError
        If ``path`` does not exist or holds nothing usable; the message says what is expected.
    """
    where = Path(path)
    if where.is_file():
        if where.suffix.lower() != ".npz":
            raise DataError(f"{str(where)!r} is a file but not an .npz data set; give a folder of class "
                            "folders, a folder of .npy files or an .npz file.")
        data = load_npz(where, seed=seed)
    elif where.is_dir():
        if is_npy_folder(where):
            data = load_npy_folder(where)
        else:
            return load_folder(where, image_size, channels, seed=seed, progress=progress, cache=cache)
    else:
        raise DataError(f"--dataset {str(where)!r}: no such file or folder. Give a built-in name (mnist, "
                        "fashion-mnist, cifar10), a folder with one sub-folder of pictures per class, an .npz "
                        "file or a folder holding x_train.npy and y_train.npy.")
    _check_arrays_fit(where, data, image_size, channels)
    return data


def _check_arrays_fit(where: Path, data: ImageSet, image_size: Any, channels: int | None) -> None:
    """Arrays are used as they are: ``--image-size`` and ``--channels`` may only confirm their shape."""
    size = parse_size(image_size)
    if size is not None and size != data.preparation.size:
        raise DataError(f"{where}: the arrays hold {data.preparation.size[0]}x{data.preparation.size[1]} "
                        f"pictures; --image-size {size[0]},{size[1]} cannot resize arrays. Leave it out, or "
                        "resize them before saving.")
    if channels is not None and channels != data.preparation.channels:
        raise DataError(f"{where}: the arrays hold {data.preparation.channels}-channel pictures; --channels "
                        f"{channels} cannot convert arrays. Leave it out.")





def evaluation_data(dataset: str | None, model: Any, split: str = "test") -> tuple[np.ndarray, np.ndarray] | None:
    """``(images, labels)`` of ``split`` of your own data set ``dataset``, prepared as ``model``'s pictures were
    and labelled by the model's class names; ``None`` when ``dataset`` is a built-in name (or not given, for a
    model of a built-in set).

    The held-out test set is the one training chose: the model's preparation records the fraction and seed.

    Raises
    ------
    DataError
        For a model trained on your own pictures without ``dataset``, or a data set whose classes the model
        does not know.
    """
    preparation = getattr(model, "preparation", None)
    if dataset is None:
        if preparation is not None:
            raise DataError(f"this model was trained on your own pictures ({preparation.source}); give them with "
                            "--dataset PATH.")
        return None
    if not is_path(dataset):
        return None
    if preparation is None:  # a file from before preparations were recorded: prepare as its input shape says
        if model.input_shape is None or len(model.input_shape) != 3 or model.input_shape[0] not in (1, 3):
            raise DataError(f"the model's input shape {model.input_shape} is not that of pictures (C, H, W).")
        channels, height, width = model.input_shape
        preparation = Preparation(int(channels), (int(height), int(width)))
    data = _load_prepared(dataset, preparation)
    images, labels = (data.x_train, data.y_train) if split == "train" else (data.x_test, data.y_test)
    return images, _relabel(dataset, labels, data.class_names, model.class_names)


def _load_prepared(dataset: str, preparation: Preparation) -> ImageSet:
    """The data set at ``dataset`` with ``preparation``'s size, channels, resizing and held-out split."""
    where, seed = Path(dataset), preparation.split_seed or 0
    fraction = preparation.test_fraction or TEST_FRACTION
    if where.is_dir() and not is_npy_folder(where):
        return load_folder(where, preparation.size, preparation.channels, seed=seed, test_fraction=fraction,
                           resize=preparation.resize)
    data = load_npz(where, seed=seed, test_fraction=fraction) if where.is_file() else \
        load_npy_folder(where, test_fraction=fraction) if where.is_dir() else load_path(where)
    if data.preparation.input_shape != preparation.input_shape:
        raise DataError(f"{dataset}: its pictures are {data.preparation.input_shape} (C, H, W) but the model takes "
                        f"{preparation.input_shape}.")
    return data


def _relabel(dataset: str, labels: np.ndarray, names: list[str], model_names: list[str] | None) -> np.ndarray:
    """``labels`` (indices into ``names``) as indices into the model's class names."""
    if model_names is None or list(names) == list(model_names):
        return labels
    unknown = [n for n in names if n not in model_names]
    if unknown:
        raise DataError(f"{dataset}: classes {unknown!r:.200} are not among the model's {model_names!r:.200}.")
    lookup = np.array([model_names.index(n) for n in names], np.int64)
    return lookup[labels]


__all__ = ["evaluation_data", "load_path"]
